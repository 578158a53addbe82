"""Day-by-day results from one step that may cover many days (a single-run backfill).

A run for one day yields what it always did: the day's frame, its metadata and its check results. A run over
a partition range (``BackfillPolicy.single_run()``) yields one output holding every day's frame (the parquet IO
manager writes one file per day), per-day metadata, and per-day check evaluations, each tied to that day's
materialization. A bad day is therefore marked bad on its own partition, which the UI, the automation
conditions and the alerts read; its blocking failure still stops the step's downstream in that run, as Dagster
does for any blocking check, and automation then carries the good days on (see ``automation/conditions.py``).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dagster as dg
import polars as pl

# The evaluation event of a check result needs the materialization it judged; Dagster builds it itself only
# for a step with a single partition key, so for ranges we build it the same way.
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from ml_assets.core.versioning import bytes_hash, frame_hash


def day_outputs(context: dg.AssetExecutionContext, frames: Mapping[str, pl.DataFrame],
                metadata: Mapping[str, dict[str, Any]],
                checks: Mapping[str, Sequence[dg.AssetCheckResult]]) -> Iterator:
    """Yield the output, metadata and checks of the step's days (``frames`` keyed by partition key)."""
    keys = list(frames)
    if len(keys) == 1:
        (key,) = keys
        yield dg.Output(frames[key], data_version=dg.DataVersion(frame_hash(frames[key])), metadata=metadata[key])
        yield from checks.get(key, [])
        return
    hashes = {key: frame_hash(frames[key]) for key in keys}
    for key in keys:
        context.add_asset_metadata({**metadata[key], "content_hash": hashes[key]}, partition_key=key)
    version = bytes_hash("".join(hashes[k] for k in keys).encode())[:16]
    yield dg.Output(dict(frames), data_version=dg.DataVersion(version),
                    metadata={"days_in_run": len(keys), "first_day": keys[0], "last_day": keys[-1]})
    yield from _range_check_evaluations(context, checks)


def _range_check_evaluations(context: dg.AssetExecutionContext,
                             checks: Mapping[str, Sequence[dg.AssetCheckResult]]) -> Iterator:
    asset_key = context.asset_key
    specs = {spec.key: (output, spec) for output, spec in context.assets_def.check_specs_by_output_name.items()}
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=list(checks)), limit=4 * len(checks) + 10)
    targets: dict[str, AssetCheckEvaluationTargetMaterializationData] = {}
    for record in records.records:  # newest first: keep this run's materialization of each day
        if record.run_id == context.run_id and record.partition_key not in targets:
            targets[record.partition_key] = AssetCheckEvaluationTargetMaterializationData(
                run_id=record.run_id, storage_id=record.storage_id, timestamp=record.timestamp)
    evaluated = set()
    for partition, results in checks.items():
        for result in results:
            key = dg.AssetCheckKey(result.asset_key or asset_key, result.check_name)
            _, spec = specs[key]
            evaluated.add(key)
            yield dg.AssetCheckEvaluation(
                asset_key=key.asset_key, check_name=key.name, passed=result.passed, metadata=result.metadata,
                severity=result.severity, description=result.description, blocking=spec.blocking,
                partition=partition, target_materialization_data=targets.get(partition))
    for key in evaluated:  # each check's (valueless) step output, once per step
        yield dg.Output(None, output_name=specs[key][0])
