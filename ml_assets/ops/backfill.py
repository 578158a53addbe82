"""Backfills launched through the instance, as the UI's "Materialize partitions" does, and executed here on demand.

``launch_backfill`` registers an asset backfill (``PartitionBackfill``, the object the webserver creates) in the
Dagster instance: it appears under Overview > Backfills and the backfill daemon (``dagster dev`` or
``dagster-daemon run``) executes it, honouring the assets' single-run backfill policies: each asset's whole range
is one step, days processed in order, refused days isolated per day (``defs.days``). ``execute_backfill_here``
plays the backfill daemon in this process for ONE backfill (``ml-assets backfill --wait``), with runs launched
synchronously and executed in process; it reports progress and stops cleanly when asked.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import dagster as dg
from dagster._core.definitions.selector import PartitionRangeSelector, PartitionsByAssetSelector, PartitionsSelector
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.utils import make_new_backfill_id

from ml_assets.core.dates import day_range
from ml_assets.defs.blueprint import DATA, LANDING, Blueprint

TERMINAL = {BulkActionStatus.COMPLETED, BulkActionStatus.COMPLETED_SUCCESS, BulkActionStatus.COMPLETED_FAILED,
            BulkActionStatus.FAILED, BulkActionStatus.CANCELED}


def target_assets(defs: dg.Definitions, scope: str) -> list[dg.AssetKey]:
    """``data``: the data layer; ``all``: every daily asset (never the landing zone, which upstream writes)."""
    graph = defs.resolve_asset_graph()
    if scope not in ("data", "all"):
        raise ValueError(f"unknown backfill scope {scope!r}; expected 'data' or 'all'")
    keys = [k for k in graph.toposorted_asset_keys if graph.get(k).is_materializable and graph.get(k).is_partitioned
            and graph.get(k).group_name != LANDING]
    return [k for k in keys if scope == "all" or graph.get(k).group_name == DATA]


def missing_ranges(instance: dg.DagsterInstance, keys: list[dg.AssetKey], start: dt.date, end: dt.date,
                   force: bool) -> dict[dg.AssetKey, list[tuple[str, str]]]:
    """Per asset, the contiguous day ranges still to do (all of them with ``force``): a rerun resumes."""
    days = [d.isoformat() for d in day_range(start, end)]
    out = {}
    for key in keys:
        done = set() if force else instance.get_materialized_partitions(key)
        todo = [d for d in days if d not in done]
        ranges, first, previous = [], None, None
        for d in todo:
            if first is None:
                first = d
            elif (dt.date.fromisoformat(d) - dt.date.fromisoformat(previous)).days != 1:
                ranges.append((first, previous))
                first = d
            previous = d
        if first is not None:
            ranges.append((first, previous))
        if ranges:
            out[key] = ranges
    return out


def launch_backfill(instance: dg.DagsterInstance, defs: dg.Definitions,
                    targets: dict[dg.AssetKey, list[tuple[str, str]]], title: str,
                    tags: dict[str, str] | None = None) -> str:
    """Register the backfill in the instance (status REQUESTED); a backfill daemon picks it up."""
    backfill_id = make_new_backfill_id()
    backfill = PartitionBackfill.from_partitions_by_assets(
        backfill_id=backfill_id, asset_graph=defs.resolve_asset_graph(), backfill_timestamp=time.time(),
        tags={"ml_assets/trigger": "ml-assets backfill", **(tags or {})}, dynamic_partitions_store=instance,
        partitions_by_assets=[PartitionsByAssetSelector(asset_key=key, partitions=PartitionsSelector(
            ranges=[PartitionRangeSelector(start=a, end=b) for a, b in ranges])) for key, ranges in targets.items()],
        title=title, description=None, run_config=None)
    instance.add_backfill(backfill)
    return backfill_id


def in_process_definitions() -> dg.Definitions:
    """The project's Definitions with every step of a run executed in the process that runs it."""
    from dagster_shared.record import copy

    from ml_assets.definitions import build_definitions

    return copy(build_definitions(), executor=dg.in_process_executor)


