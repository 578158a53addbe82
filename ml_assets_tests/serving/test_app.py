"""The serving app in process (TestClient) over a small home: hand-built bundles, champion states, pointers."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import subprocess
import sys
import threading
import time

import pytest
from fastapi.testclient import TestClient

from ml_assets.core import bundle as B
from ml_assets.core import prediction_log as LOG
from ml_assets.core.storage import make_path
from ml_assets.serving import app as APP
from ml_assets.serving.app import create_app
from ml_assets_tests.serving.helpers import REPO, pointer, promote, tiny_bundle, write_record

NOW = dt.datetime(2026, 3, 1, 23, 59, 30, 123456, tzinfo=dt.timezone.utc)
DAY = "2013-03-01"  # the example's day: nothing stored for it (standalone)


@pytest.fixture
def home(tmp_path, spec):
    """Bundles 1.0.0 (champion), 1.1.0 (the newest candidate) and 1.2.0 (tampered with), one champion state."""
    root = make_path(str(tmp_path / "home"))
    tiny_bundle(root, spec, "1.0.0", bias=-1.5)
    tiny_bundle(root, spec, "1.1.0", bias=0.5)
    broken = tiny_bundle(root, spec, "1.2.0", bias=1.5)
    (broken / B.METRICS_FILE).write_bytes(b'{"overall": {"roc_auc": 0.99}}\n')  # no longer matches MANIFEST
    promote(root, spec, "2013-01-05", None, pointer(spec, "1.0.0"))
    write_record(root, spec, "deployment_bundle", "2013-01-04", None, refused="no qualified candidate")
    write_record(root, spec, "deployment_bundle", "2013-01-05", pointer(spec, "1.0.0"))
    write_record(root, spec, "deployment_bundle", "2013-01-06", pointer(spec, "1.1.0", day="2013-01-06"))
    return root


@pytest.fixture
def client(home, spec):
    app = create_app(str(home), spec, poll_seconds=0, clock=lambda: NOW)
    with TestClient(app) as c:
        yield c


def _version(spec, v: str) -> str:
    return f"{spec.model_line('tiny')}/{v}"


def _example(spec, **changes) -> dict:
    return {**json.loads(json.dumps(spec.serving.example)), **changes}


def _lines(home, spec, day=DAY, merge=True) -> list[dict]:
    return LOG.read_day(home, spec.name, day, merge=merge)


def test_predict_names_the_version_and_logs_before_answering(client, home, spec):
    r = client.post("/predict", json=_example(spec))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == _version(spec, "1.0.0")
    (prediction,) = body["predictions"]
    assert 0 < prediction[spec.prediction] < 1 and isinstance(prediction[spec.label.name], bool)
    # the response's own line is written before the response: no waiting needed (the shadow's may come any time)
    (line,) = [x for x in _lines(home, spec, merge=False) if not x.get("shadow")]
    assert line["request_id"] == body["request_id"] and line["model_version"] == body["model_version"]
    assert line["p"] == prediction[spec.prediction] and line["ts"] == "2026-03-01T23:59:30.123456Z"
    assert line["day"] == DAY and line["key"]["date"] == DAY
    assert set(line["key"]) == set(spec.features.key) and set(line["features"]) == set(spec.feature_columns)
    assert line["features"]["temp"] == spec.serving.example["weather"]["temp"]
    assert line["features"]["pressure"] is None  # unknown -> null, never NaN
    assert "shadow" not in line


def test_the_shadow_score_is_logged_as_its_own_object_and_merged(client, home, spec):
    r = client.post("/predict", json=[_example(spec), _example(spec, flight=7, day=2)])
    assert r.status_code == 200
    assert client.app.state.shadow.flush(10)
    folder = LOG.day_folder(home, spec.name, DAY)
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 2 and sum(n.endswith("-shadow.jsonl") for n in names) == 1
    raw = _lines(home, spec, merge=False)
    assert len(raw) == 2 and {bool(x.get("shadow")) for x in raw} == {True, False}
    (line,) = _lines(home, spec)
    assert line["shadow"]["model_version"] == _version(spec, "1.1.0") and 0 < line["shadow"]["p"] < 1
    assert line["p"] == r.json()["predictions"][0][spec.prediction]
    assert _lines(home, spec, day="2013-03-02")[0]["shadow"]["model_version"] == _version(spec, "1.1.0")
    import polars as pl

    frame = LOG.as_frame(_lines(home, spec), spec.features.key,
                         {"date": pl.Date, "carrier": pl.String, "flight": pl.Int64, "origin": pl.String,
                          "sched_dep_time": pl.Int64}, spec.prediction)
    assert frame.height == 1 and frame["shadow_version"][0] == _version(spec, "1.1.0")
    assert frame["date"][0] == dt.date(2013, 3, 1) and frame["model_version"][0] == _version(spec, "1.0.0")
    assert LOG.logged_features(raw).height == 1  # the shadow copy does not count twice


def test_model_and_health_say_what_answers(client, spec):
    m = client.get("/model").json()
    assert m["model_version"] == _version(spec, "1.0.0") and m["state_day"] == "2013-01-05"
    assert m["champion_since"] == "2013-01-05" and m["serving_since"] == "2026-03-01T23:59:30.123456Z"
    assert m["bundle"].endswith("bundles/flight_delay_tiny/1.0.0") and m["following"] is True
    assert m["challenger"]["model_version"] == _version(spec, "1.1.0")
    h = client.get("/health")
    assert h.status_code == 200 and h.json()["status"] == "ok" and h.json()["warnings"] == []


def test_promotion_refused_bundle_and_rollback_swap_without_restart(client, home, spec):
    manager = client.app.state.manager
    state = promote(home, spec, "2013-01-06", json.loads((home / "assets/flights/champion/2013-01-05.json")
                                                         .read_bytes())["value"], pointer(spec, "1.1.0"))
    assert manager.refresh()
    assert client.post("/predict", json=_example(spec)).json()["model_version"] == _version(spec, "1.1.0")
    assert client.get("/model").json()["state_day"] == "2013-01-06"
    assert manager.challenger.version == "1.0.0"  # the newest bundle that is not the champion

    state = promote(home, spec, "2013-01-07", state, pointer(spec, "1.2.0"))  # tampered: refused
    assert not manager.refresh()
    assert client.post("/predict", json=_example(spec)).json()["model_version"] == _version(spec, "1.1.0")
    health = client.get("/health").json()
    assert health["status"] == "degraded" and "1.2.0" in health["warnings"][0]
    assert "MANIFEST" in health["warnings"][0]

    promote(home, spec, "2013-01-08", state, pointer(spec, "1.0.0"), action="rollback")
    assert manager.refresh()
    assert client.post("/predict", json=_example(spec)).json()["model_version"] == _version(spec, "1.0.0")
    assert client.get("/health").json()["status"] == "ok"


def test_in_flight_requests_finish_on_the_model_they_started_with(client, home, spec, monkeypatch):
    entered, release = threading.Event(), threading.Event()
    real = APP.online_features

    def slow(*args, **kw):
        entered.set()
        assert release.wait(10)
        return real(*args, **kw)

    monkeypatch.setattr(APP, "online_features", slow)
    result = {}
    worker = threading.Thread(target=lambda: result.update(r=client.post("/predict", json=_example(spec))))
    worker.start()
    assert entered.wait(10)
    promote(home, spec, "2013-01-06", None, pointer(spec, "1.1.0"))
    assert client.app.state.manager.refresh()
    release.set()
    worker.join(10)
    assert result["r"].json()["model_version"] == _version(spec, "1.0.0")
    (line,) = _lines(home, spec, merge=False)[:1]
    assert line["model_version"] == _version(spec, "1.0.0")


def test_the_poll_thread_follows_the_newest_state(home, spec):
    app = create_app(str(home), spec, poll_seconds=0.1, challenger=None)
    with TestClient(app) as c:
        promote(home, spec, "2013-01-09", None, pointer(spec, "1.1.0"))
        deadline = time.monotonic() + 10
        while c.get("/model").json()["version"] != "1.1.0":
            assert time.monotonic() < deadline, "no swap within 10 s"
            time.sleep(0.05)


def test_a_pinned_bundle_is_not_followed_and_must_verify(home, spec, tmp_path):
    pinned = str(home / "bundles/flight_delay_tiny/1.1.0")
    app = create_app(str(home), spec, bundle=pinned, challenger=None)
    with TestClient(app) as c:
        promote(home, spec, "2013-01-09", None, pointer(spec, "1.0.0"))
        app.state.manager.refresh()
        assert c.post("/predict", json=_example(spec)).json()["model_version"] == _version(spec, "1.1.0")
        assert c.get("/model").json()["following"] is False
    with pytest.raises(B.BundleIntegrityError, match="MANIFEST"):
        create_app(str(home), spec, bundle=str(home / "bundles/flight_delay_tiny/1.2.0"))
    link = tmp_path / "link"
    os.symlink(pinned, link)
    with pytest.raises(B.BundleIntegrityError, match="symlink"):
        create_app(str(home), spec, bundle=str(link))


def test_no_champion_yet_is_503_and_health_says_so(tmp_path, spec):
    app = create_app(str(tmp_path / "empty"), spec, challenger=None)
    with TestClient(app) as c:
        assert c.post("/predict", json=_example(spec)).status_code == 503
        h = c.get("/health")
        assert h.status_code == 503 and h.json()["status"] == "unavailable"


def test_a_log_that_cannot_be_written_fails_the_request(client, spec, monkeypatch):
    def broken(*args, **kw):
        raise OSError("disk full")

    monkeypatch.setattr(LOG, "write_batch", broken)
    r = client.post("/predict", json=_example(spec))
    assert r.status_code == 503 and spec.prediction not in r.text


def test_a_failing_or_slow_shadow_never_touches_the_response(client, spec):
    manager, shadow = client.app.state.manager, client.app.state.shadow
    good = manager.challenger

    class Slow:
        def run(self, *args):
            time.sleep(1.0)
            raise RuntimeError("challenger exploded")

    manager._challenger = dataclasses.replace(good, session=Slow())
    started = time.perf_counter()
    r = client.post("/predict", json=_example(spec))
    elapsed = time.perf_counter() - started
    assert r.status_code == 200 and elapsed < 0.9, elapsed
    assert shadow.flush(10)
    assert shadow.stats()["failed"] == 1 and "exploded" in shadow.stats()["last_error"]


# ---------------------------------------------------------------------------------------------- hardening


def test_bodies_over_the_limit_are_413_declared_or_streamed(home, spec):
    app = create_app(str(home), spec, max_body_bytes=2000, challenger=None)
    with TestClient(app) as c:
        big = json.dumps([_example(spec)] * 20).encode()
        assert len(big) > 2000
        r = c.post("/predict", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413
        chunks = (big[i:i + 500] for i in range(0, len(big), 500))  # no Content-Length: chunked
        r = c.post("/predict", content=chunks, headers={"content-type": "application/json"})
        assert r.status_code == 413
        r = c.post("/predict", content=b"{}", headers={"content-type": "application/json",
                                                        "content-length": "x"})
        assert r.status_code == 400
        assert c.post("/predict", json=_example(spec)).status_code == 200


@pytest.mark.parametrize("content,ctype,status", [
    (b'{"year": NaN}', "application/json", 422), (b"", "application/json", 422),
    (b"{", "application/json", 422), (b"year=2013", "application/x-www-form-urlencoded", 415),
    (b"{}", None, 415), (b"[]", "application/json", 422), (b"null", "application/json", 422),
])
def test_client_mistakes_are_4xx(client, content, ctype, status):
    headers = {"content-type": ctype} if ctype else {}
    r = client.post("/predict", content=content, headers=headers)
    assert r.status_code == status, r.text


def test_422_bodies_name_the_field_and_never_echo_the_input(client, spec):
    huge = "Q" * 900_000
    r = client.post("/predict", content=json.dumps({**_example(spec), "dest": huge, "tailnum": True,
                                                    "weather": {"temp": 1e400}}).replace("1e400", "Infinity"),
                    headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert len(r.content) < 3000
    assert r.json()["detail"][0]["loc"] == ["body", "weather", "temp"]
    many = [{"x": i} for i in range(1000)]
    r = client.post("/predict", json=many)
    assert r.status_code == 422 and len(r.json()["detail"]) <= 20 and len(r.content) < 20_000


def test_extreme_but_valid_values_give_finite_scores(client, spec):
    # every numeric field at the bound its schema declares (the unbounded ones at +-UNBOUNDED_LIMIT)
    schema = client.app.state.schema
    for pick in ("minimum", "maximum"):
        body = _example(spec)
        for field, model in [(None, schema.record), *schema.nested.items()]:
            target = body if field is None else body.setdefault(field, {})
            for name, prop in model.model_json_schema()["properties"].items():
                prop = next((p for p in prop.get("anyOf", [prop]) if p.get("type") in ("integer", "number")), None)
                if prop is not None and name not in spec.replay.date_parts:
                    target[name] = prop[pick]
        if pick == "minimum":
            body["plane"]["year"] = body["year"]  # plane_age >= 0
        r = client.post("/predict", json=body)
        assert r.status_code == 200, r.text
        assert 0 <= r.json()["predictions"][0][spec.prediction] <= 1


def test_features_outside_the_spec_ranges_are_422(client, spec):
    # a plane built after the flight's year gives a negative plane age (features.ranges: [0, 120])
    r = client.post("/predict", json=_example(spec, plane={"year": 2100}))
    assert r.status_code == 422 and "plane_age" in r.text


# ---------------------------------------------------------------------------------------------- docs and schema


def test_openapi_has_the_typed_request_and_its_example(client, spec):
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    record = schemas["ScheduleRecord"]
    assert record["additionalProperties"] is False and record["examples"] == [spec.serving.example]
    assert record["properties"]["origin"]["enum"] == spec.events_source.columns["origin"].isin
    assert "WeatherContext" in schemas and "PlaneContext" in schemas
    body = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["example"] == spec.serving.example and body["schema"]["$ref"].endswith("PredictBody")
    assert schemas["PredictBody"]["anyOf"][1]["maxItems"] == 1000


def _referenced(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html) + re.findall(r"url:\s*'([^']+)'", html)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_load_offline_every_asset_from_this_server(client, page):
    r = client.get(page)
    assert r.status_code == 200
    assert "default-src 'self'" in r.headers["content-security-policy"]  # the browser loads nothing from elsewhere
    assert not re.search(r"https?://", r.text), "the page references an external URL"
    assets = _referenced(r.text)
    assert len(assets) >= 2
    for asset in assets:
        assert asset.startswith("/"), asset
        got = client.get(asset)
        assert got.status_code == 200 and len(got.content) > 100, asset


def test_the_server_imports_no_torch_xgboost_or_dagster(home):
    code = ("import sys; from ml_assets.core.spec import load_spec; from ml_assets.serving.app import create_app; "
            f"create_app({str(home)!r}, load_spec('nycflights13'), poll_seconds=0); "
            "print(sorted(m for m in ('torch', 'xgboost', 'dagster') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_health_does_no_model_work(client, monkeypatch):
    def boom(*args, **kw):
        raise AssertionError("model work on /health")

    monkeypatch.setattr(APP, "online_features", boom)
    monkeypatch.setattr(B.Bundle, "score", boom)
    started = time.perf_counter()
    for _ in range(20):
        assert client.get("/health").status_code == 200
    assert (time.perf_counter() - started) / 20 < 0.1
