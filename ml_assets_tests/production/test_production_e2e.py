"""A few days through the whole graph on the production stack, changed from local by configuration alone.

Postgres-backed Dagster instance, steps executed by a real Celery worker, assets and bundles on S3 (moto's
server), an MLflow tracking server with its own Postgres backend store and S3 artifacts. Runs are started
with the ``dagster`` CLI, as an operator would: the data layer of 2013-01-01..03 (one day, then a range in
one run), then 2013-01-04 from raw data to batch predictions and live performance.
"""
from __future__ import annotations

import datetime as dt
import json
import subprocess

import dagster as dg
import pytest

from ml_assets.core.landing import land_days
from ml_assets.core.storage import make_path
from ml_assets_tests.defs.test_deployment import MODEL_AND_DEPLOYMENT, SMALL
from ml_assets_tests.production.conftest import PREFIX, REPO, VENV_BIN, tail

DATA_LAYER = ["raw_flights", "raw_weather", "flight_features", "data_profile"]
INSTANCE_ENV = ("DAGSTER_HOME", "DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD",
                "DAGSTER_PG_DB", "DAGSTER_COMPUTE_LOGS_BUCKET", "DAGSTER_COMPUTE_LOGS_PREFIX")


@pytest.fixture
def tracking_uri(mlflow_server) -> str:
    return mlflow_server


def _materialize(env: dict, tmp_path, worker_log, assets: list[str], *partition: str, config: dict | None = None):
    log = tmp_path / f"run-{len(list(tmp_path.glob('run-*')))}.log"
    with open(log, "wb") as out:
        proc = subprocess.run(
            [str(VENV_BIN / "dagster"), "asset", "materialize", "--select", ",".join(assets), *partition,
             *(["--config-json", json.dumps(config)] if config else []),
             "-m", "ml_assets.definitions", "-a", "defs"],
            env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, timeout=240)
    assert proc.returncode == 0, f"{assets} {partition} failed:\n{tail(log)}\n--- worker ---\n{tail(worker_log)}"


@pytest.mark.timeout(420)
def test_days_flow_through_the_whole_graph_on_celery_postgres_s3_and_the_mlflow_server(
        production_env, celery_worker, mlflow_server, s3, tmp_path, monkeypatch):
    import mlflow

    from ml_assets.core import champion as C
    from ml_assets.core.bundle import load_bundle

    worker_name, worker_log = celery_worker
    home = production_env["ML_ASSETS_HOME"]
    land_days(make_path(home), dt.date(2013, 1, 1), dt.date(2013, 1, 4))

    run = lambda *args, **kw: _materialize(production_env, tmp_path, worker_log, *args, **kw)  # noqa: E731
    run(["planes", *DATA_LAYER], "--partition", "2013-01-01")
    run(DATA_LAYER, "--partition-range", "2013-01-02...2013-01-03")  # one run for the range
    run([*DATA_LAYER, *MODEL_AND_DEPLOYMENT], "--partition", "2013-01-04", config=SMALL)

    for key in INSTANCE_ENV:
        monkeypatch.setenv(key, production_env[key])
    with dg.DagsterInstance.from_config(production_env["DAGSTER_HOME"]) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        runs = instance.get_runs()
        assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS] * 3
        for key in ("flight_features", "data_profile"):
            assert instance.get_materialized_partitions(dg.AssetKey(key)) == {
                "2013-01-01", "2013-01-02", "2013-01-03", "2013-01-04"}
        last = instance.all_logs(runs[0].run_id)  # newest first
        steps = {r.dagster_event.step_key for r in last
                 if r.dagster_event and r.dagster_event.event_type == dg.DagsterEventType.STEP_SUCCESS}
        in_worker = {r.dagster_event.step_key: r.dagster_event.engine_event_data.metadata["Celery worker"].value
                     for r in last if r.dagster_event and r.dagster_event.is_engine_event
                     and "in celery worker" in (r.dagster_event.message or "")}
        assert set(MODEL_AND_DEPLOYMENT) <= steps and set(in_worker) == steps, (in_worker, steps)
        assert all(w.startswith(f"{worker_name}@") for w in in_worker.values()), in_worker
        checks = [r.dagster_event.event_specific_data for r in last if r.dagster_event
                  and r.dagster_event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION]
        promotion = [c for c in checks if c.check_name == "promotion"]
        assert len(promotion) == 1 and promotion[0].passed and promotion[0].partition == "2013-01-04"

    root = make_path(home)
    now = C.current(C.read_history(root))
    bundle = load_bundle(root / now["bundle"])  # read back from S3, MANIFEST verified
    assert now["day"] == "2013-01-04" and bundle.lineage["day"] == "2013-01-04"
    keys = s3.keys(f"{PREFIX}/")
    assert {f"{PREFIX}/{now['bundle']}/{name}" for name in ("model.onnx", "features.json", "metrics.json",
                                                            "lineage.json", "model_card.md", "MANIFEST")} <= keys
    assert {f"{PREFIX}/champion/history.json", f"{PREFIX}/assets/batch_predictions/2013-01-04.parquet",
            f"{PREFIX}/assets/live_performance/2013-01-04.parquet"} <= keys

    # the training runs and the registry live on the server (Postgres + S3 artifacts), written by the worker
    client = mlflow.MlflowClient(mlflow_server)
    alias = client.get_model_version_by_alias(now["model_line"], "champion")
    assert alias.tags["semver"] == bundle.version and alias.source.startswith(f"s3://{s3.bucket}/mlflow/")
    experiment = client.get_experiment_by_name("ml_assets")
    trained = client.search_runs([experiment.experiment_id])
    assert len(trained) == 2  # one run per candidate family
    assert bundle.lineage["mlflow_run_id"] in {r.info.run_id for r in trained}
