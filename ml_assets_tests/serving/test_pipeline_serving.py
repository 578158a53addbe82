"""Serving over the real materialized pipeline: online features and scores equal the batch path's, the log joins,
and a real uvicorn process follows a promotion and a rollback without a restart or a failed request.

All pipeline tests live in this one module (``--dist loadfile``: one worker builds the session pipeline)."""
from __future__ import annotations

import datetime as dt
import json
import threading
import time

import httpx
import polars as pl
import pytest
from fastapi.testclient import TestClient

from ml_assets.core import bundle as B
from ml_assets.core import live
from ml_assets.core import prediction_log as LOG
from ml_assets.core.schemas import feature_dtypes
from ml_assets.serving.app import create_app
from ml_assets.serving.context import ContextCache, online_features
from ml_assets.serving.models import newest_champion
from ml_assets.serving.request import parse_request, request_schema
from ml_assets_tests.serving.helpers import ServerProcess, promote

pytestmark = pytest.mark.cost(5)  # seconds alone (see conftest)


def _stored(root, spec, asset: str, day: dt.date) -> pl.DataFrame:
    return pl.read_parquet((root / "assets" / spec.name / asset / f"{day.isoformat()}.parquet").read_bytes())


def _requests(spec, raw: pl.DataFrame) -> list[dict]:
    """The day's stored schedule rows as a client sends them (the request fields only)."""
    fields = request_schema(spec).fields
    return [{k: r[k] for k in fields} for r in raw.to_dicts()]


@pytest.mark.parametrize("which", ["first", "last"])
def test_online_features_equal_the_stored_features(pipeline, spec, which):
    root, day = pipeline.root, getattr(pipeline, which)
    raw, stored = _stored(root, spec, "raw_schedule", day), _stored(root, spec, "features", day)
    rows = parse_request(request_schema(spec), _requests(spec, raw))
    online = online_features(spec, rows.events, rows.nested, ContextCache(root, spec))
    key = spec.features.key
    expected = online.select(key).join(stored, on=key, how="left", maintain_order="left", nulls_equal=True)
    assert online.height == stored.height == raw.height
    assert online.columns == stored.columns
    assert online.equals(expected), "an online feature row differs from the stored one"
    inputs = online.select(spec.model_inputs)
    assert inputs.equals(expected.select(spec.model_inputs))
    for column in ("temp", "seats", "block_minutes", "wx_day_precip"):  # the stored context and references joined
        assert online[column].null_count() < online.height, column


def test_online_scores_equal_the_batch_predictions_and_the_log_joins(pipeline_copy, spec):
    root, day = pipeline_copy.root, pipeline_copy.last
    batch = _stored(root, spec, "batch_predictions", day)
    (version,) = batch["model_version"].unique().to_list()
    line, number = version.split("/")
    app = create_app(pipeline_copy.home, spec, bundle=str(B.bundle_path(root, line, number)), challenger=None)
    raw = _stored(root, spec, "raw_schedule", day)
    sample = raw.sample(40, seed=3)
    key = spec.features.key
    with TestClient(app) as client:
        r = client.post("/predict", json=_requests(spec, sample))
        assert r.status_code == 200, r.text
        single = client.post("/predict", json=_requests(spec, sample.head(1))[0]).json()
    assert r.json()["model_version"] == version == single["model_version"]
    online = [p[spec.prediction] for p in r.json()["predictions"]]
    dtypes = feature_dtypes(spec)
    expected = (sample.with_columns(date=pl.date(*spec.replay.date_parts)).select(key)
                .with_columns(pl.col(c).cast(dtypes[c]) for c in key)
                .join(batch, on=key, how="left", maintain_order="left"))
    assert max(abs(a - b) for a, b in zip(online, expected[spec.prediction].to_list())) <= 1e-6
    assert abs(single["predictions"][0][spec.prediction] - expected[spec.prediction][0]) <= 1e-6

    lines = LOG.read_day(root, spec.name, day.isoformat())
    assert len(lines) == 41 and {line["model_version"] for line in lines} == {version}
    frame = LOG.as_frame(lines, key, {c: dtypes[c] for c in key}, spec.prediction)
    assert frame.height == 40 and set(frame["model_version"]) == {version}
    joined = frame.join(batch.select(*key, pl.col(spec.prediction).alias("batch")), on=key, how="inner")
    assert joined.height == 40
    assert (joined[spec.prediction] - joined["batch"]).abs().max() <= 1e-6
    labelled = _stored(root, spec, "labelled_features", day)
    assert live.join_labels(frame, labelled, key, spec.label.name, spec.prediction).height > 20
    skew = live.skew(LOG.logged_features(lines), labelled, key, spec.model_inputs)
    assert skew["rows"] == len(lines) and skew["differing_rows"] == 0, skew  # the serving_skew check passes


