"""pandera schemas derived from the spec, and violations that say what is wrong with a day."""
from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from ml_assets.core import landing as L
from ml_assets.core import schemas
from ml_assets_tests.core.conftest import HOLDOUT

DAY = dt.date(2013, 1, 2)


def _rules(violations):
    return {(v.rule, v.column) for v in violations}


@pytest.mark.parametrize("source", ["schedule", "weather", "outcomes"])
def test_real_landing_data_passes(spec, source):
    rows = L.source_rows(spec, source, DAY)
    assert schemas.schema_violations(rows, schemas.source_schema(spec, source)) == []
    assert schemas.duplicate_key_violations(rows, spec.sources[source].key) == []
    assert schemas.date_violations(rows, DAY, spec.replay.date_parts) == []
    assert schemas.null_share_violations(rows, spec.sources[source].columns) == []


def test_real_reference_and_feature_frames_pass(spec, tables, labelled_days):
    planes = tables["planes"].select(list(spec.reference["planes"].columns))
    assert schemas.schema_violations(planes, schemas.reference_schema(spec, "planes")) == []
    labelled = labelled_days[HOLDOUT]
    assert schemas.schema_violations(labelled, schemas.feature_schema(spec, labelled=True)) == []
    features = labelled.drop(spec.label.name)
    assert schemas.schema_violations(features, schemas.feature_schema(spec)) == []
    # the unlabelled schema is strict: the label is an unexpected column there
    assert ("unexpected_column", "is_late") in _rules(schemas.schema_violations(labelled, schemas.feature_schema(spec)))
    assert list(schemas.feature_dtypes(spec)) == spec.feature_columns


def test_missing_and_extra_columns_are_named(spec):
    bad = L.source_rows(spec, "schedule", DAY).drop("dest").with_columns(surprise=pl.lit(1))
    rules = _rules(schemas.schema_violations(bad, schemas.source_schema(spec, "schedule")))
    assert ("required_column_missing", "dest") in rules
    assert ("unexpected_column", "surprise") in rules


def test_an_outcome_column_in_the_schedule_is_unexpected(spec, tables):
    leaked = tables["flights"].filter((pl.col("month") == 1) & (pl.col("day") == 2)).drop("time_hour", strict=False)
    rules = _rules(schemas.schema_violations(leaked, schemas.source_schema(spec, "schedule")))
    assert {("unexpected_column", c) for c in spec.outcome_columns} <= rules


def test_wrong_type_is_named(spec):
    bad = L.source_rows(spec, "schedule", DAY).with_columns(pl.col("distance").cast(pl.String))
    violations = schemas.schema_violations(bad, schemas.source_schema(spec, "schedule"))
    assert any(v.column == "distance" and "dtype" in v.rule for v in violations)


def test_range_violations_count_rows_and_show_examples(spec):
    day = L.source_rows(spec, "schedule", DAY)
    first = pl.int_range(pl.len())
    bad = day.with_columns(month=pl.when(first < 7).then(13).otherwise(pl.col("month")),
                           origin=pl.when(first < 3).then(pl.lit("XXX")).otherwise("origin"),
                           carrier=pl.when(first < 2).then(pl.lit("toolong")).otherwise("carrier"))
    by_col = {v.column: v for v in schemas.schema_violations(bad, schemas.source_schema(spec, "schedule"))}
    assert by_col["month"].failing_rows == 7 and "13" in by_col["month"].examples
    assert by_col["origin"].failing_rows == 3 and by_col["origin"].examples[0] == "XXX"
    assert by_col["carrier"].failing_rows == 2 and "str_matches" in by_col["carrier"].rule
    assert "7 failing row(s)" in str(by_col["month"])


def test_nulls_only_where_declared_nullable(spec):
    day = L.source_rows(spec, "schedule", DAY)
    nulls = day.with_columns(pl.when(pl.int_range(pl.len()) < 4).then(None).otherwise(pl.col(c)).alias(c)
                             for c in ("tailnum", "dest"))
    violations = schemas.schema_violations(nulls, schemas.source_schema(spec, "schedule"))
    assert {v.column for v in violations} == {"dest"}  # tailnum is nullable


def test_duplicate_keys_empty_day_and_wrong_date(spec):
    day = L.source_rows(spec, "schedule", DAY)
    key = spec.sources["schedule"].key
    dupes = schemas.duplicate_key_violations(pl.concat([day, day.head(4)]), key)
    assert dupes[0].rule == "duplicate_key" and dupes[0].failing_rows == 8
    assert schemas.duplicate_key_violations(day.drop("flight"), key)[0].rule == "key_columns_present"
    assert schemas.empty_violations(day.head(0))[0].rule == "non_empty_day"
    assert schemas.empty_violations(day) == []
    wrong = schemas.date_violations(day, dt.date(2013, 1, 3), spec.replay.date_parts)
    assert wrong[0].rule == "date_matches_partition" and wrong[0].failing_rows == day.height
    assert wrong[0].examples == [{"year": 2013, "month": 1, "day": 2}]


