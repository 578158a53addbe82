"""The executor, chosen by environment like the resources: same asset graph, different ways of running steps.

    local        the multiprocess executor, at most ``LOCAL_MAX_CONCURRENT`` steps at a time
    production   dagster-celery: every step is a Celery task picked up by any worker listening on the
                 broker (Redis or RabbitMQ). Broker and result backend URLs are read from the environment
                 (``ML_ASSETS_CELERY_BROKER``, ``ML_ASSETS_CELERY_BACKEND``) when a run starts, so secrets
                 never enter code or the job snapshot. Workers are started with the same block
                 (``deploy/production/celery.yaml``) so both sides agree on the broker.

Celery needs every step output to be persisted: ours go through the parquet IO manager on S3.
dagster_celery is imported only for production, so importing the definitions stays cheap locally.
"""
from __future__ import annotations

import dagster as dg

LOCAL_MAX_CONCURRENT = 2
BROKER_ENV = "ML_ASSETS_CELERY_BROKER"
BACKEND_ENV = "ML_ASSETS_CELERY_BACKEND"
# How often a run looks for finished steps (and submits the steps they unblock). dagster-celery waits a fixed
# second (``core_execution_loop.TICK_SECONDS``, not a setting): our runs are chains of ~16 dependent steps, so each
# run idled ~16 s. Every look is one result-backend read per step in flight.
CELERY_POLL_SECONDS = 0.1


def celery_config() -> dict:
    """The executor config block; also what ``dagster-celery worker start -y`` reads (under execution.config)."""
    return {
        "broker": {"env": BROKER_ENV},
        "backend": {"env": BACKEND_ENV},
        # Celery replaces a worker's sys.stdout/stderr with logging proxies that have no file descriptor,
        # which silently disables Dagster's compute-log capture (step stdout/stderr to S3). Keep the real ones.
        "config_source": {"worker_redirect_stdouts": False},
    }


def build_executor(env: str, local: str = "multiprocess") -> dg.ExecutorDefinition:
    """``local``: ``multiprocess`` (steps in parallel, a process each) or ``in_process`` (one process per run:
    less start-up, no parallel steps; ``ML_ASSETS_EXECUTOR``)."""
    if env == "local":
        if local == "in_process":
            return dg.in_process_executor
        if local != "multiprocess":
            raise ValueError(f"ML_ASSETS_EXECUTOR must be 'multiprocess' or 'in_process', got {local!r}")
        return dg.multiprocess_executor.configured({"max_concurrent": LOCAL_MAX_CONCURRENT})
    if env == "production":
        try:
            from dagster_celery import celery_executor, core_execution_loop
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError("ML_ASSETS_ENV=production needs the production extra: "
                              "pip install 'ml_assets[production]'") from exc
        core_execution_loop.TICK_SECONDS = CELERY_POLL_SECONDS
        return celery_executor.configured(celery_config())
    raise ValueError(f"unknown environment {env!r}; expected 'local' or 'production'")
