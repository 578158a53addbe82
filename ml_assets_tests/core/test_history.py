"""Delay history: realized rates per key over trailing windows, as known when the prediction is made."""
from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from ml_assets.core import history as H
from ml_assets.core.spec import history_column
from ml_assets_tests.core.conftest import DAYS, FIRST, labelled_events

D = dt.date(2013, 1, 20)


def _events(rows: list[tuple]) -> pl.DataFrame:
    """(date, origin, dest, carrier, flight, sched_dep_time, is_late) rows: labelled events as history reads them."""
    return pl.DataFrame(rows, schema={"date": pl.Date, "origin": pl.String, "dest": pl.String, "carrier": pl.String,
                                      "flight": pl.Int64, "sched_dep_time": pl.Int64, "is_late": pl.Boolean},
                        orient="row")


def _rate(history: pl.DataFrame, name: str, window: int, key: str) -> float | None:
    found = history.filter((pl.col("name") == name) & (pl.col("window") == window) & (pl.col("key") == key))
    return found["rate"].item() if found.height else None


@pytest.fixture(scope="module")
def january(history_spec):
    return labelled_events(history_spec, DAYS)


def test_the_table_has_every_name_and_window_with_its_as_of(history_spec, january):
    h = H.delay_history(history_spec, january, DAYS[-1])
    assert h.schema == pl.Schema(H.SCHEMA)
    assert set(h["name"]) == {*history_spec.history.keys, H.GLOBAL}
    assert set(h["window"]) == set(history_spec.history.windows) == {7, 28}
    assert h["as_of"].unique().to_list() == [DAYS[-1]]
    assert h["rate"].is_between(0, 1).all() and h["rate"].null_count() == 0
    flight = h.filter(pl.col("name") == "flight")["key"]
    assert flight.str.contains(r"^[A-Z0-9]{2}\|\d+$").all()  # carrier|flight


def test_history_as_of_a_day_sees_that_day_and_nothing_later(history_spec, january):
    as_of = DAYS[5]
    h = H.delay_history(history_spec, january, as_of)
    labelled = january.filter(pl.col("is_late").is_not_null())
    expected = labelled.filter(pl.col("date") <= as_of)
    overall = h.filter((pl.col("name") == H.GLOBAL) & (pl.col("window") == 28)).row(0, named=True)
    assert overall["count"] == expected.height and overall["positives"] == expected["is_late"].sum()
    week = labelled.filter(pl.col("date").is_between(as_of - dt.timedelta(days=6), as_of))
    assert h.filter((pl.col("name") == H.GLOBAL) & (pl.col("window") == 7))["count"].item() == week.height
    # Later outcomes change nothing; the as-of day's own outcomes do.
    later = january.with_columns(pl.when(pl.col("date") > as_of).then(~pl.col("is_late")).otherwise("is_late")
                                 .alias("is_late"))
    assert H.delay_history(history_spec, later, as_of).equals(h)
    own = january.with_columns(pl.when(pl.col("date") == as_of).then(~pl.col("is_late")).otherwise("is_late")
                               .alias("is_late"))
    assert not H.delay_history(history_spec, own, as_of).equals(h)


def test_each_window_counts_only_its_trailing_days(history_spec):
    rows = [(D - dt.timedelta(days=k), "EWR", "ORD", "UA", 1, 800, True) for k in (0, 6)]  # inside 7 days
    rows += [(D - dt.timedelta(days=k), "EWR", "ORD", "UA", 1, 800, False) for k in (7, 27)]  # inside 28 only
    rows += [(D - dt.timedelta(days=28), "EWR", "ORD", "UA", 1, 800, False)]  # outside both
    rows += [(D, "EWR", "ORD", "UA", 1, 800, None)]  # unlabelled: never counted
    h = H.delay_history(history_spec, _events(rows), D)
    week = h.filter((pl.col("name") == H.GLOBAL) & (pl.col("window") == 7)).row(0, named=True)
    month = h.filter((pl.col("name") == H.GLOBAL) & (pl.col("window") == 28)).row(0, named=True)
    assert (week["positives"], week["count"], week["rate"]) == (2, 2, 1.0)
    assert (month["positives"], month["count"], month["rate"]) == (2, 4, 0.5)


