import datetime as dt

import polars as pl
import pytest

from ml_assets.core import schemas


@pytest.mark.parametrize("source", ["flights", "weather", "planes"])
def test_real_landing_data_passes(tables, source):
    assert schemas.schema_violations(tables[source], schemas.SCHEMAS[source]) == []


def test_real_features_pass(january_features):
    assert schemas.schema_violations(january_features, schemas.FlightFeatures) == []


def _one_day(tables):
    return tables["flights"].filter((pl.col("month") == 1) & (pl.col("day") == 2))


def _rules(violations):
    return {(v.rule, v.column) for v in violations}


def test_missing_and_extra_columns_are_named(tables):
    bad = _one_day(tables).drop("dest").with_columns(surprise=pl.lit(1))
    rules = _rules(schemas.schema_violations(bad, schemas.LandingFlights))
    assert ("required_column_missing", "dest") in rules
    assert ("unexpected_column", "surprise") in rules


def test_wrong_type_is_named(tables):
    bad = _one_day(tables).with_columns(pl.col("distance").cast(pl.String))
    violations = schemas.schema_violations(bad, schemas.LandingFlights)
    assert any(v.column == "distance" and "dtype" in v.rule for v in violations)


def test_range_violations_count_rows_and_show_examples(tables):
    day = _one_day(tables)
    bad = day.with_columns(month=pl.when(pl.int_range(pl.len()) < 7).then(13).otherwise(pl.col("month")),
                           origin=pl.when(pl.int_range(pl.len()) < 3).then(pl.lit("XXX")).otherwise("origin"))
    by_col = {v.column: v for v in schemas.schema_violations(bad, schemas.LandingFlights)}
    assert by_col["month"].failing_rows == 7 and "13" in by_col["month"].examples
    assert by_col["origin"].failing_rows == 3 and by_col["origin"].examples[0] == "XXX"


def test_duplicate_keys_and_empty_day_and_wrong_date(tables):
    day = _one_day(tables)
    dupes = schemas.duplicate_key_violations(pl.concat([day, day.head(4)]), schemas.FLIGHT_KEY)
    assert dupes[0].rule == "duplicate_key" and dupes[0].failing_rows == 8
    assert schemas.duplicate_key_violations(day, schemas.FLIGHT_KEY) == []
    assert schemas.empty_violations(day.head(0))[0].rule == "non_empty_day"
    wrong = schemas.date_violations(day, dt.date(2013, 1, 3))
    assert wrong[0].rule == "date_matches_partition" and wrong[0].failing_rows == day.height
    assert schemas.date_violations(day, dt.date(2013, 1, 2)) == []
