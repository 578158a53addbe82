"""What the instance records of check evaluations, for the sensors (Dagster's storage API, kept out of defs/)."""
from __future__ import annotations

from collections.abc import Callable

import dagster as dg
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

FAILED, SUCCEEDED = AssetCheckExecutionRecordStatus.FAILED, AssetCheckExecutionRecordStatus.SUCCEEDED


def failed_on(instance: dg.DagsterInstance) -> Callable[[dg.AssetCheckKey, str], bool]:
    """check, day -> whether the newest evaluation of that check on that day failed."""
    def failed(key: dg.AssetCheckKey, day: str) -> bool:
        history = instance.event_log_storage.get_asset_check_execution_history(
            key, limit=1, partition_filter=PartitionKeyFilter(key=day))
        return bool(history) and history[0].status == FAILED

    return failed


def newest_id(instance: dg.DagsterInstance, keys: list[dg.AssetCheckKey]) -> int:
    return max((r.id for key in keys for r in instance.event_log_storage.get_asset_check_execution_history(
        key, limit=1)), default=0)


def evaluations_after(instance: dg.DagsterInstance, keys: list[dg.AssetCheckKey], after: int,
                      recovery: dg.AssetCheckKey, limit: int = 50) -> tuple[list, bool]:
    """Failed evaluations of ``keys`` with an id after ``after``, and whether ``recovery`` passed since."""
    failures, recovered = [], False
    for key in keys:
        for record in instance.event_log_storage.get_asset_check_execution_history(key, limit=limit):
            if record.id <= after:
                continue
            if record.status == FAILED:
                failures.append(record)
            elif key == recovery and record.status == SUCCEEDED:
                recovered = True
    return failures, recovered