def test_rates_are_shrunk_toward_the_windows_overall_rate(history_spec):
    w = history_spec.history.prior_weight
    assert w == 20
    rows = [(D, "EWR", "ORD", "UA", 1, 800, True)] * 30 + [(D, "JFK", "LAX", "AA", 2, 1300, False)] * 10
    rows += [(D, "LGA", "ATL", "DL", 3, 1900, False)] * 20
    h = H.delay_history(history_spec, _events(rows), D)
    prior = 30 / 60
    assert _rate(h, H.GLOBAL, 7, H.GLOBAL) == pytest.approx(prior)
    assert _rate(h, "route", 7, "EWR-ORD") == pytest.approx((30 + w * prior) / (30 + w))
    assert _rate(h, "route", 7, "JFK-LAX") == pytest.approx((0 + w * prior) / (10 + w))
    assert _rate(h, "flight", 28, "UA|1") == _rate(h, "route", 28, "EWR-ORD")
    # a key seen in prior_weight events is pulled halfway toward the overall rate
    assert _rate(h, "dest", 7, "ATL") == pytest.approx((0 + prior) / 2)
    # derived history keys: the carrier's band of the day
    assert {_rate(h, "carrier_band", 7, k) is not None for k in ("UA|am", "AA|pm", "DL|eve")} == {True}


def test_attach_history_unseen_key_gets_the_overall_rate_and_no_history_is_unknown(history_spec):
    rows = [(D, "EWR", "ORD", "UA", 1, 800, True)] * 3 + [(D, "JFK", "LAX", "AA", 2, 1300, False)]
    h = H.delay_history(history_spec, _events(rows), D)
    scored_rows = _events([(D + dt.timedelta(days=2), "EWR", "ORD", "UA", 1, 800, None),
                           (D + dt.timedelta(days=2), "LGA", "NEW", "ZZ", 9, 900, None)])
    scored = H.attach_history(history_spec, scored_rows.lazy(), h).collect()
    route = history_column("route", 7)
    assert scored[route][0] == pytest.approx(_rate(h, "route", 7, "EWR-ORD"))
    assert scored[route][1] == pytest.approx(0.75)  # unseen route: the window's overall rate
    assert scored[history_column("carrier", 28)][1] == pytest.approx(0.75)
    assert not [c for c in scored.columns if c.startswith("__hkey")]
    unknown = H.attach_history(history_spec, scored_rows.lazy(), None).collect()
    assert all(unknown[c].null_count() == 2 for c in history_spec.history_columns)
    empty = H.attach_history(history_spec, scored_rows.lazy(), H.empty_history()).collect()
    assert empty.select(history_spec.history_columns).equals(unknown.select(history_spec.history_columns))


def test_a_window_without_labelled_events_is_unknown_not_nan(history_spec):
    """A week of refused outcome days: the 7-day rates are null (unknown), the 28-day ones still known."""
    rows = [(D - dt.timedelta(days=10), "EWR", "ORD", "UA", 1, 800, True),
            (D - dt.timedelta(days=10), "JFK", "LAX", "AA", 2, 1300, False)]
    h = H.delay_history(history_spec, _events(rows), D)
    week = h.filter((pl.col("name") == H.GLOBAL) & (pl.col("window") == 7)).row(0, named=True)
    assert (week["count"], week["rate"]) == (0, None)
    assert not h["rate"].is_nan().any()
    scored = H.attach_history(history_spec, _events(rows).lazy(), h).collect()
    assert scored[history_column("route", 7)].null_count() == scored.height
    assert not scored[history_column("route", 7)].is_nan().any()
    assert scored[history_column("route", 28)].is_between(0, 1).all()


def test_no_labelled_events_at_all_give_unknown_rates(history_spec):
    h = H.delay_history(history_spec, _events([(D, "EWR", "ORD", "UA", 1, 800, None)]), D)
    assert h.filter(pl.col("name") == H.GLOBAL)["rate"].null_count() == 2
    assert h.filter(pl.col("name") != H.GLOBAL).is_empty()


def test_the_first_day_of_the_feed_has_no_history(history_spec, history_labelled_days):
    first = history_labelled_days[FIRST]
    assert all(first[c].null_count() == first.height for c in history_spec.history_columns)
    second = history_labelled_days[FIRST + dt.timedelta(days=1)]  # history as of 12-31: nothing landed yet
    assert all(second[c].null_count() == second.height for c in history_spec.history_columns)
    third = history_labelled_days[FIRST + dt.timedelta(days=2)]  # history as of 01-01
    assert all(third[c].null_count() == 0 for c in history_spec.history_columns)
