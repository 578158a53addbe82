import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from ml_assets.core import bundle as B
from ml_assets.core.features import FEATURES, LABEL, weather_at_hour
from ml_assets.serving.app import FlightRecord, create_app, record_features
from ml_assets_tests.processes import free_port

DAY = dt.date(2013, 1, 10)
VERSION = "1.0.0"
REPO = Path(__file__).resolve().parents[2]
FIXED_NOW = dt.datetime(2026, 3, 1, 23, 59, 30, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory, january_features):
    """A bundle around a real tiny xgboost exported to ONNX."""
    from ml_assets.core.onnx_export import export_onnx
    from ml_assets.core.training.window import split_window
    from ml_assets.core.training.xgb import train_xgboost

    train, valid = split_window(january_features, DAY)
    model = train_xgboost(train, valid, params={"n_estimators": 4, "max_depth": 3}, seed=0, nthread=1)
    metrics = {"overall": {"roc_auc": 0.7, "rows": 100}, "slices": [], "latency": {"batch_ms": 1.0},
               "size_bytes": 10}
    root = tmp_path_factory.mktemp("home")
    return B.write_bundle(root, VERSION, export_onnx(model), model.spec, metrics, {"mlflow_run_id": "run-1"})


@pytest.fixture(scope="module")
def day_records(tables):
    """Real raw records for DAY (flight + origin weather at the scheduled hour + plane), as a client sends them."""
    flights = tables["flights"].filter((pl.col("month") == 1) & (pl.col("day") == 10)).head(80)
    weather = weather_at_hour(tables["weather"].lazy()).collect().with_columns(_weather=pl.lit(True))
    planes = tables["planes"].select("tailnum", pl.col("year").alias("plane_year"), "seats", "engines",
                                     _plane=pl.lit(True))
    rows = (flights.with_columns(hour=pl.col("sched_dep_time") // 100)
            .join(weather, on=["origin", "year", "month", "day", "hour"], how="left", maintain_order="left")
            .join(planes, on="tailnum", how="left", maintain_order="left"))
    records = []
    for r in rows.iter_rows(named=True):
        rec = {k: r[k] for k in ("year", "month", "day", "sched_dep_time", "sched_arr_time", "carrier", "flight",
                                 "tailnum", "origin", "dest", "distance")}
        if r["_weather"]:
            rec["weather"] = {k: r[k] for k in ("temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust",
                                                 "precip", "pressure", "visib")}
        if r["_plane"]:
            rec["plane"] = {"year_of_manufacture": r["plane_year"], "seats": r["seats"], "engines": r["engines"]}
        records.append(rec)
    return flights, records


@pytest.fixture
def client(bundle_dir, tmp_path):
    app = create_app(bundle_dir, tmp_path / "log", clock=lambda: FIXED_NOW)
    with TestClient(app) as c:
        yield c


def _log_lines(tmp_path, day="2026-03-01"):
    path = tmp_path / "log" / f"predictions-{day}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _expected(bundle_dir, tables, flights):
    """p_late from the batch pipeline: build_features on the full tables, then score_onnx."""
    from ml_assets.core.features import build_features
    from ml_assets.core.onnx_export import score_onnx

    features = build_features(flights, tables["weather"], tables["planes"])
    return features, score_onnx(B.load_bundle(bundle_dir).model_bytes, features)


def test_health_and_model(client):
    assert client.get("/health").json() == {"status": "ok", "model_version": VERSION}
    info = client.get("/model").json()
    assert info["version"] == VERSION and info["model_line"] == "flight_delay_xgboost"
    assert info["metrics"]["overall"]["roc_auc"] == 0.7 and info["origins"] == ["EWR", "JFK", "LGA"]
    assert [i["name"] for i in info["inputs"]] == FEATURES


def test_request_features_equal_the_batch_pipeline(day_records, tables):
    flights, records = day_records
    served = record_features([FlightRecord.model_validate(r) for r in records])
    from ml_assets.core.features import OUTCOME_COLUMNS, build_features

    batch = build_features(flights.drop(OUTCOME_COLUMNS), tables["weather"], tables["planes"])
    assert served.drop(LABEL).equals(batch.drop(LABEL))


def test_single_record(client, day_records, bundle_dir, tables, tmp_path):
    flights, records = day_records
    response = client.post("/predict", json=records[0])
    assert response.status_code == 200, response.text
    body = response.json()
    _, expected = _expected(bundle_dir, tables, flights.head(1))
    assert body["model_version"] == VERSION and len(body["predictions"]) == 1
    assert body["predictions"][0]["p_late"] == expected[0]
    line = _log_lines(tmp_path)[0]
    assert line["ts"] == "2026-03-01T23:59:30Z" and line["model_version"] == VERSION
    assert line["p_late"] == expected[0] and line["request_id"] == body["request_id"]
    assert line["request"]["carrier"] == records[0]["carrier"] and set(FEATURES) <= set(line["features"])
    assert line["features"]["date"] == "2013-01-10"


def test_batch_equals_score_onnx_and_is_logged(client, day_records, bundle_dir, tables, tmp_path):
    flights, records = day_records
    response = client.post("/predict", json=records)
    assert response.status_code == 200, response.text
    p = np.array([x["p_late"] for x in response.json()["predictions"]])
    features, expected = _expected(bundle_dir, tables, flights)
    np.testing.assert_array_equal(p, expected)
    threshold = B.load_bundle(bundle_dir).threshold
    assert [x["late"] for x in response.json()["predictions"]] == [bool(v >= threshold) for v in expected]
    lines = _log_lines(tmp_path)
    assert len(lines) == len(records) and [x["p_late"] for x in lines] == p.tolist()
    assert lines[5]["features"]["temp"] == features["temp"][5]


def test_records_in_a_batch_do_not_share_weather_or_planes(client, day_records):
    _, records = day_records
    base = next(r for r in records if "weather" in r and "plane" in r)
    colder = {**base, "weather": {**base["weather"], "temp": -10.0, "visib": 0.5}}
    no_weather = {k: v for k, v in base.items() if k != "weather"}
    other_plane = {**base, "plane": {"year_of_manufacture": 1970, "seats": 20, "engines": 1}}
    batch = [base, colder, no_weather, other_plane, base]
    together = [x["p_late"] for x in client.post("/predict", json=batch).json()["predictions"]]
    alone = [client.post("/predict", json=r).json()["predictions"][0]["p_late"] for r in batch]
    assert together == alone
    features = record_features([FlightRecord.model_validate(r) for r in batch])
    assert features["temp"].to_list()[:3] == [base["weather"]["temp"], -10.0, None]
    assert features["seats"].to_list()[3] == 20.0 and features["plane_age"].to_list()[3] == 2013 - 1970


@pytest.mark.parametrize("change, where", [
    ({"year": None}, "year"),
    ({"month": 13}, "month"),
    ({"month": 2, "day": 30}, "calendar date"),
    ({"sched_dep_time": 1275}, "minutes above 59"),
    ({"sched_arr_time": "noon"}, "sched_arr_time"),
    ({"carrier": "united"}, "carrier"),
    ({"origin": "BOS"}, "unknown origin 'BOS'"),
    ({"dest": "X"}, "dest"),
    ({"distance": -5}, "distance"),
    ({"arr_delay": 30}, "arr_delay"),  # an outcome is not an input
    ({"weather": {"temp": 500}}, "temp"),
    ({"weather": {"snow": 1}}, "snow"),
    ({"tailnum": None}, "plane data needs the tailnum"),
])
def test_bad_record_is_422_with_the_reason(client, day_records, change, where, tmp_path):
    _, records = day_records
    record = {**next(r for r in records if "plane" in r), **change}
    if change.get("year", 0) is None:
        del record["year"]
    for body in (record, [records[1], record]):
        response = client.post("/predict", json=body)
        assert response.status_code == 422, response.text
        assert where in json.dumps(response.json()["detail"])
    detail = client.post("/predict", json=[records[1], record]).json()["detail"]
    assert all(d["loc"][:2] == ["body", 1] for d in detail), detail
    assert _log_lines(tmp_path) == []  # nothing scored, nothing logged


def test_bad_bodies_are_422(bundle_dir, tmp_path, day_records):
    _, records = day_records
    app = create_app(bundle_dir, tmp_path / "log", max_batch=3)
    with TestClient(app) as c:
        assert c.post("/predict", json=[]).status_code == 422
        too_many = c.post("/predict", json=records[:4])
        assert too_many.status_code == 422 and "at most 3" in too_many.text
        assert c.post("/predict", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
        assert c.post("/predict", json="a string").status_code == 422
        assert c.post("/predict", json=records[:3]).status_code == 200


def test_log_file_per_utc_day(bundle_dir, tmp_path, day_records):
    _, records = day_records
    times = iter([dt.datetime(2026, 3, 1, 23, 59, tzinfo=dt.timezone.utc),
                  dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.timezone(dt.timedelta(hours=5)))])  # = 03-01 20:00 UTC
    app = create_app(bundle_dir, tmp_path / "log", clock=lambda: next(times))
    with TestClient(app) as c:
        c.post("/predict", json=records[0])
        c.post("/predict", json=records[:2])
    assert sorted(os.listdir(tmp_path / "log")) == ["predictions-2026-03-01.jsonl"]
    assert len(_log_lines(tmp_path)) == 3


def test_tampered_bundle_does_not_serve(bundle_dir, tmp_path):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    (copy / "features.json").write_text((copy / "features.json").read_text().replace("EWR", "BOS"))
    with pytest.raises(B.BundleIntegrityError, match="features.json"):
        create_app(copy, tmp_path / "log")


def test_real_uvicorn_server_on_loopback(bundle_dir, tmp_path, day_records):
    _, records = day_records
    port = free_port()
    log_dir = tmp_path / "served-log"
    output = open(tmp_path / "server.out", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ml_assets.serving.app", "--bundle", str(bundle_dir), "--log-dir", str(log_dir),
         "--port", str(port)],
        cwd=REPO, stdout=output, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "server.out").read_text()
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not come up: " + (tmp_path / "server.out").read_text()
            time.sleep(0.1)
        response = httpx.post(f"{url}/predict", json=records[:3], timeout=10)
        assert response.status_code == 200, response.text
        assert response.json()["model_version"] == VERSION and len(response.json()["predictions"]) == 3
        assert httpx.post(f"{url}/predict", json={"origin": "JFK"}, timeout=10).status_code == 422
        logged = [line for f in log_dir.glob("predictions-*.jsonl") for line in f.read_text().splitlines()]
        assert len(logged) == 3
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        output.close()
    assert f"Uvicorn running on http://127.0.0.1:{port}" in (tmp_path / "server.out").read_text()


def test_all_problems_reported_and_schema_documented(client, day_records):
    _, records = day_records
    bad = {**records[0], "month": 2, "day": 30, "sched_dep_time": 960, "carrier": "x"}
    detail = client.post("/predict", json=bad).json()["detail"]
    text = json.dumps(detail)
    assert "sched_dep_time" in text and "carrier" in text
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "anyOf" in body and {"FlightRecord", "Weather", "Plane"} <= set(schema["components"]["schemas"])
