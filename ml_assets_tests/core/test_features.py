import datetime as dt

import polars as pl

from ml_assets.core import features as F


def test_one_row_per_scheduled_flight_in_order(tables, january_features):
    flights = tables["flights"].filter((pl.col("month") == 1) & (pl.col("day") <= 10))
    assert january_features.height == flights.height
    assert january_features["flight"].to_list() == flights["flight"].to_list()
    assert january_features.columns == F.FEATURE_COLUMNS


def test_no_outcome_leaks_into_features(january_features):
    assert not set(F.OUTCOME_COLUMNS) & set(january_features.columns)
    assert not set(F.OUTCOME_COLUMNS) & set(F.FEATURES)
    assert F.LABEL not in F.FEATURES


def test_label_is_late_and_null_when_cancelled(tables, january_features):
    flights = tables["flights"].filter((pl.col("month") == 1) & (pl.col("day") <= 10))
    expected = [None if d is None else d > 15 for d in flights["arr_delay"].to_list()]
    assert january_features[F.LABEL].to_list() == expected
    assert january_features[F.LABEL].null_count() == flights["arr_delay"].null_count() > 0


def test_weather_is_the_origin_reading_at_the_scheduled_hour(tables, january_features):
    row = january_features.row(100, named=True)
    w = tables["weather"].filter((pl.col("origin") == row["origin"]) & (pl.col("month") == row["date"].month)
                                 & (pl.col("day") == row["date"].day) & (pl.col("hour") == row["sched_dep_time"] // 100))
    assert row["temp"] == w["temp"][0] and row["visib"] == w["visib"][0]


def test_plane_attributes_and_calendar(tables, january_features):
    row = january_features.filter(pl.col("tailnum") == "N14228").row(0, named=True)
    plane = tables["planes"].filter(pl.col("tailnum") == "N14228").row(0, named=True)
    assert row["plane_age"] == 2013 - plane["year"] and row["seats"] == plane["seats"]
    assert row["date"] == dt.date(2013, 1, 1) and row["dow"] == 2  # a Tuesday
    assert row["route"] == f"{row['origin']}-{row['dest']}"


def test_serving_records_without_outcomes_get_the_same_features(tables, january_features):
    flights = tables["flights"].filter((pl.col("month") == 1) & (pl.col("day") <= 10))
    served = F.build_features(flights.drop(F.OUTCOME_COLUMNS), tables["weather"], tables["planes"])
    assert served.drop(F.LABEL).equals(january_features.drop(F.LABEL))
    assert served[F.LABEL].null_count() == served.height


def test_implausible_wind_is_treated_as_missing(tables):
    weather = tables["weather"].with_columns(wind_speed=pl.lit(1048.0))
    out = F.build_features(tables["flights"].head(50), weather, tables["planes"])
    assert out["wind_speed"].null_count() == out.height
