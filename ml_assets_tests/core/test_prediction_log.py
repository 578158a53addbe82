"""The prediction log: one object per request batch (and event day), written once, read back by event day."""
from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest
from upath import UPath

from ml_assets.core import prediction_log as LOG
from ml_assets.core.schemas import feature_dtypes

DATASET = "flights"
WHEN = dt.datetime(2013, 1, 9, 20, 15, 30, 123456, tzinfo=dt.timezone.utc)


def _line(flight: int, p: float, ts: str, day: str = "2013-01-10", shadow: float | None = None,
          request_id: str = "req-1", **features) -> dict:
    """A line as the server logs it (``serving.shadow.log_lines``)."""
    key = {"date": day, "carrier": "UA", "flight": flight, "origin": "EWR", "sched_dep_time": 800}
    line = {"day": day, "key": key, "p": p, "model_version": "flight_delay_xgboost 1.2.0", "ts": ts,
            "features": {**key, "dest": "ORD", "temp": 30.5, **features}, "request_id": request_id}
    if shadow is not None:
        line["shadow"] = {"model_version": "flight_delay_mlp 1.0.0", "p": shadow}
    return line


def _key_types(spec):
    dtypes = feature_dtypes(spec)
    return {c: dtypes[c] for c in spec.features.key}


def test_one_object_per_batch_and_event_day(root):
    lines = [_line(1, 0.2, "2013-01-09T20:15:30Z"), _line(2, 0.4, "2013-01-09T20:15:30Z"),
             _line(3, 0.6, "2013-01-09T20:15:30Z", day="2013-01-11")]
    paths = LOG.write_batch(root, DATASET, lines, "req-1", WHEN)
    assert [p.split("/predictions/")[1] for p in paths] == [
        "flights/date=2013-01-10/20130109T201530123456Z-req-1.jsonl",
        "flights/date=2013-01-11/20130109T201530123456Z-req-1.jsonl"]
    assert [line["key"]["flight"] for line in LOG.read_day(root, DATASET, "2013-01-10")] == [1, 2]
    assert [line["key"]["flight"] for line in LOG.read_day(root, DATASET, "2013-01-11")] == [3]
    assert LOG.read_day(root, DATASET, "2013-01-12") == []
    folder = LOG.day_folder(root, DATASET, "2013-01-10")
    assert [p.name for p in folder.iterdir()] == ["20130109T201530123456Z-req-1.jsonl"]  # no temp file left


def test_a_later_batch_is_a_new_object_and_never_rewrites_an_earlier_one(root):
    (first,) = LOG.write_batch(root, DATASET, [_line(1, 0.2, "2013-01-09T20:00:00Z", request_id="a")], "a", WHEN)
    before = UPath(first).read_bytes()
    later = WHEN + dt.timedelta(hours=1)
    LOG.write_batch(root, DATASET, [_line(1, 0.9, "2013-01-09T21:00:00Z", request_id="b")], "b", later)
    LOG.write_batch(root, DATASET, [_line(2, 0.5, "2013-01-09T21:00:00Z", request_id="c")], "c", later)
    assert UPath(first).read_bytes() == before
    assert len(list(LOG.day_folder(root, DATASET, "2013-01-10").iterdir())) == 3
    assert [line["p"] for line in LOG.read_day(root, DATASET, "2013-01-10")] == [0.2, 0.9, 0.5]  # in time order


def test_lines_are_strict_json_with_nan_as_null_and_dates_as_text(root):
    line = _line(1, 0.2, "t", temp=float("nan"))
    line["requested"] = dt.date(2013, 1, 9)
    line["score_extra"] = float("inf")
    (path,) = LOG.write_batch(root, DATASET, [line], "r", WHEN)
    raw = UPath(path).read_text()
    assert "NaN" not in raw and "Infinity" not in raw
    (back,) = [json.loads(t) for t in raw.splitlines()]
    assert back["features"]["temp"] is None and back["score_extra"] is None and back["requested"] == "2013-01-09"