def test_the_weather_repeats_an_hour_on_the_dst_day(spec):
    """Upstream repeats the autumn DST hour: the weather key is ``key_unique: warn``, not refused."""
    assert spec.sources["weather"].key_unique == "warn"
    rows = L.source_rows(spec, "weather", dt.date(2013, 11, 3))
    assert schemas.duplicate_key_violations(rows, spec.sources["weather"].key)[0].rule == "duplicate_key"


def test_reference_keys_must_be_unique(spec, tables):
    planes = tables["planes"].select(list(spec.reference["planes"].columns))
    twice = pl.concat([planes, planes.head(2)])
    violations = schemas.schema_violations(twice, schemas.reference_schema(spec, "planes"))
    assert violations and all(v.failing_rows >= 2 for v in violations)


def test_a_source_that_went_dark_is_a_null_share_violation(spec):
    weather = L.source_rows(spec, "weather", DAY)
    columns = spec.sources["weather"].columns
    assert columns["temp"].max_null_share == 0.5
    half = weather.height // 2
    dark = weather.with_columns(pl.when(pl.int_range(pl.len()) <= half).then(None).otherwise(pl.col("temp"))
                                .alias("temp"))
    (violation,) = schemas.null_share_violations(dark, columns)
    assert (violation.rule, violation.column, violation.failing_rows) == ("null_share", "temp", half + 1)
    assert "allowed 50%" in violation.examples[0]
    # exactly at the allowed share: still fine; columns without a limit never count
    at_limit = weather.with_columns(pl.when(pl.int_range(pl.len()) < half).then(None).otherwise(pl.col("temp"))
                                    .alias("temp"), wind_gust=pl.lit(None, dtype=pl.Float64))
    assert weather.height % 2 == 0 and schemas.null_share_violations(at_limit, columns) == []
    assert schemas.null_share_violations(weather.head(0), columns) == []
    # nulls are allowed by the schema itself: only the share rule catches the outage
    assert schemas.schema_violations(dark, schemas.source_schema(spec, "weather")) == []


def test_outcomes_of_unknown_events_are_named(spec):
    events = L.source_rows(spec, "schedule", DAY)
    outcomes = L.source_rows(spec, "outcomes", DAY)
    key = spec.outcomes_source.key
    assert schemas.unmatched_key_violations(outcomes, events, key) == []
    stranger = outcomes.head(1).with_columns(flight=pl.lit(99999, dtype=pl.Int64))
    (violation,) = schemas.unmatched_key_violations(pl.concat([outcomes, stranger]), events, key)
    assert violation.rule == "outcome_without_event" and violation.failing_rows == 1
    assert violation.examples[0]["flight"] == 99999
    # fewer outcomes than events is not a violation (cancelled flights may be reported later)
    assert schemas.unmatched_key_violations(outcomes.head(10), events, key) == []


def test_feature_ranges_are_checked(spec, labelled_days):
    features = labelled_days[HOLDOUT].drop(spec.label.name)
    bad = features.with_columns(plane_age=pl.when(pl.int_range(pl.len()) < 5).then(500.0).otherwise("plane_age"),
                                origin_day_rank=pl.when(pl.int_range(pl.len()) < 3).then(1.5)
                                .otherwise("origin_day_rank"))
    by_col = {v.column: v for v in schemas.schema_violations(bad, schemas.feature_schema(spec))}
    assert by_col["plane_age"].failing_rows == 5 and by_col["origin_day_rank"].failing_rows == 3
    assert set(by_col) == {"plane_age", "origin_day_rank"}


def test_history_rates_are_checked(history_spec, history_labelled_days):
    spec = history_spec
    features = history_labelled_days[HOLDOUT].drop(spec.label.name)
    bad = features.with_columns(route_rate_7d=pl.when(pl.int_range(pl.len()) < 3).then(1.5).otherwise("route_rate_7d"))
    by_col = {v.column: v for v in schemas.schema_violations(bad, schemas.feature_schema(spec))}
    assert set(by_col) == {"route_rate_7d"} and by_col["route_rate_7d"].failing_rows == 3


def test_violations_serialize_for_metadata():
    v = schemas.Violation("duplicate_key", "a,b", 3, [1, 2, 3, 4, 5, 6, 7])
    assert v.as_dict() == {"rule": "duplicate_key", "column": "a,b", "failing_rows": 3,
                           "examples": ["1", "2", "3", "4", "5"]}
