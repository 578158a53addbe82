"""The flights feature functions (``ml_assets/datasets/flights.py``), pure: no Dagster, no files.

Hand-built rows check the definitions (block time, calendar, the day's weather), a brute-force recount checks the
congestion counts over a real day, and the serving path (``serving.context.online_features`` with an in-memory
``DayContext``) is checked to compute what the batch path computes for the same day.
"""
from __future__ import annotations

import bisect
import datetime as dt
from collections import Counter

import polars as pl
import pytest

from ml_assets.core import features as F
from ml_assets.core import landing as L
from ml_assets.datasets import _REGISTRY, feature_function
from ml_assets.serving import context as CX
from ml_assets_tests.core.conftest import DAYS, day_sources

DAY = DAYS[4]  # 2013-01-05
_TYPES = {"int64": pl.Int64, "float64": pl.Float64, "string": pl.String, "bool": pl.Boolean}
BLOCK = ["block_minutes", "block_padding", "scheduled_speed"]
WX = ["wx_next_precip_max", "wx_next_visib_min", "wx_next_gust_max", "wx_day_precip", "wx_day_wet_hours",
      "wx_day_visib_min", "wx_nyc_precip", "wx_nyc_visib_min"]


def _typed(spec, source: str, rows: list[dict]) -> pl.DataFrame:
    """``rows`` as the source delivers them: every spec column, typed (absent values null)."""
    columns = spec.sources[source].columns
    return pl.DataFrame([{c: r.get(c) for c in columns} for r in rows],
                        schema={c: _TYPES[col.dtype] for c, col in columns.items()})