def test_as_frame_keeps_each_events_latest_answer(root, spec):
    LOG.write_batch(root, DATASET, [_line(1, 0.2, "2013-01-09T20:00:00Z", request_id="a"),
                                    _line(2, 0.1, "2013-01-09T20:00:00Z", request_id="a", shadow=0.3)], "a", WHEN)
    LOG.write_batch(root, DATASET, [_line(1, 0.9, "2013-01-09T21:00:00Z", request_id="b")], "b",
                    WHEN + dt.timedelta(hours=1))
    frame = LOG.as_frame(LOG.read_day(root, DATASET, "2013-01-10"), spec.features.key, _key_types(spec), "p_late")
    assert frame.height == 2
    assert frame.schema["date"] == pl.Date and frame.schema["flight"] == pl.Int64
    assert frame.filter(pl.col("flight") == 1)["p_late"].item() == 0.9  # what a user last saw
    two = frame.filter(pl.col("flight") == 2).row(0, named=True)
    assert two["shadow_p"] == 0.3 and two["shadow_version"] == "flight_delay_mlp 1.0.0"
    assert frame.filter(pl.col("flight") == 1)["shadow_p"].item() is None
    assert frame["date"].unique().to_list() == [dt.date(2013, 1, 10)]
    empty = LOG.as_frame([], spec.features.key, _key_types(spec), "p_late")
    assert empty.is_empty() and empty.schema["date"] == pl.Date and "p_late" in empty.columns


def test_a_later_shadow_object_is_merged_into_its_requests_lines(root, spec):
    answers = [_line(1, 0.2, "t1"), _line(2, 0.4, "t1")]
    LOG.write_batch(root, DATASET, answers, "req-1", WHEN)
    shadowed = [{**line, "shadow": {"model_version": "flight_delay_mlp 1.0.0", "p": 0.5}} for line in answers]
    (path,) = LOG.write_batch(root, DATASET, shadowed, "req-1", WHEN, part="shadow")
    assert path.endswith("-req-1-shadow.jsonl")  # its own object: the answers are never rewritten
    raw = LOG.read_day(root, DATASET, "2013-01-10", merge=False)
    assert len(raw) == 4
    merged = LOG.read_day(root, DATASET, "2013-01-10")
    assert [(m["key"]["flight"], m["p"], m["shadow"]["p"]) for m in merged] == [(1, 0.2, 0.5), (2, 0.4, 0.5)]
    assert LOG.merge_lines(merged) == merged  # idempotent
    frame = LOG.as_frame(raw, spec.features.key, _key_types(spec), "p_late")
    assert frame.height == 2 and frame["shadow_p"].to_list() == [0.5, 0.5]
    assert LOG.logged_features(raw).height == 2  # one feature row per event, not per object
    with pytest.raises(ValueError, match="invalid part"):
        LOG.write_batch(root, DATASET, answers, "req-1", WHEN, part="../x")


def test_logged_features_are_the_request_rows(root):
    LOG.write_batch(root, DATASET, [_line(1, 0.2, "t"), {**_line(2, 0.3, "t"), "features": None}], "r", WHEN)
    features = LOG.logged_features(LOG.read_day(root, DATASET, "2013-01-10"))
    assert features.height == 1 and features["temp"].to_list() == [30.5] and features["date"].dtype == pl.String
    assert LOG.logged_features([]).is_empty()


def test_the_log_works_on_an_object_store():
    root = UPath("memory://prediction-log-test/home")
    try:
        LOG.write_batch(root, DATASET, [_line(1, 0.2, "t"), _line(2, 0.4, "t")], "r", WHEN)
        assert [line["p"] for line in LOG.read_day(root, DATASET, "2013-01-10")] == [0.2, 0.4]
    finally:
        root.fs.rm(root.path, recursive=True)
