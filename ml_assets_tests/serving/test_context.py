"""Context lookup for online requests (pure: a temp storage root written by hand, no pipeline)."""
from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from ml_assets.core import history as H
from ml_assets.core.features import build_features
from ml_assets.core.spec import history_column
from ml_assets.core.storage import make_path, write_parquet
from ml_assets.datasets import _REGISTRY, register
from ml_assets.serving import context as CX
from ml_assets.serving.request import parse_request, request_schema

DAY = dt.date(2013, 1, 5)


def test_refused_key_is_the_storage_io_managers():
    from ml_assets.resources.storage import REFUSED_KEY

    assert CX.REFUSED_KEY == REFUSED_KEY


@pytest.fixture(scope="module")
def day_tables(tables, spec):
    def rows(source: str) -> pl.DataFrame:
        s = spec.sources[source]
        return tables[s.table].filter((pl.col("year") == DAY.year) & (pl.col("month") == DAY.month)
                                      & (pl.col("day") == DAY.day)).select(list(s.columns))

    references = {name: tables[r.table].select(list(r.columns)) for name, r in spec.reference.items()}
    return {"schedule": rows("schedule"), "weather": rows("weather"), **references}


def _history(as_of: dt.date, carrier: str, rate: float) -> pl.DataFrame:
    rows = [{"name": H.GLOBAL, "window": w, "key": H.GLOBAL, "positives": 10, "count": 50, "rate": 0.2}
            for w in (7, 28)]
    rows += [{"name": "carrier", "window": 7, "key": carrier, "positives": 5, "count": 10, "rate": rate}]
    return pl.DataFrame(rows, schema={k: v for k, v in H.SCHEMA.items() if k != "as_of"}).with_columns(
        as_of=pl.lit(as_of))


@pytest.fixture
def stored(tmp_path, spec, day_tables):
    """A storage root holding DAY as the graph stores it: raw events and context, and the reference tables."""
    root = make_path(str(tmp_path / "home"))
    write_parquet(CX.daily_path(root, spec, "raw_schedule", DAY), day_tables["schedule"])
    write_parquet(CX.daily_path(root, spec, "raw_weather", DAY), day_tables["weather"])
    for name in spec.reference:
        write_parquet(CX.reference_path(root, spec, name), day_tables[name])
    return root


@pytest.fixture
def history_stored(stored, history_spec):
    """``stored`` plus a delay history as of D-1-lag, for a dataset whose spec has one (``history_spec``)."""
    as_of = CX.history_as_of(history_spec, DAY)
    write_parquet(CX.daily_path(stored, history_spec, "delay_history", as_of), _history(as_of, "UA", 0.9))
    return stored


def _requests(spec, frame: pl.DataFrame, **nested) -> list[dict]:
    schema = request_schema(spec)
    out = []
    for row in frame.to_dicts():
        record = {k: v for k, v in row.items() if k in schema.fields}
        record.update({k: v for k, v in nested.items()})
        out.append(record)
    return out


def _online(spec, root, body):
    rows = parse_request(request_schema(spec), body)
    return CX.online_features(spec, rows.events, rows.nested, CX.ContextCache(root, spec))


def test_history_is_read_as_of_the_day_before_minus_the_lag(spec, monkeypatch):
    assert CX.history_as_of(spec, DAY) == DAY - dt.timedelta(days=2)
    monkeypatch.setenv("ML_ASSETS_OUTCOME_LAG_DAYS", "3")
    assert CX.history_as_of(spec, DAY) == DAY - dt.timedelta(days=4)
    assert CX.history_as_of(spec, spec.first_day) is None


def test_day_context_reads_what_is_stored_and_refused_files_are_absent(stored, spec, day_tables):
    context = CX.load_day_context(stored, spec, DAY)
    assert context.events.equals(day_tables["schedule"])
    assert set(context.sources) == {"weather", "planes", "airports"} and context.history is None  # spec: none
    write_parquet(CX.daily_path(stored, spec, "raw_weather", DAY), day_tables["weather"],
                  metadata={CX.REFUSED_KEY: "null_share: temp"})
    context = CX.load_day_context(stored, spec, DAY)
    assert "weather" not in context.sources and context.events is not None
    assert CX.load_day_context(stored, spec, DAY + dt.timedelta(days=1)).events is None
    assert CX.load_day_context(make_path(str(stored) + "-nothing"), spec, DAY).standalone


def _online_equals_batch(spec, root, day_tables, history=None) -> pl.DataFrame:
    batch = build_features(spec, day_tables, history)
    sample = day_tables["schedule"].sample(25, seed=1)
    online = _online(spec, root, _requests(spec, sample))
    key = spec.features.key
    expected = online.select(key).join(batch, on=key, how="left", maintain_order="left")
    assert online.height == 25 and expected.height == 25
    assert online.equals(expected.select(batch.columns))
    return online


def test_online_rows_equal_the_batch_rows_of_the_same_events(stored, spec, day_tables):
    online = _online_equals_batch(spec, stored, day_tables)
    # the stored weather, planes and airports were used; the flights functions saw the whole stored day
    for column in ("temp", "seats", "block_minutes", "wx_day_precip"):
        assert online[column].null_count() < online.height, column
    assert (online["origin_day_flights"] > 100).all()


def test_online_rows_read_the_stored_history_when_the_spec_has_one(history_stored, history_spec, day_tables):
    as_of = CX.history_as_of(history_spec, DAY)
    online = _online_equals_batch(history_spec, history_stored, day_tables, _history(as_of, "UA", 0.9))
    ua = online.filter(pl.col("carrier") == "UA")
    assert ua.height and (ua[history_column("carrier", 7)] == 0.9).all()  # the stored history was used


