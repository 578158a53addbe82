import datetime as dt
import json

import numpy as np
import polars as pl
import pytest

from ml_assets.core.features import LABEL
from ml_assets.core.training import window as W

DAY = dt.date(2013, 1, 10)


def _synthetic(rows: list[tuple]) -> pl.DataFrame:
    """(date, route, carrier, origin, is_late) rows with the key columns the window needs."""
    frame = pl.DataFrame(rows, schema=["date", "route", "carrier", "origin", LABEL], orient="row")
    return frame.with_columns(
        sched_dep_time=pl.int_range(pl.len()), flight=pl.int_range(pl.len()), dest=pl.lit("X"), tailnum=pl.lit("T")
    )


def test_window_is_the_labelled_days_before_the_day(january_features):
    train, valid = W.split_window(january_features, DAY, window_days=5, validation_days=2)
    days = sorted(set(train["date"]) | set(valid["date"]))
    assert days == [DAY - dt.timedelta(days=k) for k in range(5, 0, -1)]
    assert train[LABEL].null_count() == 0 and valid[LABEL].null_count() == 0
    assert max(train["date"]) < min(valid["date"])
    assert sorted(set(valid["date"])) == [DAY - dt.timedelta(days=2), DAY - dt.timedelta(days=1)]
    expected = january_features.filter(
        pl.col("date").is_between(DAY - dt.timedelta(days=5), DAY, closed="left") & pl.col(LABEL).is_not_null()
    ).height
    assert train.height + valid.height == expected


@pytest.mark.parametrize(("n_days", "validation_days", "expected"), [
    (28, 3, 3), (4, 3, 2), (3, 3, 1), (2, 3, 1), (1, 3, 0), (0, 3, 0),
])
def test_validation_day_count_keeps_training_the_larger_part(n_days, validation_days, expected):
    assert W.validation_day_count(n_days, validation_days) == expected


def test_single_day_window_uses_a_deterministic_time_ordered_tail(january_features):
    train, valid = W.split_window(january_features, dt.date(2013, 1, 2), window_days=28)
    assert set(train["date"]) == set(valid["date"]) == {dt.date(2013, 1, 1)}
    assert valid.height == round(0.2 * (train.height + valid.height))
    assert train["sched_dep_time"].max() <= valid["sched_dep_time"].min()
    shuffled = january_features.sample(fraction=1.0, shuffle=True, seed=1)
    again = W.split_window(shuffled, dt.date(2013, 1, 2), window_days=28)
    assert again[0].equals(train) and again[1].equals(valid)


def test_empty_window_gives_empty_splits(january_features):
    train, valid = W.split_window(january_features, dt.date(2013, 1, 1))
    assert train.height == 0 and valid.height == 0


def test_rates_are_smoothed_toward_the_global_rate():
    d = dt.date(2013, 1, 1)
    frame = _synthetic([(d, "A", "c", "o", True), (d, "A", "c", "o", True), (d, "B", "c", "o", False),
                        (d, "B", "c", "o", False)])
    rates = W.fit_history_rates(frame, prior_weight=2.0)
    assert rates.global_rate == 0.5
    assert rates.tables["route"]["A"] == pytest.approx((2 + 2 * 0.5) / (2 + 2), abs=1e-7)
    assert rates.tables["route"]["B"] == pytest.approx((0 + 2 * 0.5) / (2 + 2), abs=1e-7)
    scored = W.apply_history_rates(_synthetic([(d, "A", "c", "o", None), (d, "NEW", "zz", "o", None)]), rates)
    assert scored["route_late_rate"].to_list() == [rates.tables["route"]["A"], rates.global_rate]
    assert scored["carrier_late_rate"].to_list()[1] == rates.global_rate


def test_encoding_round_trips_through_json_at_float32_precision(january_features):
    train, _ = W.split_window(january_features, DAY)
    rates = W.fit_history_rates(train)
    restored = W.HistoryRates.from_json(json.loads(json.dumps(rates.to_json())))
    assert restored == rates
    values = np.array(list(rates.tables["route"].values()))
    assert np.array_equal(values, values.astype(np.float32).astype(np.float64))


def test_training_rows_never_see_their_own_day(january_features):
    train, _ = W.split_window(january_features, DAY)
    day = dt.date(2013, 1, 3)
    flipped = train.with_columns(
        pl.when(pl.col("date") == day).then(~pl.col(LABEL)).otherwise(pl.col(LABEL)).alias(LABEL)
    )
    before = W.add_out_of_day_rates(train).filter(pl.col("date") == day)
    after = W.add_out_of_day_rates(flipped).filter(pl.col("date") == day)
    assert before.select(W.RATE_COLUMNS).equals(after.select(W.RATE_COLUMNS))
    # ...while other days' rows do see that day: the rates are not constant.
    other_before = W.add_out_of_day_rates(train).filter(pl.col("date") != day)
    other_after = W.add_out_of_day_rates(flipped).filter(pl.col("date") != day)
    assert not other_before.select(W.RATE_COLUMNS).equals(other_after.select(W.RATE_COLUMNS))


def test_shipped_encoding_ignores_validation_rows(january_features):
    train, valid = W.split_window(january_features, DAY)
    flipped_valid = valid.with_columns(~pl.col(LABEL))
    scored = W.add_history_rates(train, valid)
    assert scored.select(W.RATE_COLUMNS).equals(W.add_history_rates(train, flipped_valid).select(W.RATE_COLUMNS))
    assert scored.select(W.RATE_COLUMNS).null_count().sum_horizontal().item() == 0
