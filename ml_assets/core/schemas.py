"""pandera schemas for the landing data and the features, and a readable report of what failed.

Every failure is reported as a ``Violation``: the rule, the column, how many rows fail and a few
example values, so a blocking check can say exactly what is wrong with a day.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pandera.polars as pa
import polars as pl
from pandera.errors import SchemaError, SchemaErrors

from ml_assets.core import features as F

ORIGINS = ["EWR", "JFK", "LGA"]
AIRPORT_CODE = r"^[A-Z0-9]{3}$"
CARRIER_CODE = r"^[A-Z0-9]{2}$"
FLIGHT_KEY = ["year", "month", "day", "carrier", "flight", "origin", "sched_dep_time"]
WEATHER_KEY = ["origin", "year", "month", "day", "hour"]


class LandingFlights(pa.DataFrameModel):
    year: pl.Int64 = pa.Field(ge=2000, le=2100)
    month: pl.Int64 = pa.Field(ge=1, le=12)
    day: pl.Int64 = pa.Field(ge=1, le=31)
    dep_time: pl.Int64 = pa.Field(nullable=True, ge=0, le=2400)
    sched_dep_time: pl.Int64 = pa.Field(ge=0, le=2359)
    dep_delay: pl.Int64 = pa.Field(nullable=True)
    arr_time: pl.Int64 = pa.Field(nullable=True, ge=0, le=2400)
    sched_arr_time: pl.Int64 = pa.Field(ge=0, le=2359)
    arr_delay: pl.Int64 = pa.Field(nullable=True)
    carrier: pl.String = pa.Field(str_matches=CARRIER_CODE)
    flight: pl.Int64 = pa.Field(ge=1)
    tailnum: pl.String = pa.Field(nullable=True)
    origin: pl.String = pa.Field(isin=ORIGINS)
    dest: pl.String = pa.Field(str_matches=AIRPORT_CODE)
    air_time: pl.Int64 = pa.Field(nullable=True, ge=0)
    distance: pl.Int64 = pa.Field(ge=0)
    hour: pl.Int64 = pa.Field(ge=0, le=23)
    minute: pl.Int64 = pa.Field(ge=0, le=59)

    class Config:
        strict = True  # an extra column is an error: upstream changed its contract


class LandingWeather(pa.DataFrameModel):
    origin: pl.String = pa.Field(isin=ORIGINS)
    year: pl.Int64 = pa.Field(ge=2000, le=2100)
    month: pl.Int64 = pa.Field(ge=1, le=12)
    day: pl.Int64 = pa.Field(ge=1, le=31)
    hour: pl.Int64 = pa.Field(ge=0, le=23)
    temp: pl.Float64 = pa.Field(nullable=True, ge=-60, le=130)
    dewp: pl.Float64 = pa.Field(nullable=True, ge=-80, le=100)
    humid: pl.Float64 = pa.Field(nullable=True, ge=0, le=100)
    wind_dir: pl.Int64 = pa.Field(nullable=True, ge=0, le=360)
    # No upper bound here: upstream has a known faulty 1048 mph reading; features treat it as missing.
    wind_speed: pl.Float64 = pa.Field(nullable=True, ge=0)
    wind_gust: pl.Float64 = pa.Field(nullable=True, ge=0)
    precip: pl.Float64 = pa.Field(nullable=True, ge=0)
    pressure: pl.Float64 = pa.Field(nullable=True, ge=900, le=1100)
    visib: pl.Float64 = pa.Field(nullable=True, ge=0)

    class Config:
        strict = True


class LandingPlanes(pa.DataFrameModel):
    tailnum: pl.String = pa.Field(unique=True)
    year: pl.Int64 = pa.Field(nullable=True, ge=1900, le=2100)
    type: pl.String = pa.Field(nullable=True)
    manufacturer: pl.String = pa.Field(nullable=True)
    model: pl.String = pa.Field(nullable=True)
    engines: pl.Int64 = pa.Field(nullable=True, ge=0)
    seats: pl.Int64 = pa.Field(nullable=True, ge=0)
    speed: pl.Int64 = pa.Field(nullable=True, ge=0)
    engine: pl.String = pa.Field(nullable=True)


def _feature_schema() -> pa.DataFrameSchema:
    columns: dict[str, pa.Column] = {
        "date": pa.Column(pl.Date),
        "carrier": pa.Column(pl.String, pa.Check.str_matches(CARRIER_CODE)),
        "flight": pa.Column(pl.Int64, pa.Check.ge(1)),
        "origin": pa.Column(pl.String, pa.Check.isin(ORIGINS)),
        "dest": pa.Column(pl.String, pa.Check.str_matches(AIRPORT_CODE)),
        "sched_dep_time": pa.Column(pl.Int64, pa.Check.in_range(0, 2359)),
        "tailnum": pa.Column(pl.String, nullable=True),
        "route": pa.Column(pl.String),
        F.LABEL: pa.Column(pl.Boolean, nullable=True),
    }
    ranges = {
        "sched_dep_minutes": (0, 24 * 60), "sched_arr_minutes": (0, 24 * 60), "dep_hour": (0, 23),
        "distance": (0, 10_000), "dow": (1, 7), "month": (1, 12), "day_of_year": (1, 366),
        "is_weekend": (0, 1), "plane_age": (0, 120), "humid": (0, 100), "visib": (0, 100),
        "precip": (0, 100), "wind_speed": (0, F.MAX_PLAUSIBLE_WIND_MPH), "wind_gust": (0, F.MAX_PLAUSIBLE_WIND_MPH),
    }
    for name in F.NUMERIC:
        checks = [pa.Check.in_range(*ranges[name])] if name in ranges else []
        columns[name] = pa.Column(pl.Float64, checks, nullable=True)
    return pa.DataFrameSchema(columns, strict=True, ordered=False, name="FlightFeatures")


FlightFeatures = _feature_schema()
SCHEMAS: dict[str, Any] = {
    "flights": LandingFlights, "weather": LandingWeather, "planes": LandingPlanes, "features": FlightFeatures,
}


@dataclass
class Violation:
    rule: str
    column: str | None
    failing_rows: int
    examples: list[Any] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "column": self.column, "failing_rows": self.failing_rows,
                "examples": [str(e) for e in self.examples[:5]]}

    def __str__(self) -> str:
        where = f" column {self.column!r}" if self.column else ""
        return f"{self.rule}{where}: {self.failing_rows} failing row(s), e.g. {self.as_dict()['examples']}"


_FRAME_LEVEL_RULES = {"column_in_dataframe": "required_column_missing", "column_in_schema": "unexpected_column"}


def schema_violations(frame: pl.DataFrame, schema: Any) -> list[Violation]:
    """Validate lazily (all failures at once) and group pandera's failure cases by rule and column."""
    try:
        schema.validate(frame, lazy=True)
        return []
    except SchemaErrors as exc:
        cases = exc.failure_cases
    except SchemaError as exc:  # pandera raises this (not SchemaErrors) for some frame-level failures
        return [Violation(str(exc.check), None, frame.height, [str(exc)])]
    cases = cases.with_columns(pl.col("failure_case").cast(pl.String), pl.col("check").cast(pl.String))
    out = []
    for (check, column), group in cases.group_by(["check", "column"], maintain_order=True):
        if check in _FRAME_LEVEL_RULES:  # the failure case names the column; the "column" is the schema
            for name in group["failure_case"].to_list():
                out.append(Violation(_FRAME_LEVEL_RULES[check], name, frame.height))
            continue
        out.append(Violation(str(check), column, group.height, group["failure_case"].head(5).to_list()))
    return out


