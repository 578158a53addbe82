"""The production profile on real services, changed from local by configuration alone, with RabbitMQ as the broker.

A Postgres-backed Dagster instance (deploy/production/dagster.yaml), a Celery worker started the documented
way (deploy/production/celery.yaml; broker RabbitMQ on a vhost of its own, result backend Redis), storage and
compute logs on S3 (moto's HTTP server). Two days are landed on S3, then the data layer of one day is
materialized with the ``dagster`` CLI: every step must run in the worker, the run and its per-day check
evaluations must be recorded in Postgres, and the assets must be on S3 under the same keys as locally.
(test_production_e2e.py runs the whole graph on a Redis broker.)
"""
from __future__ import annotations

import datetime as dt
import time

import dagster as dg
import pytest
import yaml

from ml_assets.core import landing as L
from ml_assets.core.spec import load_spec
from ml_assets.core.storage import make_path
from ml_assets.definitions import build_definitions
from ml_assets.resources.executors import build_executor, celery_config
from ml_assets_tests.production.conftest import (
    DEPLOY, PREFIX, celery_steps, dagster_cli, forget_compute_log_staging, pg_query, tail)

pytestmark = pytest.mark.cost(18)  # seconds alone (see conftest)

DAY = "2013-01-02"
REFERENCES = ["flights/planes", "flights/airports"]
DAILY = ["flights/raw_schedule", "flights/raw_weather", "flights/raw_outcomes", "flights/features",
         "flights/labelled_features", "flights/data_profile"]
DATA_LAYER = REFERENCES + DAILY


def test_the_celery_block_is_the_same_for_the_executor_and_the_workers():
    worker_block = yaml.safe_load((DEPLOY / "celery.yaml").read_text())["execution"]["config"]
    assert worker_block == celery_config()
    assert worker_block["config_source"] == {"worker_redirect_stdouts": False}  # compute logs need the real fds


def test_local_runs_steps_in_parallel_processes_and_production_on_celery(monkeypatch):
    assert build_executor("local").name == "multiprocess"
    assert build_executor("local", "in_process").name == "in_process"
    monkeypatch.setenv("ML_ASSETS_CELERY_BROKER", "redis://127.0.0.1:6379/0")
    assert build_executor("production").name == "celery"
    with pytest.raises(ValueError, match="unknown environment"):
        build_executor("staging")


def test_production_needs_an_object_store_home(tmp_path):
    from ml_assets.settings import SettingsError

    with pytest.raises(SettingsError, match="needs an object-store ML_ASSETS_HOME"):
        build_definitions(home_=str(tmp_path), env="production")


def _the_code_location_runs_on_celery(home: str) -> None:
    """``ml_assets.definitions`` itself: ML_ASSETS_ENV=production must choose the Celery executor."""
    executor = build_definitions(home_=home, env="production").resolve_implicit_global_asset_job_def().executor_def
    assert executor.name == "celery", f"production must run steps on Celery; the definitions use {executor.name!r}"


@pytest.fixture
def broker(rabbitmq_vhost) -> str:
    """Here the Celery broker is RabbitMQ (AMQP); test_production_e2e runs on Redis. Results go to Redis."""
    return rabbitmq_vhost


@pytest.mark.timeout(180)
def test_the_data_layer_runs_on_celery_workers_with_a_postgres_instance_and_s3(
        production_env, worker_process, s3, tmp_path, use_instance_env):
    home = production_env["ML_ASSETS_HOME"]
    root, spec = make_path(home), load_spec("nycflights13")
    L.land_days(root, spec, dt.date(2013, 1, 1), dt.date(2013, 1, 2))  # while the worker boots
    _the_code_location_runs_on_celery(home)
    worker_name, worker = worker_process
    worker.wait()

    started = time.monotonic()
    run_log = tmp_path / "run.log"
    proc = dagster_cli(production_env, run_log, "asset", "materialize", "--select", ",".join(DATA_LAYER),
                       "--partition", DAY, timeout=150)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, f"run failed:\n{tail(run_log)}\n--- worker ---\n{tail(worker.log)}"

    # the run is recorded in Postgres, by an instance built from the same dagster.yaml
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        # runs launched from the UI, sensors and schedules queue behind the limits in dagster.yaml
        queue = instance.get_concurrency_config().run_queue_config
        assert queue.max_concurrent_runs == 4
        assert [(limit["key"], limit["limit"]) for limit in queue.tag_concurrency_limits] == [("dagster/backfill", 2)]
        # one champion decider at a time across runs and workers (the champion step's pool), kept in Postgres
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
        runs = instance.get_runs()
        assert len(runs) == 1, [r.run_id for r in runs]
        run = runs[0]
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags.get("dagster/partition") == DAY
        records = instance.all_logs(run.run_id)
        materialized = {(r.dagster_event.asset_key.to_user_string(), r.dagster_event.partition) for r in records
                        if r.dagster_event and r.dagster_event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION}
        assert materialized == {(k, None) for k in REFERENCES} | {(k, DAY) for k in DAILY}
        # every check of the day is recorded on its own day, and the real day passed its refusing checks
        checks = [r.dagster_event.event_specific_data for r in records if r.dagster_event
                  and r.dagster_event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION]
        daily = [c for c in checks if c.asset_key.to_user_string() not in REFERENCES]
        assert daily and {c.partition for c in daily} == {DAY}
        assert all(c.passed for c in checks if c.blocking), [(c.asset_key, c.check_name) for c in checks
                                                               if c.blocking and not c.passed]
        statuses = {k: instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey.from_user_string(k), asset_partitions=[DAY]), limit=1
        ).records[0].asset_materialization.metadata["status"].value for k in DAILY}
        assert set(statuses.values()) == {"ok"}, statuses

        # every step ran in our Celery worker, none in the run process
        steps, in_worker = celery_steps(records)
        assert steps and set(in_worker) == steps, (in_worker, steps)
        assert all(w.startswith(f"{worker_name}@") for w in in_worker.values()), in_worker

        # step stdout/stderr went to S3 through the compute log manager
        assert type(instance.compute_log_manager).__name__ == "S3ComputeLogManager"
    # the rows are in the test's own database, where dagster.yaml's DAGSTER_PG_* pointed
    assert pg_query(production_env["DAGSTER_PG_DB"], "SELECT run_id, status FROM runs") == [(run.run_id, "SUCCESS")]
    compute_logs = s3.keys(f"{PREFIX}/compute-logs/")
    assert any(run.run_id in key for key in compute_logs), compute_logs
    forget_compute_log_staging([run.run_id])

    # the worker's own log shows the broker and the tasks it ran
    worker_text = worker.log.read_text(errors="replace")
    assert "transport:   amqp://" in worker_text, worker_text[:3000]
    assert worker_text.count("Task execute_plan[") >= len(steps) and " succeeded in " in worker_text

    # the same storage keys as locally, on S3
    keys = s3.keys(f"{PREFIX}/")
    assert {f"{PREFIX}/landing/{source}/date={DAY}/v0001.parquet" for source in ("schedule", "weather", "outcomes")} \
        <= keys
    assert {f"{PREFIX}/landing/planes/v0001.parquet", f"{PREFIX}/assets/flights/planes.parquet"} <= keys
    assert {f"{PREFIX}/assets/{k}/{DAY}.parquet" for k in DAILY} <= keys
    assert L.latest_file(root, spec, "schedule", DAY).name == "v0001.parquet"
    print(f"data layer of {DAY} through Celery (RabbitMQ) + Postgres + S3 in {elapsed:.1f} s")