def _bundles(root) -> list[tuple[str, str]]:
    return [(line.name, v) for line in sorted((root / B.BUNDLES_DIR).iterdir()) for v in B.list_bundles(root, line.name)]


class Traffic(threading.Thread):
    """A client that keeps sending requests (one record, then a small batch) and records every answer."""

    def __init__(self, url: str, bodies: list):
        super().__init__(daemon=True)
        self.url, self.bodies, self.stop = url, bodies, threading.Event()
        self.answers: list[tuple[float, int, str | None, int]] = []  # (when, status, version, rows)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            n = 0
            while not self.stop.is_set():
                body = self.bodies[n % len(self.bodies)]
                n += 1
                rows = 1 if isinstance(body, dict) else len(body)
                try:
                    r = client.post("/predict", json=body)
                    version = r.json().get("model_version") if r.status_code == 200 else r.text[:200]
                    self.answers.append((time.monotonic(), r.status_code, version, rows))
                except httpx.HTTPError as exc:
                    self.answers.append((time.monotonic(), 0, repr(exc), rows))

    def wait_for(self, version: str, timeout: float) -> float:
        """Seconds until the first answer by ``version`` after now."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if any(t >= start and v == version for t, _, v, _ in self.answers[-20:]):
                return time.monotonic() - start
            time.sleep(0.05)
        raise AssertionError(f"no answer by {version} within {timeout} s (last: {self.answers[-3:]})")


def test_a_real_server_follows_a_promotion_and_a_rollback(pipeline_copy, spec, tmp_path):
    root, day = pipeline_copy.root, pipeline_copy.last
    state_day, state = newest_champion(root, spec.name)
    champion = state["champion"]
    original = f"{champion['model_line']}/{champion['version']}"
    other_line, other_version = next(b for b in _bundles(root)
                                     if b != (champion["model_line"], champion["version"]))
    other = f"{other_line}/{other_version}"
    raw = _stored(root, spec, "raw_schedule", day)
    requests = _requests(spec, raw.head(12))
    bodies = [requests[0], requests[1:6], requests[6], requests[7:12]]
    with ServerProcess(pipeline_copy.home, tmp_path / "server.log", "--poll-seconds", "0.5") as server:
        model = httpx.get(server.url + "/model", timeout=10).json()
        assert model["model_version"] == original and model["state_day"] == state_day
        traffic = Traffic(server.url, bodies)
        traffic.start()
        try:
            traffic.wait_for(original, 30)
            other_bundle = B.load_bundle(B.bundle_path(root, other_line, other_version))
            target = {"model_line": other_line, "version": other_version, "family": other_bundle.family,
                      "bundle": f"{B.BUNDLES_DIR}/{other_line}/{other_version}", "day": state_day,
                      "trained_through": other_bundle.lineage.get("trained_through")}
            promoted_day = (dt.date.fromisoformat(state_day) + dt.timedelta(days=1)).isoformat()
            promoted = promote(root, spec, promoted_day, state, target)
            switch = traffic.wait_for(other, 10)
            assert httpx.get(server.url + "/model", timeout=10).json()["state_day"] == promoted_day
            rollback_day = (dt.date.fromisoformat(promoted_day) + dt.timedelta(days=1)).isoformat()
            promote(root, spec, rollback_day, promoted, champion, action="rollback")
            back = traffic.wait_for(original, 10)
            time.sleep(0.5)
        finally:
            traffic.stop.set()
            traffic.join(30)
        model = httpx.get(server.url + "/model", timeout=10).json()
        health = httpx.get(server.url + "/health", timeout=10).json()
    statuses = {s for _, s, _, _ in traffic.answers}
    assert statuses == {200}, [a for a in traffic.answers if a[1] != 200][:5]
    versions = [v for _, _, v, _ in traffic.answers]
    changes = [v for i, v in enumerate(versions) if i == 0 or versions[i - 1] != v]
    assert changes == [original, other, original], changes
    assert switch < 5 and back < 5, (switch, back)
    assert model["model_version"] == original and model["state_day"] == rollback_day
    assert health["status"] == "ok" and health["shadow"]["scored"] > 0, health
    lines = LOG.read_day(root, spec.name, day.isoformat())
    assert len(lines) == sum(rows for *_, rows in traffic.answers)  # every answered row was logged
    shadowed = [line for line in lines if line.get("shadow")]
    assert shadowed and all(line["shadow"]["model_version"] != line["model_version"] for line in shadowed)
    assert {line["model_version"] for line in lines} == {original, other}
    assert json.dumps(lines[0])  # plain JSON