@dataclass
class Progress:
    done: int
    total: int
    step: str
    elapsed: float

    @property
    def eta(self) -> float | None:
        return self.elapsed / self.done * (self.total - self.done) if self.done else None

    def line(self) -> str:
        eta = f", ETA {self.eta:.0f} s" if self.eta is not None else ""
        return f"  {self.done}/{self.total} asset-days done, now: {self.step or 'planning'}; {self.elapsed:.0f} s{eta}"


def _progress(instance: dg.DagsterInstance, backfill_id: str, total: int, started: float) -> Progress:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    done, step = 0, ""
    for run in runs:
        materialized = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION,
                                                    limit=100_000).records
        done += len(materialized)
        if run.status == dg.DagsterRunStatus.STARTED:
            starts = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_START, limit=1000)
            if starts.records:
                step = starts.records[-1].event_log_entry.step_key or ""
    return Progress(min(done, total), total, step, time.time() - started)


def run_backfill_daemon(dagster_home: str, backfill_id: str, code: str = f"{__name__}:in_process_definitions") -> None:
    """The backfill daemon's own code (``execute_backfill_jobs``) for ONE backfill, in this process, until it ends.

    The instance is opened with Dagster's in-process run launcher, so its runs execute here, one after the other."""
    from dagster._core.instance.ref import InstanceRef
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
    from dagster._daemon.backfill import execute_backfill_jobs

    overrides = {"run_coordinator": {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"},
                 "run_launcher": {"module": "dagster._core.launcher.sync_in_memory_run_launcher",
                                  "class": "SyncInMemoryRunLauncher"}}
    module, attribute = code.split(":")
    logger = logging.getLogger("ml_assets.backfill")
    target = InProcessWorkspaceLoadTarget(InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name=module, attribute=attribute, executable_path=sys.executable),
        location_name="ml_assets"))
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(dagster_home, overrides=overrides)) as instance, \
            WorkspaceProcessContext(instance, target) as workspace:
        while (backfill := instance.get_backfill(backfill_id)).status == BulkActionStatus.REQUESTED:
            # (the supervisor marks the backfill CANCELING before it interrupts: no next run is started)
            for error in execute_backfill_jobs(workspace, logger, [backfill]):
                if error is not None:
                    print(f"backfill daemon error: {(error.message or '').splitlines()[0]}", flush=True)