def test_a_request_replaces_the_stored_row_with_its_key(stored, spec, day_tables):
    row = day_tables["schedule"].head(1)
    changed = _requests(spec, row)[0] | {"dest": "ZZZ", "distance": 123}
    online = _online(spec, stored, changed)
    assert online["dest"].to_list() == ["ZZZ"] and online["distance"].to_list() == [123.0]
    assert online["route"].to_list() == [f"{row['origin'][0]}-ZZZ"]


def test_a_nested_object_replaces_the_joined_row_for_that_request_only(stored, spec, day_tables):
    rows = day_tables["schedule"].filter(pl.col("origin") == "EWR").sort("sched_dep_time").head(40)
    hour = rows["sched_dep_time"] // 100
    same_hour = rows.filter(hour == hour.mode().sort()[0]).head(2)
    assert same_hour.height == 2
    first, second = _requests(spec, same_hour)
    body = [first | {"weather": {"temp": -12.5}}, second]
    online = _online(spec, stored, body)
    stored_temp = _online(spec, stored, second)["temp"][0]
    assert online["temp"].to_list() == [-12.5, stored_temp]
    assert online["humid"][0] is None  # replaced, not merged: what the request leaves out is unknown
    both = _online(spec, stored, [first | {"weather": {"temp": 1.0}}, second | {"weather": {"temp": 2.0}}])
    assert both["temp"].to_list() == [1.0, 2.0]


def test_the_same_event_twice_in_a_batch_is_answered_twice(stored, spec, day_tables):
    request = _requests(spec, day_tables["schedule"].head(1))[0]
    online = _online(spec, stored, [request, request | {"distance": 7}, request])
    assert online["distance"].to_list()[1] == 7.0 and online.height == 3
    assert online["distance"][0] == online["distance"][2] != 7.0


def test_a_standalone_request_has_null_context(tmp_path, spec, day_tables):
    root = make_path(str(tmp_path / "empty"))
    online = _online(spec, root, _requests(spec, day_tables["schedule"].head(3)))
    assert online.height == 3
    for column in ("temp", "seats", "block_minutes", "wx_day_precip"):
        assert online[column].null_count() == 3
    with_plane = _online(spec, root, _requests(spec, day_tables["schedule"].head(1), plane={"seats": 150}))
    assert with_plane["seats"].to_list() == [150.0]


def test_requests_of_several_days_keep_their_order(stored, spec, day_tables):
    here = _requests(spec, day_tables["schedule"].head(2))
    elsewhere = here[0] | {"day": 20}
    online = _online(spec, stored, [here[0], elsewhere, here[1]])
    assert [d.day for d in online["date"].to_list()] == [5, 20, 5]
    assert online["temp"][1] is None and online["temp"][0] is not None


def test_feature_functions_see_the_whole_stored_day(stored, spec, day_tables):
    name = "servingtest.congestion"

    @register(name)
    def congestion(rows, context):
        day = context.sources[context.spec.events_name].with_columns(__h=pl.col("sched_dep_time") // 100)
        counts = day.group_by("origin", "__h").agg(congestion=pl.len().cast(pl.Float64))
        return (rows.with_columns(__h=pl.col("sched_dep_time") // 100)
                .join(counts, on=["origin", "__h"], how="left", maintain_order="left").drop("__h"))

    try:
        features = spec.features.model_copy(update={"functions": [*spec.features.functions, name],
                                                    "numeric": [*spec.features.numeric, "congestion"]})
        with_function = spec.model_copy(update={"features": features})
        batch = build_features(with_function, day_tables)
        request = _requests(spec, day_tables["schedule"].head(1))[0]
        rows = parse_request(request_schema(spec), request)
        online = CX.online_features(with_function, rows.events, rows.nested, CX.ContextCache(stored, with_function))
        key = [c for c in spec.features.key]
        expected = batch.join(online.select(key), on=key, how="semi")
        assert online["congestion"][0] == expected["congestion"][0] > 1  # it saw the other flights of the hour
    finally:
        _REGISTRY.pop(name, None)


def test_the_cache_rereads_after_its_ttl(stored, spec, day_tables):
    now = [0.0]
    cache = CX.ContextCache(stored, spec, ttl_seconds=5, monotonic=lambda: now[0])
    assert cache(DAY).events.height == day_tables["schedule"].height
    write_parquet(CX.daily_path(stored, spec, "raw_schedule", DAY), day_tables["schedule"].head(3))
    assert cache(DAY).events.height == day_tables["schedule"].height
    now[0] = 6.0
    assert cache(DAY).events.height == 3


def test_identical_records_are_built_once_and_varied_batches_are_capped(stored, spec, day_tables, monkeypatch):
    calls = []
    real = CX.build_features
    monkeypatch.setattr(CX, "build_features", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    request = _requests(spec, day_tables["schedule"].head(1))[0]
    online = _online(spec, stored, [request] * 200)
    assert online.height == 200 and len(calls) == 1 and online.n_unique() == 1
    calls.clear()
    standalone = [request | {"year": 2014, "day": d} for d in range(1, 29)]  # nothing stored: one build
    assert _online(spec, stored, standalone).height == 28 and len(calls) == 1
    with pytest.raises(CX.BatchTooVaried):
        _online(spec, stored, [request | {"distance": d} for d in range(CX.MAX_BUILDS + 1)])