def _flight(day: dt.date, origin: str, dest: str, dep: int, arr: int, flight: int = 1, carrier: str = "UA",
            distance: int = 2454) -> dict:
    return {"year": day.year, "month": day.month, "day": day.day, "sched_dep_time": dep, "sched_arr_time": arr,
            "carrier": carrier, "flight": flight, "tailnum": "N14228", "origin": origin, "dest": dest,
            "distance": distance, "hour": dep // 100, "minute": dep % 100}


@pytest.fixture(scope="module")
def sources(spec) -> dict[str, pl.DataFrame]:
    return day_sources(spec, DAY)


@pytest.fixture(scope="module")
def batch(spec, sources) -> pl.DataFrame:
    return F.build_features(spec, sources)


@pytest.fixture(scope="module")
def airports(sources) -> pl.DataFrame:
    return sources["airports"]


def _differing(a: pl.DataFrame, b: pl.DataFrame) -> list[str]:
    assert a.columns == b.columns and a.height == b.height
    return [c for c in a.columns if not a[c].equals(b[c])]


# ---------------------------------------------------------------------------------------------- leakage


def test_no_outcome_column_reaches_a_feature_function(spec, sources, monkeypatch):
    """The events and context sources carry no outcome column, and on the feature path no function is handed
    one: not on its rows, not in any source of its context (the outcomes source is never among them)."""
    outcome = set(spec.outcome_columns)
    assert outcome == {"dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"}
    for name in spec.schedule_sources:
        assert not outcome & set(spec.sources[name].columns), name
        assert not outcome & set(sources[name].columns), name
    seen: dict[str, tuple[set, dict]] = {}
    for name in spec.features.functions:
        real = feature_function(name)

        def spy(rows, context, _name=name, _real=real):
            seen[_name] = (set(rows.collect_schema().names()),
                           {s: set(f.collect_schema().names()) for s, f in context.sources.items()})
            return _real(rows, context)
        monkeypatch.setitem(_REGISTRY, name, spy)
    F.build_features(spec, sources)
    assert set(seen) == set(spec.features.functions)
    for name, (rows, context) in seen.items():
        assert not (outcome | {spec.label.name}) & rows, name
        assert spec.outcomes_name not in context, name
        assert all(not outcome & columns for columns in context.values()), name


def _scrambled(outcomes: pl.DataFrame) -> pl.DataFrame:
    delay = pl.col("arr_delay")
    return outcomes.with_columns(
        arr_delay=pl.when(delay.is_null()).then(0).when(delay > 15).then(0).otherwise(90),
        dep_delay=-pl.col("dep_delay").fill_null(0) + 100, air_time=pl.col("air_time").fill_null(1) * 2,
        dep_time=(pl.col("dep_time").fill_null(0) + 600) % 2400,
        arr_time=(pl.col("arr_time").fill_null(0) + 900) % 2400)


def test_an_outcomes_table_among_the_sources_changes_no_feature_column(spec, sources, batch, monkeypatch):
    """Handed D's and D-1's outcomes (as delivered, scrambled or all null) among the sources, or as columns
    attached to the schedule, ``build_features`` gives every feature column unchanged: the outcomes source never
    reaches a function's context and undeclared columns are dropped. A function looking for them finds nothing
    (the canary below would otherwise move ``origin_day_rank``)."""
    outcomes = pl.concat([L.source_rows(spec, spec.outcomes_name, d) for d in (DAY, DAY - dt.timedelta(days=1))])
    variants = {"delivered": outcomes, "scrambled": _scrambled(outcomes),
                "null": outcomes.with_columns(pl.lit(None, pl.Int64).alias(c) for c in spec.outcome_columns)}
    assert not variants["scrambled"].equals(outcomes)
    assert batch.columns == spec.feature_columns
    for label, frame in variants.items():
        out = F.build_features(spec, {**sources, spec.outcomes_name: frame})
        assert _differing(out, batch) == [], label
    key = spec.sources[spec.outcomes_name].key
    attached = sources["schedule"].join(variants["scrambled"].drop(
        [c for c in variants["scrambled"].columns if c in sources["schedule"].columns and c not in key]),
        on=key, how="left", maintain_order="left")
    assert set(spec.outcome_columns) <= set(attached.columns)

    real = feature_function("flights.congestion")
    seen = []

    def leaky(rows, context):
        seen.append((set(context.sources), set(rows.collect_schema().names())))
        extra = context.sources.get(spec.outcomes_name)
        late = 0 if extra is None else extra.select(pl.col("arr_delay").fill_null(0).sum()).collect().item()
        return real(rows, context).with_columns(pl.col("origin_day_rank") + late)
    monkeypatch.setitem(_REGISTRY, "flights.congestion", leaky)
    out = F.build_features(spec, {**sources, "schedule": attached, spec.outcomes_name: variants["scrambled"]})
    assert _differing(out, batch) == []
    (names, columns), = seen
    assert spec.outcomes_name not in names and not set(spec.outcome_columns) & columns


# ---------------------------------------------------------------------------------------------- congestion


def test_congestion_matches_a_brute_force_recount(sources, batch):
    rows = sources["schedule"].to_dicts()
    assert batch.height == len(rows) > 500
    by_origin_hour = Counter((r["origin"], r["hour"]) for r in rows)
    counts = {
        "origin_day_flights": (Counter(r["origin"] for r in rows), lambda r: r["origin"]),
        "carrier_origin_day_flights": (Counter((r["carrier"], r["origin"]) for r in rows),
                                       lambda r: (r["carrier"], r["origin"])),
        "carrier_day_flights": (Counter(r["carrier"] for r in rows), lambda r: r["carrier"]),
        "dest_day_flights": (Counter(r["dest"] for r in rows), lambda r: r["dest"]),
        "dest_arr_hour_flights": (Counter((r["dest"], r["sched_arr_time"] // 100 % 24) for r in rows),
                                  lambda r: (r["dest"], r["sched_arr_time"] // 100 % 24)),
        "nyc_hour_flights": (Counter(r["hour"] for r in rows), lambda r: r["hour"]),
    }
    departures = {o: sorted(r["sched_dep_time"] for r in rows if r["origin"] == o) for o in ("EWR", "JFK", "LGA")}
    ties = 0
    for r, f in zip(rows, batch.iter_rows(named=True)):
        assert (f["flight"], f["sched_dep_time"]) == (r["flight"], r["sched_dep_time"])  # the events' order
        assert f["origin_hour_flights"] == by_origin_hour[(r["origin"], r["hour"])]
        assert f["origin_3h_flights"] == sum(by_origin_hour[(r["origin"], r["hour"] + k)] for k in (-1, 0, 1))
        assert f["nyc_day_flights"] == len(rows)
        for column, (counter, key) in counts.items():
            assert f[column] == counter[key(r)], column
        # the average rank of its departure time among the origin's departures, over their number
        times = departures[r["origin"]]
        earlier = bisect.bisect_left(times, r["sched_dep_time"])
        same = bisect.bisect_right(times, r["sched_dep_time"]) - earlier
        ties += same > 1
        assert f["origin_day_rank"] == pytest.approx((earlier + (same + 1) / 2) / len(times))
    assert ties > 0  # the day has tied departure times: the rank's tie rule was exercised


def test_each_day_is_built_on_its_own(spec):
    """Two days built together equal each built alone: counts, ranks, medians, calendar, weather never mix days."""
    first, second = day_sources(spec, DAYS[2]), day_sources(spec, DAYS[3])
    both = {n: pl.concat([first[n], second[n]]) for n in spec.schedule_sources}
    together = F.build_features(spec, {**first, **both})
    apart = pl.concat([F.build_features(spec, first), F.build_features(spec, second)])
    assert _differing(together, apart) == []


# ---------------------------------------------------------------------------------------------- block time


def _block(spec, airports, flights: list[dict]) -> pl.DataFrame:
    return F.build_features(spec, {"schedule": _typed(spec, "schedule", flights), "airports": airports})


def test_block_minutes_take_the_time_zones_out(spec, airports):
    summer, winter = dt.date(2013, 7, 15), dt.date(2013, 1, 15)
    cases = [  # (day, origin, dest, dep, arr) -> minutes gate to gate
        ((summer, "EWR", "LAX", 800, 1100), 360),  # 3h on the clock + 3h of zones
        ((winter, "EWR", "LAX", 800, 1100), 360),  # both zones off daylight time: the same 3h difference
        ((summer, "JFK", "PHX", 800, 1100), 360),  # Phoenix keeps standard time: 3h behind New York in summer
        ((winter, "JFK", "PHX", 800, 1100), 300),  # ...and 2h in winter
        ((winter, "LGA", "ORD", 800, 930), 150),
        ((winter, "JFK", "HNL", 900, 1430), 630),  # 5h behind in winter
        ((winter, "JFK", "SJU", 800, 1200), 180),  # not in the airports table (MISSING_TZONES): 1h ahead
        ((summer, "JFK", "SJU", 800, 1200), 240),  # Puerto Rico has no daylight time: same clock in summer
        ((winter, "EWR", "LAX", 2200, 100), 360),  # arrives after midnight: wraps
        ((winter, "JFK", "SJU", 2359, 400), 181),  # a red-eye the other way round the clock
        ((winter, "EWR", "BOS", 800, 800), 0),     # an (odd) zero-length schedule stays 0, not 1440
    ]
    out = _block(spec, airports, [_flight(*args, flight=i + 1) for i, (args, _) in enumerate(cases)])
    assert out["block_minutes"].to_list() == [float(m) for _, m in cases]


def test_block_uses_the_offset_at_local_noon_on_dst_change_days(spec, airports):
    """On a change day New York's offset at local noon is the new one (clocks move at 02:00), so a morning
    departure to Phoenix (no daylight time) gets the day's new zone difference; Los Angeles moves with New York."""
    cases = [
        ((dt.date(2013, 3, 9), "EWR", "PHX", 800, 1100), 300),   # the day before: EST, 2h
        ((dt.date(2013, 3, 10), "EWR", "PHX", 800, 1100), 360),  # spring forward: EDT at noon, 3h (not EST's 2h)
        ((dt.date(2013, 3, 10), "EWR", "LAX", 800, 1100), 360),
        ((dt.date(2013, 11, 2), "EWR", "PHX", 800, 1100), 360),  # the day before: EDT, 3h
        ((dt.date(2013, 11, 3), "EWR", "PHX", 800, 1100), 300),  # fall back: EST at noon, 2h (not EDT's 3h)
        ((dt.date(2013, 11, 3), "EWR", "LAX", 800, 1100), 360),
    ]
    out = _block(spec, airports, [_flight(*args, flight=i + 1) for i, (args, _) in enumerate(cases)])
    assert out["block_minutes"].to_list() == [float(m) for _, m in cases]


def test_block_padding_speed_and_unknown_zones(spec, airports):
    day = dt.date(2013, 7, 15)
    null_zone = airports.filter(pl.col("tzone").is_null())["faa"][0]
    out = _block(spec, airports, [
        _flight(day, "EWR", "LAX", 800, 1100, flight=1),   # 360
        _flight(day, "EWR", "LAX", 900, 1220, flight=2),   # 380
        _flight(day, "EWR", "LAX", 1000, 1310, flight=3),  # 370: the route's median that day
        _flight(day + dt.timedelta(days=1), "EWR", "LAX", 800, 1200, flight=1),  # another day: its own median
        _flight(day, "EWR", "LAX", 800, 805, flight=4, distance=100),           # 185: a short one
        _flight(day, "EWR", "ZZZ", 800, 1100, flight=5),   # an airport nobody knows
        _flight(day, "EWR", null_zone, 800, 1100, flight=6),  # known, but without a time zone
    ]).sort("flight", "date")
    rows = {(r["flight"], r["date"]): r for r in out.iter_rows(named=True)}
    first, second, third = (rows[(n, day)] for n in (1, 2, 3))
    assert [first["block_minutes"], second["block_minutes"], third["block_minutes"]] == [360, 380, 370]
    # the route's median that day over the four EWR-LAX flights (360, 380, 370, 185) is 365
    assert [first["block_padding"], second["block_padding"], third["block_padding"]] == [-5, 15, 5]
    assert first["scheduled_speed"] == pytest.approx(2454 / 360)
    next_day = rows[(1, day + dt.timedelta(days=1))]
    assert next_day["block_minutes"] == 420 and next_day["block_padding"] == 0
    short = rows[(4, day)]
    assert short["block_minutes"] == 185 and short["scheduled_speed"] == pytest.approx(100 / 185)
    for flight in (5, 6):
        assert [rows[(flight, day)][c] for c in BLOCK] == [None, None, None], flight


def test_a_block_under_20_minutes_is_sped_over_20(spec, airports):
    out = _block(spec, airports, [_flight(dt.date(2013, 7, 15), "EWR", "PHL", 800, 810, distance=80)])
    assert out["block_minutes"].to_list() == [10.0]
    assert out["scheduled_speed"].to_list() == [pytest.approx(80 / 20)]


# ---------------------------------------------------------------------------------------------- calendar


def test_days_to_holiday_is_signed_clipped_and_near_within_a_day(spec):
    cases = {  # day -> (days_to_holiday, near_holiday); US holidays, observed
        dt.date(2013, 7, 3): (-1, 1), dt.date(2013, 7, 4): (0, 1), dt.date(2013, 7, 5): (1, 1),
        dt.date(2013, 7, 6): (2, 0), dt.date(2013, 7, 1): (-3, 0),
        dt.date(2013, 12, 24): (-1, 1), dt.date(2013, 12, 25): (0, 1), dt.date(2013, 12, 31): (-1, 1),  # 2014-01-01
        dt.date(2013, 1, 1): (0, 1), dt.date(2013, 11, 12): (1, 1), dt.date(2013, 11, 26): (-2, 0),
        dt.date(2013, 8, 15): (-10, 0),  # Labor Day is 18 days ahead: clipped
        dt.date(2013, 7, 20): (10, 0),   # Independence Day 16 days back: clipped
    }
    flights = [_flight(d, "EWR", "LAX", 800, 1100, flight=i + 1) for i, d in enumerate(cases)]
    out = F.build_features(spec, {"schedule": _typed(spec, "schedule", flights)})
    got = {r["date"]: (r["days_to_holiday"], r["near_holiday"]) for r in out.iter_rows(named=True)}
    assert got == {d: (float(a), float(b)) for d, (a, b) in cases.items()}
    # over the whole year: within the clip, 0 exactly on the 10 holidays, "near" exactly within a day
    year = F.build_features(spec, {"schedule": _typed(spec, "schedule", [
        _flight(dt.date(2013, 1, 1) + dt.timedelta(days=i), "EWR", "LAX", 800, 1100) for i in range(365)])})
    assert year["days_to_holiday"].abs().max() == 10 and (year["days_to_holiday"] == 0).sum() == 10
    assert year["near_holiday"].to_list() == (year["days_to_holiday"].abs() <= 1).cast(pl.Float64).to_list()


# ---------------------------------------------------------------------------------------------- day weather


def test_day_weather_matches_hand_computations(spec):
    day, other = dt.date(2013, 6, 1), dt.date(2013, 6, 2)
    ewr = {h: {"precip": 0.0, "visib": 10.0} for h in range(24)}
    ewr[4]["visib"] = 0.5                               # before the 05:30 departure's window
    ewr[6].update(precip=0.1, wind_gust=30.0)
    ewr[7]["visib"] = 2.0
    ewr[8].update(precip=0.3, visib=None)               # a missing reading is skipped
    ewr[9].update(precip=0.5, wind_gust=45.0)           # after the window (05..08)
    ewr[12]["precip"] = None                            # unknown rain: not a wet hour
    ewr[23]["precip"] = 0.2
    jfk = {h: {"precip": 0.05 if h == 10 else 0.0, "visib": 8.0} for h in range(24)}
    weather = [{"origin": "EWR", "year": 2013, "month": 6, "day": 1, "hour": h, **v} for h, v in ewr.items()]
    weather += [{"origin": "JFK", "year": 2013, "month": 6, "day": 1, "hour": h, **v} for h, v in jfk.items()]
    weather += [{"origin": "JFK", "year": 2013, "month": 6, "day": 2, "hour": 10, "precip": 5.0, "visib": 0.1,
                 "wind_gust": 60.0}]                    # the next day: not this day's
    flights = [_flight(day, "EWR", "LAX", 530, 830, flight=1), _flight(day, "EWR", "LAX", 2245, 145, flight=2),
               _flight(day, "JFK", "LAX", 1000, 1300, flight=3), _flight(day, "LGA", "ORD", 1000, 1130, flight=4),
               _flight(other, "JFK", "LAX", 1000, 1300, flight=5)]
    out = F.build_features(spec, {"schedule": _typed(spec, "schedule", flights),
                                  "weather": _typed(spec, "weather", weather)})
    got = {r["flight"]: [r[c] for c in WX] for r in out.iter_rows(named=True)}
    ewr_day, nyc = [1.1, 4.0, 0.5], [1.15, 0.5]        # EWR: 0.1+0.3+0.5+0.2, 4 wet hours; NYC: + JFK's 0.05
    expected = {
        1: [0.3, 2.0, 30.0, *ewr_day, *nyc],             # hours 05..08
        2: [0.2, 10.0, None, *ewr_day, *nyc],            # hours 22, 23 (the day ends there)
        3: [0.05, 8.0, None, 0.05, 1.0, 8.0, *nyc],
        4: [None, None, None, None, None, None, *nyc],   # no weather at LGA: only the NYC-wide values
        5: [5.0, 0.1, 60.0, 5.0, 1.0, 0.1, 5.0, 0.1],    # its own day
    }
    for flight, values in expected.items():
        assert got[flight] == [None if v is None else pytest.approx(v) for v in values], flight


# ---------------------------------------------------------------------------------------------- serving


def test_serving_rows_equal_the_batch_rows_of_the_day_with_the_request_put_in(spec, sources, batch):
    """``online_features`` over D's stored schedule, weather and references (in memory) equals the batch
    features of D's schedule with the request rows put in: a known flight unchanged, one with a tied departure
    time, one whose arrival the request moves (it replaces the stored row) and a new one (it is added)."""
    schedule = sources["schedule"]
    stored = CX.DayContext(day=DAY, events=schedule, sources={n: f for n, f in sources.items() if n != "schedule"})
    key = spec.features.key
    tied = (schedule.filter(pl.len().over("origin", "sched_dep_time") > 1)
            .sort("origin", "sched_dep_time", "carrier", "flight").row(0, named=True))
    plain = schedule.filter(pl.len().over("origin", "sched_dep_time") == 1).row(10, named=True)
    moved = schedule.filter((pl.col("sched_arr_time") % 100 < 20) & (pl.col("sched_arr_time") < 2200)
                            & (pl.col("sched_arr_time") > pl.col("sched_dep_time"))
                            & ~pl.col("flight").is_in([plain["flight"], tied["flight"]])).row(0, named=True)
    moved = {**moved, "sched_arr_time": moved["sched_arr_time"] + 30}
    new = {**plain, "flight": 9999, "dest": "SJU"}
    request = pl.DataFrame([plain, tied, moved, new], schema=schedule.schema)

    online = CX.online_features(spec, request, {}, lambda d: stored if d == DAY else CX.DayContext(day=d))
    put_in = pl.concat([schedule.join(request.select(spec.events_source.key), on=spec.events_source.key,
                                      how="anti"), request])
    expected = F.with_date(spec, request).collect().select(key).join(
        F.build_features(spec, {**sources, "schedule": put_in}), on=key, how="left", maintain_order="left")
    assert online.columns == batch.columns and online.height == 4
    assert _differing(online, expected) == []

    def stored_row(flight: dict) -> dict:
        return batch.filter((pl.col("carrier") == flight["carrier"]) & (pl.col("flight") == flight["flight"])
                            & (pl.col("origin") == flight["origin"])
                            & (pl.col("sched_dep_time") == flight["sched_dep_time"])).row(0, named=True)
    # the request really did go into its day: the moved arrival is seen, the new flight counted
    assert online["block_minutes"][2] == stored_row(moved)["block_minutes"] + 30
    assert online["origin_day_flights"][2] == stored_row(moved)["origin_day_flights"] + (moved["origin"] ==
                                                                                          new["origin"])
    assert online["origin_day_flights"][3] == stored_row(plain)["origin_day_flights"] + 1
    assert online["origin_hour_flights"][0] == stored_row(plain)["origin_hour_flights"] + 1  # the new one's hour
    assert online["wx_day_precip"].null_count() == 0 and online["block_minutes"].null_count() == 0


def test_a_standalone_request_gets_null_block_and_weather_not_an_error(spec):
    """Nothing stored (a standalone bundle): the request rows alone, so block time and day weather are unknown;
    the schedule-only features still come from the request itself, each date on its own."""
    request = _typed(spec, "schedule", [_flight(DAY, "EWR", "LAX", 800, 1100, flight=1),
                                        _flight(DAY + dt.timedelta(days=1), "EWR", "LAX", 800, 1100, flight=1)])
    online = CX.online_features(spec, request, {}, lambda d: CX.DayContext(day=d))
    assert online.height == 2 and online.columns == spec.feature_columns
    for column in [*BLOCK, *WX, "temp", "visib", "seats", "plane_age"]:
        assert online[column].null_count() == 2, column
    assert online["origin_day_flights"].to_list() == [1.0, 1.0] and online["origin_day_rank"].to_list() == [1.0, 1.0]
    assert online["days_to_holiday"].to_list() == [4.0, 5.0]  # after New Year's Day