def duplicate_key_violations(frame: pl.DataFrame, key: list[str]) -> list[Violation]:
    missing = [c for c in key if c not in frame.columns]
    if missing:
        return [Violation("key_columns_present", ",".join(missing), frame.height)]
    dupes = frame.filter(pl.struct(key).is_duplicated())
    if dupes.is_empty():
        return []
    examples = dupes.select(key).unique(maintain_order=True).head(5).to_dicts()
    return [Violation("duplicate_key", ",".join(key), dupes.height, examples)]


def empty_violations(frame: pl.DataFrame) -> list[Violation]:
    return [Violation("non_empty_day", None, 0, ["the day has no rows"])] if frame.is_empty() else []


def date_violations(frame: pl.DataFrame, day: dt.date) -> list[Violation]:
    """Every row must belong to the partition's day (the landing folder's date)."""
    cols = ["year", "month", "day"]
    if any(c not in frame.columns for c in cols) or frame.is_empty():
        return []
    try:
        wrong = frame.filter(pl.date("year", "month", "day") != pl.lit(day))
    except pl.exceptions.PolarsError:
        return []  # wrong types are reported by the schema rule
    if wrong.is_empty():
        return []
    examples = wrong.select(cols).unique(maintain_order=True).head(5).to_dicts()
    return [Violation("date_matches_partition", "year,month,day", wrong.height, examples)]
