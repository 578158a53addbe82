"""Prediction-log lines, and the shadow challenger scored off the response path.

A line (``core.prediction_log``): ``day`` (the event's own date), ``key`` (the feature key, ``date`` as ISO),
``model_version`` (``<line>/<version>``), ``features`` (the feature row, JSON-clean), ``p``, ``ts``,
``request_id``; a shadow line repeats them with ``shadow: {model_version, p}`` and is written as its own object
by the worker when the challenger has scored (never a rewrite of the answered batch).

``ShadowWorker``: one thread and a bounded queue. ``submit`` never blocks (a full queue drops the job and counts
it); whatever fails in the worker is counted and logged, never seen by a client.
"""
from __future__ import annotations

import datetime as dt
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

from ml_assets.core.spec import DatasetSpec

log = logging.getLogger("ml_assets.serving")


def clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


def iso_ts(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def log_lines(spec: DatasetSpec, features: pl.DataFrame, days: list[dt.date], p: list[float], model_version: str,
              request_id: str, when: dt.datetime) -> list[dict[str, Any]]:
    """One line per answered row (see the module doc)."""
    ts = iso_ts(when)
    rows = features.select(spec.feature_columns).to_dicts()
    out = []
    for row, day, pi in zip(rows, days, p):
        row = {k: clean(v) for k, v in row.items()}
        out.append({"day": day.isoformat(), "key": {k: row[k] for k in spec.features.key},
                    "model_version": model_version, "features": row, "p": float(pi), "ts": ts,
                    "request_id": request_id})
    return out


@dataclass
class ShadowJob:
    challenger: Any            # Served
    features: pl.DataFrame     # the challenger's feature rows (or None: build them in the worker)
    build: Callable[[], pl.DataFrame] | None
    lines: list[dict[str, Any]]
    request_id: str
    when: dt.datetime


class ShadowWorker:
    def __init__(self, write: Callable[[list[dict[str, Any]], str, dt.datetime], Any], maxsize: int = 256):
        self._write = write
        self._queue: queue.Queue[ShadowJob | None] = queue.Queue(maxsize=maxsize)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.counts = {"submitted": 0, "scored": 0, "dropped": 0, "failed": 0}
        self.last_error: str | None = None

    def _ensure(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="ml-assets-shadow", daemon=True)
                self._thread.start()

    def submit(self, job: ShadowJob) -> bool:
        self._ensure()
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self.counts["dropped"] += 1
            return False
        self.counts["submitted"] += 1
        return True

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                self._score(job)
            except Exception as exc:  # noqa: BLE001 - a shadow failure is counted and logged, never raised
                self.counts["failed"] += 1
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("shadow scoring of request %s failed: %s", getattr(job, "request_id", "?"),
                            self.last_error)
            finally:
                self._queue.task_done()

    def _score(self, job: ShadowJob) -> None:
        challenger = job.challenger
        features = job.features if job.features is not None else job.build()
        p = challenger.bundle.score(features, challenger.session)
        if len(p) != len(job.lines):
            raise RuntimeError(f"challenger scored {len(p)} rows for {len(job.lines)}")
        lines = [{**line, "shadow": {"model_version": challenger.model_version,
                                     "p": float(pi) if math.isfinite(pi) else None}}
                 for line, pi in zip(job.lines, p)]
        self._write(lines, job.request_id, job.when)
        self.counts["scored"] += 1

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every submitted job is done (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def stop(self, timeout: float = 10.0) -> None:
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        self.flush(timeout)
        try:
            self._queue.put(None, timeout=1)
        except queue.Full:
            return
        thread.join(timeout=timeout)

    def stats(self) -> dict[str, Any]:
        return {**self.counts, "queued": self._queue.qsize(), "last_error": self.last_error}
