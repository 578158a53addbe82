"""The one feature path: what is known the evening before, never an outcome; the label comes afterwards."""
from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from ml_assets.core import features as F
from ml_assets.core import landing as L
from ml_assets_tests.core.conftest import FIRST, HOLDOUT, day_sources, features_of

DAY = dt.date(2013, 1, 5)


@pytest.fixture(scope="module")
def features(spec, labelled_days):
    return labelled_days[DAY].drop(spec.label.name)


def test_one_row_per_event_in_order_with_the_feature_columns(spec, features):
    events = L.source_rows(spec, "schedule", DAY)
    assert features.columns == spec.feature_columns
    assert features.height == events.height
    assert features["flight"].to_list() == events["flight"].to_list()
    assert features["date"].unique().to_list() == [DAY]


def test_no_outcome_column_and_no_label(spec, features):
    assert not set(spec.outcome_columns) & set(features.columns)
    assert spec.label.name not in features.columns
    assert not set(spec.outcome_columns) & set(spec.model_inputs)


def test_the_events_outcome_columns_are_never_read(spec):
    """Outcome columns riding along in the events frame change nothing: build_features selects its columns."""
    sources = day_sources(spec, DAY)
    with_outcomes = sources["schedule"].join(L.source_rows(spec, "outcomes", DAY), on=spec.outcomes_source.key)
    assert set(spec.outcome_columns) <= set(with_outcomes.columns)
    plain = F.build_features(spec, sources)
    assert F.build_features(spec, {**sources, "schedule": with_outcomes}).equals(plain)
    assert not set(spec.outcome_columns) & set(plain.columns)


