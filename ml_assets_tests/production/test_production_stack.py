"""The production profile end to end, on real services, changed from local by configuration alone.

A Postgres-backed Dagster instance (deploy/production/dagster.yaml), a Celery worker started the documented
way (deploy/production/celery.yaml; broker RabbitMQ, result backend Redis), storage and compute logs on S3
(moto's HTTP server). Two days are landed, then the data layer of one day is materialized with the
`dagster` CLI: every step must run in the worker, the run must be recorded in Postgres, and the assets
must be on S3 under the same keys as locally.
"""
from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from ml_assets.core.landing import land_days
from ml_assets.core.storage import make_path
from ml_assets.definitions import build_definitions
from ml_assets.resources.executors import build_executor, celery_config
from ml_assets_tests.production.conftest import DEPLOY, PREFIX, REPO, VENV_BIN, tail

DAY = "2013-01-02"
DATA_LAYER = ["raw_flights", "raw_weather", "planes", "flight_features", "data_profile"]


def test_the_celery_block_is_the_same_for_the_executor_and_the_workers():
    worker_block = yaml.safe_load((DEPLOY / "celery.yaml").read_text())["execution"]["config"]
    assert worker_block == celery_config()


def test_local_runs_steps_in_parallel_processes_and_production_on_celery(monkeypatch):
    assert build_executor("local").name == "multiprocess"
    monkeypatch.setenv("ML_ASSETS_CELERY_BROKER", "redis://127.0.0.1:6379/0")
    assert build_executor("production").name == "celery"
    with pytest.raises(ValueError, match="unknown environment"):
        build_executor("staging")


def _code_location(home: str) -> list[str]:
    """``ml_assets.definitions`` itself: ML_ASSETS_ENV=production must choose the Celery executor."""
    executor = build_definitions(home, "production").resolve_implicit_global_asset_job_def().executor_def
    assert executor.name == "celery", f"production must run steps on Celery; the definitions use {executor.name!r}"
    return ["-m", "ml_assets.definitions", "-a", "defs"]


@pytest.fixture
def broker(rabbitmq_vhost) -> str:
    """Here the Celery broker is RabbitMQ (AMQP); test_production_e2e runs on Redis. Results go to Redis."""
    return rabbitmq_vhost


@pytest.mark.timeout(120)
def test_the_data_layer_runs_on_celery_workers_with_a_postgres_instance_and_s3(
        production_env, celery_worker, s3, tmp_path, monkeypatch):
    worker_name, worker_log = celery_worker
    root = production_env["ML_ASSETS_HOME"]
    land_days(make_path(root), dt.date(2013, 1, 1), dt.date(2013, 1, 2))

    started = time.monotonic()
    run_log = tmp_path / "run.log"
    with open(run_log, "wb") as out:
        proc = subprocess.run(
            [str(VENV_BIN / "dagster"), "asset", "materialize", "--select", ",".join(DATA_LAYER),
             "--partition", DAY, *_code_location(root)],
            env=production_env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, timeout=90)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, f"run failed:\n{tail(run_log)}\n--- worker ---\n{tail(worker_log)}"

    # the run is recorded in Postgres, by an instance built from the same dagster.yaml
    for key in ("DAGSTER_HOME", "DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD",
                "DAGSTER_PG_DB", "DAGSTER_COMPUTE_LOGS_BUCKET", "DAGSTER_COMPUTE_LOGS_PREFIX"):
        monkeypatch.setenv(key, production_env[key])
    with dg.DagsterInstance.from_config(production_env["DAGSTER_HOME"]) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        # runs launched from the UI, sensors and schedules queue behind the limit in dagster.yaml
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 4
        runs = instance.get_runs()
        assert len(runs) == 1, [r.run_id for r in runs]
        run = runs[0]
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags.get("dagster/partition") == DAY
        records = instance.all_logs(run.run_id)
        materialized = {r.dagster_event.asset_key.to_user_string() for r in records
                        if r.dagster_event and r.dagster_event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION}
        assert materialized == set(DATA_LAYER)
        checks = [r.dagster_event.event_specific_data for r in records if r.dagster_event
                  and r.dagster_event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION]
        assert checks and all(c.passed for c in checks if c.severity == dg.AssetCheckSeverity.ERROR)

        # every step ran in our Celery worker, none in the run process
        in_worker = {}
        for r in records:
            event = r.dagster_event
            if event and event.is_engine_event and "in celery worker" in (event.message or ""):
                worker = event.engine_event_data.metadata["Celery worker"].value
                in_worker[event.step_key] = worker
        steps = {r.dagster_event.step_key for r in records
                 if r.dagster_event and r.dagster_event.event_type == dg.DagsterEventType.STEP_SUCCESS}
        assert steps and set(in_worker) == steps, (in_worker, steps)
        assert all(w.startswith(f"{worker_name}@") for w in in_worker.values()), in_worker

        # step stdout/stderr went to S3 through the compute log manager
        assert type(instance.compute_log_manager).__name__ == "S3ComputeLogManager"
    compute_logs = s3.keys(f"{PREFIX}/compute-logs/")
    assert any(run.run_id in key for key in compute_logs), compute_logs
    # the staging folder S3ComputeLogManager leaves behind (always under /tmp when no local_dir is set)
    shutil.rmtree(Path("/tmp") / run.run_id, ignore_errors=True)

    # the worker's own log shows the tasks it ran
    worker_text = worker_log.read_text(errors="replace")
    scheme = production_env["ML_ASSETS_CELERY_BROKER"].split("://")[0]  # redis or amqp
    assert f"transport:   {scheme}://" in worker_text, worker_text[:3000]
    assert worker_text.count("Task execute_plan[") >= len(steps) and " succeeded in " in worker_text

    # the same storage keys as locally, on S3
    keys = s3.keys(f"{PREFIX}/")
    assert {f"{PREFIX}/landing/flights/date={DAY}/v0001.parquet", f"{PREFIX}/assets/raw_flights/{DAY}.parquet",
            f"{PREFIX}/assets/raw_weather/{DAY}.parquet", f"{PREFIX}/assets/flight_features/{DAY}.parquet",
            f"{PREFIX}/assets/data_profile/{DAY}.parquet", f"{PREFIX}/assets/planes.parquet"} <= keys
    print(f"run through Celery + Postgres + S3 in {elapsed:.1f} s")
