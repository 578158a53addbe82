"""The MLflow tracking server of the production profile: runs in Postgres, artifacts on S3.

The server is started the documented way (docs/production.md) and written to through the project's own
``MLflowTracking`` resource, configured only with the server's URL.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ml_assets.resources.tracking import MLflowTracking
from ml_assets_tests.production.conftest import (
    PG_HOST,
    PG_PORT,
    PG_USER,
    VENV_BIN,
    free_port,
)


def _tail(path: Path, chars: int = 6000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no output)"


@pytest.fixture
def mlflow_server(postgres_database, s3, tmp_path, monkeypatch) -> Iterator[str]:
    """``mlflow server`` on a free port: backend store in a fresh Postgres database, artifacts on S3."""
    port = free_port()
    # name the driver: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; we ship psycopg2
    backend = f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{postgres_database}"
    env = {**os.environ, **s3.env, "MLFLOW_S3_ENDPOINT_URL": s3.endpoint,
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", s3.endpoint)  # clients write artifacts to S3 themselves
    log = tmp_path / "mlflow-server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(VENV_BIN / "mlflow"), "server", "--backend-store-uri", backend,
             "--default-artifact-root", f"s3://{s3.bucket}/mlflow", "--no-serve-artifacts",
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {proc.returncode}:\n{_tail(log)}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not healthy within 60 s:\n{_tail(log)}")
            time.sleep(0.5)
        yield url
    finally:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue


@pytest.mark.timeout(120)
def test_runs_go_to_postgres_and_artifacts_to_s3(mlflow_server, postgres_database, s3):
    import mlflow
    import psycopg2
    from mlflow.tracking import MlflowClient

    previous_uri = mlflow.get_tracking_uri()
    try:
        tracking = MLflowTracking(tracking_uri=mlflow_server, experiment="ml_assets_production_test",
                                  ui_url=mlflow_server)
        run_id, link = tracking.log_run(
            "xgboost_model 2013-01-02", params={"max_depth": 6, "window_days": 28},
            metrics={"auc": 0.64, "log_loss": 0.48}, tags={"partition": "2013-01-02"},
            artifacts={"model.onnx": b"not really onnx", "features.json": b'{"columns": []}'})
        tracking.log_to_run(run_id, metrics={"holdout_auc": 0.63}, artifacts={"report.md": b"# report"})

        client = MlflowClient(mlflow_server)
        run = client.get_run(run_id)
        assert run.data.metrics == {"auc": 0.64, "log_loss": 0.48, "holdout_auc": 0.63}
        assert run.data.params["max_depth"] == "6"
        assert run.info.artifact_uri.startswith(f"s3://{s3.bucket}/mlflow/")
        assert {a.path for a in client.list_artifacts(run_id, "model")} == {"model/model.onnx",
                                                                            "model/features.json"}
        assert link == f"{mlflow_server}/#/experiments/{run.info.experiment_id}/runs/{run_id}"
    finally:
        mlflow.set_tracking_uri(previous_uri)

    # the bytes are in the bucket, the run is a row in Postgres
    keys = s3.keys("mlflow/")
    assert any(k.endswith(f"{run_id}/artifacts/model/model.onnx") for k in keys), keys
    assert any(k.endswith(f"{run_id}/artifacts/evaluation/report.md") for k in keys), keys
    with psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=postgres_database,
                          connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute("SELECT status FROM runs WHERE run_uuid = %s", (run_id,))
        assert cur.fetchall() == [("FINISHED",)]
        cur.execute("SELECT key, value FROM latest_metrics WHERE run_uuid = %s ORDER BY key", (run_id,))
        assert cur.fetchall() == [("auc", 0.64), ("holdout_auc", 0.63), ("log_loss", 0.48)]
    conn.close()


@pytest.mark.timeout(300)
def test_a_day_through_deployment_on_s3_and_the_mlflow_server(mlflow_server, s3, monkeypatch):
    """The production profile's storage and tracking, end to end through deployment: assets, bundle and
    champion history on S3; the run, the registered bundle and the ``champion`` alias on the server."""
    import datetime as dt

    import dagster as dg
    import mlflow

    from ml_assets.core import champion as C
    from ml_assets.core import landing
    from ml_assets.core.bundle import load_bundle
    from ml_assets.core.storage import make_path
    from ml_assets.definitions import DATA_ASSETS, build_assets, build_resources
    from ml_assets_tests.defs.test_deployment import MODEL_AND_DEPLOYMENT, SMALL

    home = f"s3://{s3.bucket}/home"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    resources = build_resources(home, "production")
    landing.land_days(make_path(home), dt.date(2013, 1, 1), dt.date(2013, 1, 4))
    instance = dg.DagsterInstance.ephemeral()
    for day in ("2013-01-01", "2013-01-02", "2013-01-03"):
        assert dg.materialize(DATA_ASSETS, partition_key=day, resources=resources, instance=instance).success
    previous_uri = mlflow.get_tracking_uri()
    try:
        result = dg.materialize([*build_assets(window_days=3)], partition_key="2013-01-04", resources=resources,
                                instance=instance, run_config=SMALL,
                                selection=["raw_flights", "raw_weather", "flight_features", "data_profile",
                                           *MODEL_AND_DEPLOYMENT])
        assert result.success
        now = C.current(C.read_history(make_path(home)))
        bundle = load_bundle(make_path(home) / now["bundle"])  # read back from S3, MANIFEST verified
        alias = mlflow.MlflowClient(mlflow_server).get_model_version_by_alias(now["model_line"], "champion")
    finally:
        mlflow.set_tracking_uri(previous_uri)
    keys = s3.keys("home/")
    assert {f"home/{now['bundle']}/{name}" for name in ("model.onnx", "features.json", "metrics.json",
                                                        "lineage.json", "model_card.md", "MANIFEST")} <= keys
    assert "home/champion/history.json" in keys and "home/assets/batch_predictions/2013-01-04.parquet" in keys
    assert alias.tags["semver"] == bundle.version and alias.source.startswith(f"s3://{s3.bucket}/mlflow/")