def test_weather_is_the_origin_reading_at_the_scheduled_hour(spec, tables, features):
    row = features.row(100, named=True)
    w = tables["weather"].filter((pl.col("origin") == row["origin"]) & (pl.col("month") == DAY.month)
                                 & (pl.col("day") == DAY.day) & (pl.col("hour") == row["sched_dep_time"] // 100))
    assert row["temp"] == w["temp"][0] and row["visib"] == w["visib"][0] and row["humid"] == w["humid"][0]


def test_plane_attributes_calendar_and_derived_columns(tables, labelled_days):
    frame = labelled_days[FIRST]
    row = frame.filter(pl.col("tailnum") == "N14228").row(0, named=True)
    plane = tables["planes"].filter(pl.col("tailnum") == "N14228").row(0, named=True)
    assert row["plane_age"] == 2013 - plane["year"] and row["seats"] == plane["seats"]
    assert row["date"] == dt.date(2013, 1, 1) and row["dow"] == 2 and row["is_weekend"] == 0  # a Tuesday
    assert row["route"] == f"{row['origin']}-{row['dest']}"
    assert row["dep_hour"] == row["sched_dep_time"] // 100
    assert row["sched_dep_minutes"] == (row["sched_dep_time"] // 100) * 60 + row["sched_dep_time"] % 100
    assert row["day_of_year"] == 1 and row["month"] == 1
    assert labelled_days[DAY]["is_weekend"].unique().to_list() == [1]  # 2013-01-05: a Saturday


def test_implausible_wind_is_cleaned_to_missing(spec):
    sources = day_sources(spec, DAY)
    stormy = sources["weather"].with_columns(wind_speed=pl.lit(1048.0), wind_gust=pl.lit(151.0))
    out = F.build_features(spec, {**sources, "weather": stormy})
    assert out["wind_speed"].null_count() == out["wind_gust"].null_count() == out.height


def test_a_repeated_weather_hour_keeps_the_first_reading(spec):
    sources = day_sources(spec, DAY)
    weather = sources["weather"]
    repeated = pl.concat([weather, weather.with_columns(temp=pl.lit(-59.0))])
    out = F.build_features(spec, {**sources, "weather": repeated})
    assert out.height == sources["schedule"].height
    assert out["temp"].equals(F.build_features(spec, sources)["temp"])


def test_a_request_without_context_gets_null_context_columns(spec):
    sources = day_sources(spec, DAY)
    full = F.build_features(spec, sources)
    bare = F.build_features(spec, {"schedule": sources["schedule"]})
    joined = [c for join in spec.joins for c in join.columns.values() if c in full.columns]  # plane_year: dropped
    # read from the weather and airports tables by feature functions (flights.day_weather, flights.block)
    derived = [c for c in full.columns if c.startswith("wx_")] + ["block_minutes", "block_padding",
                                                                  "scheduled_speed", "plane_age"]
    assert bare.columns == full.columns and bare.height == full.height
    assert all(bare[c].null_count() == bare.height for c in joined + derived)
    assert all(full[c].null_count() < full.height for c in ["temp", "seats", "block_minutes", "wx_day_precip"])
    unchanged = [c for c in full.columns if c not in joined + derived]
    assert "origin_day_flights" in unchanged and "days_to_holiday" in unchanged  # from the schedule alone
    assert bare.select(unchanged).equals(full.select(unchanged))


def test_without_history_the_rates_are_unknown(history_spec):
    spec = history_spec
    out = F.build_features(spec, day_sources(spec, DAY))
    assert all(out[c].null_count() == out.height for c in spec.history_columns)


# ---------------------------------------------------------------------------------------------- the label


def test_label_is_arrival_more_than_15_minutes_late_and_null_without_outcome(spec, features):
    outcomes = L.source_rows(spec, "outcomes", DAY)
    labelled = F.attach_label(spec, features, outcomes)
    assert labelled.columns == [*features.columns, "is_late"] and labelled.height == features.height
    assert labelled.drop("is_late").equals(features)
    expected = [None if d is None else d > 15 for d in outcomes["arr_delay"].to_list()]
    assert labelled["is_late"].to_list() == expected  # outcomes come in the schedule's order
    assert labelled["is_late"].null_count() == outcomes["arr_delay"].null_count() > 0  # cancelled: no label
    assert F.labelled_rows(labelled, spec).height == labelled.height - outcomes["arr_delay"].null_count()


def test_events_without_an_outcome_row_stay_unlabelled(spec, features):
    outcomes = L.source_rows(spec, "outcomes", DAY)
    partial = F.attach_label(spec, features, outcomes.tail(outcomes.height - 10))
    assert partial.height == features.height
    assert partial["is_late"].head(10).null_count() == 10
    reported_twice = F.attach_label(spec, features, pl.concat([outcomes, outcomes.head(5)]))
    assert reported_twice.height == features.height  # one label per event


# ---------------------------------------------------------------------------------------------- leakage


def _flip(spec, day: dt.date):
    """Outcomes with day's arrival delays turned around (late <-> on time); other days as delivered."""
    def outcomes(d: dt.date) -> pl.DataFrame:
        rows = L.source_rows(spec, spec.outcomes_name, d)
        delay = pl.col("arr_delay")
        flipped = pl.when(delay.is_null()).then(None).when(delay > 15).then(0).otherwise(60).cast(pl.Int64)
        return rows.with_columns(flipped.alias("arr_delay")) if d == day else rows
    return outcomes


def test_features_of_a_day_read_no_outcome(spec, labelled_days):
    """The shipped flights spec has no delay history: handed D's outcomes (as delivered or turned around) among
    its sources, ``build_features`` gives D's features unchanged (test_flights_features checks each function)."""
    day = HOLDOUT
    base = labelled_days[day].drop(spec.label.name)
    assert features_of(spec, day).equals(base)
    for outcomes in (L.source_rows(spec, spec.outcomes_name, day), _flip(spec, day)(day)):
        with_outcomes = {**day_sources(spec, day), spec.outcomes_name: outcomes}
        assert F.build_features(spec, with_outcomes).equals(base)


def test_history_features_of_a_day_ignore_that_days_and_the_previous_days_outcomes(history_spec,
                                                                                    history_labelled_days,
                                                                                    monkeypatch):
    spec = history_spec
    monkeypatch.delenv("ML_ASSETS_OUTCOME_LAG_DAYS", raising=False)
    day = HOLDOUT
    base = history_labelled_days[day].drop(spec.label.name)
    assert features_of(spec, day).equals(base)
    for changed in (day, day - dt.timedelta(days=1)):  # D's outcomes, and D-1's (land on D: after the evening before)
        assert features_of(spec, day, _flip(spec, changed)).equals(base), changed
    # ...while D-2's outcomes (landed the morning of D-1) do reach D's features: the test can fail.
    moved = features_of(spec, day, _flip(spec, day - dt.timedelta(days=2)))
    assert not moved.select(spec.history_columns).equals(base.select(spec.history_columns))
    assert moved.drop(spec.history_columns).equals(base.drop(spec.history_columns))


def test_a_longer_outcome_lag_pushes_the_history_back(history_spec, monkeypatch):
    spec = history_spec
    monkeypatch.setenv("ML_ASSETS_OUTCOME_LAG_DAYS", "2")
    day = HOLDOUT
    base = features_of(spec, day)
    assert features_of(spec, day, _flip(spec, day - dt.timedelta(days=2))).equals(base)
    assert not features_of(spec, day, _flip(spec, day - dt.timedelta(days=3))).equals(base)


def test_feature_code_version_follows_the_feature_part_of_the_spec(spec):
    version = F.feature_code_version(spec)
    assert version.startswith(F.FEATURE_CODE_VERSION) and version == F.feature_code_version(spec)
    fewer = spec.features.model_copy(update={"numeric": spec.features.numeric[:-1]})
    changed = spec.model_copy(update={"features": fewer})
    assert F.feature_code_version(changed) != version
    retitled = spec.model_copy(update={"title": "another title"})
    assert F.feature_code_version(retitled) == version


def test_a_spec_without_history_has_no_rate_columns(spec):
    plain = spec.model_copy(update={"history": None})
    assert plain.history_columns == [] and not set(spec.history_columns) & set(plain.feature_columns)
    out = F.build_features(plain, day_sources(plain, DAY))
    assert out.columns == plain.feature_columns
    assert out.equals(F.build_features(spec, day_sources(spec, DAY)).drop(spec.history_columns))