def execute_backfill_here(dagster_home: str, backfill_id: str, total: int, report: Callable[[str], None] = print,
                          every_s: float = 10.0, grace_s: float = 15.0) -> tuple[BulkActionStatus, bool]:
    """Execute ``backfill_id`` in a worker process supervised by this one, with progress every ``every_s`` seconds.

    Ctrl-C or SIGTERM here: the backfill (so the worker starts no next run) and the runs under way are marked
    CANCELING, then the worker is interrupted, so Dagster records the interrupt as a cancellation (not a failure);
    the backfill is canceled; every write being atomic, nothing is half-written, and a rerun resumes with what is
    missing. A worker (not this process) runs the steps because Dagster takes over the interrupt signals while it
    executes. Returns (status, interrupted).
    """
    stopping = threading.Event()
    handlers = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    # The runs' own event logs are in the instance (the UI); the worker's console output goes to a file, so the
    # terminal shows progress lines, not thousands of step events.
    log_path = os.path.join(dagster_home, "logs", f"backfill-{backfill_id}.log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    report(f"worker log: {log_path}")
    with open(log_path, "ab") as log:
        worker = subprocess.Popen([sys.executable, "-m", __name__, dagster_home, backfill_id], start_new_session=True,
                                  stdout=log, stderr=subprocess.STDOUT)
    started, last_report = time.time(), time.time()
    try:
        with dg.DagsterInstance.get() as instance:
            while worker.poll() is None and not stopping.is_set():
                time.sleep(0.5)
                if time.time() - last_report >= every_s:
                    report(_progress(instance, backfill_id, total, started).line())
                    last_report = time.time()
            if stopping.is_set():
                backfill = instance.get_backfill(backfill_id)
                if backfill.status not in TERMINAL:
                    instance.update_backfill(backfill.with_status(BulkActionStatus.CANCELING))
                for run in _unfinished(instance, backfill_id):
                    instance.report_run_canceling(run, message="ml-assets backfill: Ctrl-C / SIGTERM")
                _interrupt(worker, grace_s)
                cancel(instance, backfill_id)
            return instance.get_backfill(backfill_id).status, stopping.is_set()
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        if worker.poll() is None:
            _interrupt(worker, grace_s)


def follow_backfill(instance: dg.DagsterInstance, backfill_id: str, total: int, report: Callable[[str], None] = print,
                    every_s: float = 10.0) -> tuple[BulkActionStatus, bool]:
    """Report the progress of a backfill a daemon executes, until it ends (Ctrl-C stops following, not it)."""
    started = time.time()
    try:
        while instance.get_backfill(backfill_id).status not in TERMINAL:
            time.sleep(every_s)
            report(_progress(instance, backfill_id, total, started).line())
    except KeyboardInterrupt:
        report("stopped following; the daemon goes on with the backfill")
        return instance.get_backfill(backfill_id).status, True
    return instance.get_backfill(backfill_id).status, False


def _interrupt(worker, grace_s: float, every_s: float = 0.25) -> None:
    """SIGINT the worker's process group until it exits, SIGKILL after ``grace_s``.

    Repeated, because Dagster's in-process executor raises an interrupt only while user code runs: one that lands
    while the run writes its events is captured and then dropped at the run's end (the run would go on)."""
    deadline = time.monotonic() + grace_s
    try:
        while worker.poll() is None and time.monotonic() < deadline:
            os.killpg(worker.pid, signal.SIGINT)
            try:
                worker.wait(timeout=every_s)
            except subprocess.TimeoutExpired:
                pass
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=5)
    except ProcessLookupError:  # already gone
        pass


UNFINISHED = (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
              dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING)


def _unfinished(instance: dg.DagsterInstance, backfill_id: str) -> list:
    return instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}, statuses=list(UNFINISHED)))


def cancel(instance: dg.DagsterInstance, backfill_id: str) -> list[str]:
    """Mark the backfill canceled and its unfinished runs canceled; returns the runs canceled."""
    canceled = []
    for run in _unfinished(instance, backfill_id):
        instance.report_run_canceled(run, message="ml-assets backfill was interrupted (Ctrl-C / SIGTERM)")
        canceled.append(run.run_id)
    backfill = instance.get_backfill(backfill_id)
    if backfill is not None and backfill.status not in TERMINAL:
        instance.update_backfill(backfill.with_status(BulkActionStatus.CANCELED))
    return canceled


def day_summary(instance: dg.DagsterInstance, ends: list[dg.AssetKey], start: dt.date, end: dt.date) -> dict[str, dict]:
    """Per day: processed (every end asset stored and not refused), refused (with the first refusal, which names
    the asset and the rule), or not attempted."""
    stored = {key: instance.get_materialized_partitions(key) for key in ends}
    out = {}
    for day in day_range(start, end):
        d = day.isoformat()
        missing = [k.to_user_string() for k in ends if d not in stored[k]]
        if missing:
            out[d] = {"status": "not attempted", "detail": f"{', '.join(missing)} not materialized"}
            continue
        reasons = []
        for key in ends:
            records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, asset_partitions=[d]),
                                                      limit=1).records
            reason = records[0].asset_materialization.metadata.get("refused_because") if records else None
            if reason is not None:
                reasons.append(str(reason.value))
        out[d] = {"status": "refused", "detail": reasons[0]} if reasons else {"status": "processed", "detail": ""}
    return out


if __name__ == "__main__":  # the worker of execute_backfill_here
    run_backfill_daemon(sys.argv[1], sys.argv[2])
