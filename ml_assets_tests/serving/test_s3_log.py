"""The prediction log on S3 (moto's server): one object per batch and day, written once, read back merged."""
from __future__ import annotations

import datetime as dt
import json

from fastapi.testclient import TestClient

from ml_assets.core import prediction_log as LOG
from ml_assets.core.storage import make_path
from ml_assets.serving.app import create_app
from ml_assets_tests.serving.helpers import tiny_bundle

WHEN = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)


def _line(day: str, flight: int, request_id: str, **extra) -> dict:
    return {"day": day, "key": {"date": day, "flight": flight}, "model_version": "line/1.0.0", "p": 0.25,
            "features": {"date": day, "flight": flight, "temp": float("nan")}, "ts": "t", "request_id": request_id,
            **extra}


def test_write_batch_puts_one_object_per_batch_and_day(s3):
    root = make_path(f"s3://{s3.bucket}/home")
    LOG.write_batch(root, "flights", [_line("2013-01-05", 1, "a"), _line("2013-01-05", 2, "a")], "a", WHEN)
    LOG.write_batch(root, "flights", [_line("2013-01-05", 3, "b"), _line("2013-01-06", 4, "b")], "b", WHEN)
    LOG.write_batch(root, "flights", [_line("2013-01-05", 3, "b", shadow={"model_version": "x/1", "p": 0.5})],
                    "b", WHEN, part="shadow")
    keys = sorted(s3.keys("home/predictions/"))
    assert len(keys) == 4, keys
    assert sum(k.startswith("home/predictions/flights/date=2013-01-05/") for k in keys) == 3
    lines = LOG.read_day(root, "flights", "2013-01-05")
    assert [line["key"]["flight"] for line in lines] == [1, 2, 3]
    assert lines[2]["shadow"] == {"model_version": "x/1", "p": 0.5}
    assert lines[0]["features"]["temp"] is None  # NaN is stored as null


def test_the_server_logs_to_s3(s3, tmp_path, spec):
    bundle = tiny_bundle(str(tmp_path / "local"), spec, "1.0.0")
    home = f"s3://{s3.bucket}/served"
    app = create_app(home, spec, bundle=str(bundle), challenger=None, clock=lambda: WHEN)
    example = json.loads(json.dumps(spec.serving.example))
    with TestClient(app) as c:
        for flight in (1, 2):
            r = c.post("/predict", json=[{**example, "flight": flight}, {**example, "flight": flight + 10}])
            assert r.status_code == 200, r.text
    keys = s3.keys("served/predictions/")
    assert len(keys) == 2 and all(k.endswith(".jsonl") for k in keys)
    lines = LOG.read_day(make_path(home), spec.name, "2013-03-01")
    assert sorted(line["key"]["flight"] for line in lines) == [1, 2, 11, 12]
