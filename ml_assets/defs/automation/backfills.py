"""Backfills launched through the instance, as the UI's "Materialize partitions" does.

``launch_backfill`` registers an asset backfill (``PartitionBackfill``, the object the webserver's
``launchPartitionBackfill`` mutation creates) in the Dagster instance: it appears under Overview > Backfills
and the backfill daemon (``dagster dev`` or ``dagster-daemon run``) executes it, honouring each asset's
backfill policy: the data layer (single run) is one run for the whole range, the rolling models one run per
day. ``execute_backfill_here`` plays the backfill daemon in this process instead, for a terminal without a
daemon (``ml-assets backfill --wait``) and for tests: the same daemon code, with runs launched synchronously.
"""
from __future__ import annotations

import datetime as dt
import logging
import sys
import time
from collections.abc import Sequence

import dagster as dg
from dagster._core.definitions.selector import PartitionRangeSelector, PartitionsByAssetSelector, PartitionsSelector
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.utils import make_new_backfill_id

from ml_assets.core.dates import FIRST_DAY

DATA_LAYER = ["raw_flights", "raw_weather", "flight_features", "data_profile"]
# Assets that learn from the days before D: there is nothing to learn from before the first day.
NEEDS_HISTORY = {"training_set", "xgboost_model", "torch_model", "model_evaluation", "onnx_model",
                 "deployment_bundle"}
TERMINAL = {BulkActionStatus.COMPLETED, BulkActionStatus.COMPLETED_SUCCESS, BulkActionStatus.COMPLETED_FAILED,
            BulkActionStatus.FAILED, BulkActionStatus.CANCELED}


def backfill_targets(defs: dg.Definitions, scope: str, start: dt.date, end: dt.date) -> dict[str, tuple[str, str]]:
    """asset -> (first day, last day) to backfill. ``data``: the data layer; ``all``: every daily asset."""
    graph = defs.resolve_asset_graph()
    if scope == "data":
        names = DATA_LAYER
    elif scope == "all":
        names = [k.to_user_string() for k in graph.toposorted_asset_keys
                 if graph.get(k).is_partitioned and graph.get(k).is_materializable]
    else:
        raise ValueError(f"unknown backfill scope {scope!r}; expected 'data' or 'all'")
    out = {}
    for name in names:
        first = max(start, FIRST_DAY + dt.timedelta(days=1)) if name in NEEDS_HISTORY else start
        if first <= end:
            out[name] = (first.isoformat(), end.isoformat())
    return out


def launch_backfill(instance: dg.DagsterInstance, defs: dg.Definitions, targets: dict[str, tuple[str, str]],
                    title: str, tags: dict[str, str] | None = None) -> str:
    """Register the backfill in the instance (status REQUESTED); the backfill daemon picks it up."""
    backfill_id = make_new_backfill_id()
    backfill = PartitionBackfill.from_partitions_by_assets(
        backfill_id=backfill_id,
        asset_graph=defs.resolve_asset_graph(),
        backfill_timestamp=time.time(),
        tags={"ml_assets/trigger": "ml-assets backfill", **(tags or {})},
        dynamic_partitions_store=instance,
        partitions_by_assets=[
            PartitionsByAssetSelector(asset_key=dg.AssetKey(name), partitions=PartitionsSelector(
                ranges=[PartitionRangeSelector(start=first, end=last)]))
            for name, (first, last) in targets.items()],
        title=title,
        description=None,
        run_config=None,
    )
    instance.add_backfill(backfill)
    return backfill_id


def in_process_definitions() -> dg.Definitions:
    """The project's Definitions with every step of a run executed in the process that runs it."""
    from dagster_shared.record import copy

    from ml_assets.definitions import build_definitions

    return copy(build_definitions(), executor=dg.in_process_executor)


def execute_backfill_here(dagster_home: str, backfill_ids: Sequence[str],
                          code: str = f"{__name__}:in_process_definitions",
                          timeout_s: float = 3600, log=print) -> dict[str, BulkActionStatus]:
    """Tick the backfill daemon in this process until the backfills finish.

    The instance at ``dagster_home`` is opened with Dagster's in-process run coordinator and launcher, and the
    code location (``module:attribute``) executes steps in process: the runs the daemon submits execute
    here, one after the other (no process per step: on a small machine that start-up dominates).
    """
    from dagster._core.instance.ref import InstanceRef
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
    from dagster._daemon.backfill import execute_backfill_iteration

    overrides = {
        "run_coordinator": {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"},
        "run_launcher": {"module": "dagster._core.launcher.sync_in_memory_run_launcher",
                         "class": "SyncInMemoryRunLauncher"},
    }
    module, attribute = code.split(":")
    logger = logging.getLogger("ml_assets.backfill")
    deadline = time.time() + timeout_s
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(dagster_home, overrides=overrides)) as instance:
        target = InProcessWorkspaceLoadTarget(InProcessCodeLocationOrigin(
            LoadableTargetOrigin(module_name=module, attribute=attribute, executable_path=sys.executable),
            location_name="ml_assets"))
        with WorkspaceProcessContext(instance, target) as workspace:
            while True:
                for error in execute_backfill_iteration(workspace, logger):
                    if error is not None:
                        log(f"backfill daemon error: {error.message}")
                statuses = {b: instance.get_backfill(b).status for b in backfill_ids}
                if all(s in TERMINAL for s in statuses.values()):
                    return statuses
                if time.time() > deadline:
                    log(f"gave up waiting after {timeout_s:.0f} s: {statuses}")
                    return statuses
