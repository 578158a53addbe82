"""Fixtures for the production-profile tests: real services.

PostgreSQL, Redis, RabbitMQ and an S3 endpoint are real: Postgres, Redis and RabbitMQ must be listening
(defaults below, overridable with ML_ASSETS_TEST_PG_*, ML_ASSETS_TEST_REDIS_* and ML_ASSETS_TEST_RABBITMQ_*);
S3 is moto's HTTP server started on 127.0.0.1. A test is skipped only when a service's port does not answer.
Every test gets its own Postgres database, Redis database and RabbitMQ virtual host, so runs on one machine
do not collide.
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


def require_service(name: str, host: str, port: int) -> None:
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        pytest.skip(f"{name} not reachable at {host}:{port}: {exc}")


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
    other's steps. The claim is an atomic SET NX with an expiry in the database itself.
    """
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    import redis

    token = uuid.uuid4().hex
    for db in range(1, 16):
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db, socket_timeout=5)
        if client.set("ml_assets_test_claim", token, nx=True, ex=600):
            break
        client.close()
    else:
        pytest.skip(f"Redis at {REDIS_HOST}:{REDIS_PORT}: databases 1..15 are all claimed by other test runs")
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
    without it the test falls back to the default vhost "/", which is correct but not isolated.
    """
    import shutil
    import subprocess

    require_service("RabbitMQ", RABBITMQ_HOST, RABBITMQ_PORT)
    vhost = f"ml_assets_test_{uuid.uuid4().hex[:12]}"
    ctl = shutil.which("rabbitmqctl") if RABBITMQ_HOST in ("127.0.0.1", "localhost") else None

    def rabbitmqctl(*args: str) -> bool:
        return ctl is not None and subprocess.run([ctl, *args], capture_output=True, timeout=60).returncode == 0

    made = rabbitmqctl("add_vhost", vhost) and rabbitmqctl("set_permissions", "-p", vhost, RABBITMQ_USER,
                                                             ".*", ".*", ".*")
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


@pytest.fixture
def mlflow_server(mlflow_database, s3, tmp_path, monkeypatch) -> Iterator[str]:
    """``mlflow server`` on a free port: backend store in a fresh Postgres database, artifacts on S3."""
    import httpx

    port = free_port()
    # name the driver: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; we ship psycopg2
    backend = f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{mlflow_database}"
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
                pytest.fail(f"mlflow server exited with {proc.returncode}:\n{tail(log)}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not healthy within 60 s:\n{tail(log)}")
            time.sleep(0.5)
        yield url
    finally:
        stop_process_group(proc)


@pytest.fixture
def production_env(tmp_path, s3, postgres_database, redis_db, broker, tracking_uri) -> dict[str, str]:
    """DAGSTER_HOME with the production dagster.yaml, and the environment every process of the stack gets."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    tracking = {"MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_S3_ENDPOINT_URL": s3.endpoint} if tracking_uri else {}
    return {
        **os.environ,
        **s3.env,
        **tracking,
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": PG_HOST, "DAGSTER_PG_PORT": str(PG_PORT), "DAGSTER_PG_USER": PG_USER,
        "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_DB": postgres_database,
        "DAGSTER_COMPUTE_LOGS_BUCKET": s3.bucket, "DAGSTER_COMPUTE_LOGS_PREFIX": f"{PREFIX}/compute-logs",
        "ML_ASSETS_ENV": "production", "ML_ASSETS_HOME": f"s3://{s3.bucket}/{PREFIX}",
        "ML_ASSETS_CELERY_BROKER": broker, "ML_ASSETS_CELERY_BACKEND": redis_db,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(REPO)) if p),
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def celery_worker(production_env, tmp_path) -> Iterator[tuple[str, Path]]:
    """A real worker, started the documented way; yields (its name, its log). Stopped with its children."""
    name = f"ml-assets-test-{uuid.uuid4().hex[:6]}"
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(VENV_BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
             "-y", str(DEPLOY / "celery.yaml"), "-n", name, "--", "--concurrency=2"],
            env=production_env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while " ready." not in log.read_text(errors="replace"):
            if proc.poll() is not None:
                pytest.fail(f"the Celery worker exited with {proc.returncode}:\n{tail(log)}")
            if time.monotonic() > deadline:
                pytest.fail(f"the Celery worker was not ready within 60 s:\n{tail(log)}")
            time.sleep(0.3)
        yield name, log
    finally:
        stop_process_group(proc)  # the CLI, the celery master and its pool children share one session
