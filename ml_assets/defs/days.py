"""Every daily asset works day by day, whether its step covers one day or a range (a single-run backfill).

Why not Dagster's own blocking: a blocking check that fails makes Dagster fail the whole step, and a step of a
range run holds every day of the range, so one bad day would stop the chain of all its neighbours. ml_assets
refuses per day instead, on every execution path (sensor, automation, backfill daemon, CLI, UI):

- A check declared ``refusing`` (Dagster ``blocking=True``, so the UI shows it as blocking) that fails on day D
  marks D's value *refused*: it is stored with the reason (for a raw day, the data as landed), and every
  consumer receives ``Refused(reason)`` for D instead of the value.
- A day whose input is refused is not computed: its value is ``Refused("upstream ...")`` and its own checks are
  not evaluated (no check ever passes on data it did not see).
- Consumers of windows (a training set over 28 days) skip refused days as holes and say so.

Each day still gets its own materialization metadata, data version (its content hash; a range step records the
range's hash on the materialization and each day's hash in its metadata) and check evaluations on its own
partition. Evaluations are logged with ``context.log_event`` (the event Dagster itself records), which carries
the partition explicitly: Dagster fills it in only for single-partition steps, and runs launched by the backfill
daemon or automation cover a one-day *range*, where it would record "no partition".
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

# The evaluation event needs the materialization it judged: Dagster builds this link itself only for
# single-partition steps, so it is built here the same way for every step.
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from ml_assets.core.versioning import bytes_hash, content_hash

DATA_VERSION_TAG = "dagster/data_version"  # the tag Dagster reads a data version from


@dataclass(frozen=True)
class Refused:
    """The value of a refused day: why, naming the asset, the day and the rule."""

    reason: str


class Days(Mapping[str, Any]):
    """A partitioned input: day key -> value or ``Refused``; days never stored are absent.

    ``values`` may be lazy (the IO managers read a stored range day by day, on first use): membership and
    iteration never read a value."""

    def __init__(self, values: Mapping[str, Any], asset: str = "", missing: Sequence[str] = ()):
        self._values = values
        self._keys = sorted(values)
        self.asset = asset
        self.missing = list(missing)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __iter__(self):
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def usable(self, keys: Sequence[str] | None = None) -> dict[str, Any]:
        """The days (of ``keys``, default all) that hold a value: not refused, not missing."""
        keys = self._keys if keys is None else keys
        return {k: value for k in keys if k in self._values and not isinstance(value := self._values[k], Refused)}

    def refused(self, keys: Sequence[str] | None = None) -> dict[str, str]:
        keys = self._keys if keys is None else keys
        return {k: value.reason for k in keys if k in self._values and isinstance(value := self._values[k], Refused)}

    def day(self, key: str) -> Any:
        """The value of one day, ``Refused`` for a refused day, or ``Refused`` naming a missing day."""
        if key in self._values:
            return self._values[key]
        return Refused(f"{self.asset or 'input'} {key}: not stored")


def refused_upstream(day: str, **inputs: Any) -> Refused | None:
    """The first refusal among a day's inputs (values, or ``Days`` looked up at ``day``), or None."""
    for name, value in inputs.items():
        value = value.day(day) if isinstance(value, Days) else value
        if isinstance(value, Refused):
            reason = value.reason if value.reason.startswith("upstream") else f"{name} {day}: {value.reason}"
            return Refused(reason if reason.startswith("upstream") else f"upstream {reason}")
    return None


@dataclass
class DayResult:
    """What an asset body computes for one day."""

    value: Any
    metadata: dict[str, Any] = field(default_factory=dict)
    checks: list[dg.AssetCheckResult] = field(default_factory=list)


def refusing_spec(name: str, *, asset: dg.AssetKey, description: str, **kwargs) -> dg.AssetCheckSpec:
    """A check whose failure refuses the day (shown as blocking in the UI; see the module docstring)."""
    return day_check_spec(name, asset=asset, blocking=True, description=description, **kwargs)


def day_check_spec(name: str, *, asset: dg.AssetKey, partitions_def: dg.PartitionsDefinition,
                   **kwargs) -> dg.AssetCheckSpec:
    """A check of a daily asset, judged per day.

    Partitioned checks are a Dagster preview (1.13) and used on purpose: with an unpartitioned check a daily
    asset has one check status (its newest evaluation); per-day status is what the UI and the alerts show.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.AssetCheckSpec(name, asset=asset, partitions_def=partitions_def, **kwargs)


def _refusing_failures(context: dg.AssetExecutionContext, checks: Sequence[dg.AssetCheckResult]) -> list[str]:
    specs = {spec.name: spec for spec in context.assets_def.check_specs}
    return [c.check_name for c in checks
            if not c.passed and specs[c.check_name].blocking
            and (c.severity or dg.AssetCheckSeverity.ERROR) == dg.AssetCheckSeverity.ERROR]


def emit_days(context: dg.AssetExecutionContext, results: Mapping[str | None, DayResult],
              version_of: Callable[[Any], str] = content_hash) -> Iterator:
    """Yield the step's output (one value, or every day's value for a range), per-day metadata and checks.

    ``results`` is keyed by partition key (``None`` for an unpartitioned asset)."""
    asset = context.asset_key.to_user_string()
    values, metadata = {}, {}
    for day, result in results.items():
        value = result.value
        failed = _refusing_failures(context, result.checks)
        if failed and not isinstance(value, Refused):
            value = refuse_value(value, f"{asset}{' ' + day if day else ''}: refused by {', '.join(failed)}")
        values[day] = value
        metadata[day] = {**result.metadata, **_status(value)}
    keys = list(results)
    hashes = {k: version_of(values[k]) for k in keys}
    if len(keys) == 1:
        (key,) = keys
        yield dg.Output(values[key], data_version=dg.DataVersion(hashes[key]), metadata=metadata[key])
    else:
        for key in keys:
            context.add_asset_metadata({**metadata[key], "content_hash": hashes[key]}, partition_key=key)
        yield dg.Output(values, data_version=dg.DataVersion(bytes_hash("".join(hashes.values()).encode())[:16]),
                        metadata={"days_in_run": len(keys), "first_day": keys[0], "last_day": keys[-1],
                                  "refused_days": sum(isinstance(v, Refused) for v in values.values())})
        # Dagster gives every partition of a range output the range's data version. Each day's own version (its
        # content hash) is recorded as an observation right after: automation's data-version trigger reads the
        # newest materialization or observation, so an unchanged day does not look changed after a range run.
        for key in keys:
            context.log_event(dg.AssetObservation(context.asset_key, partition=key, tags={DATA_VERSION_TAG: hashes[key]},
                                                  description="the day's own data version (range run)"))
    _log_check_evaluations(context, {k: r.checks for k, r in results.items()})
    for output in _check_outputs(context):
        yield output


@dataclass(frozen=True)
class RefusedValue:
    """A value stored with a refusal (a raw day as landed, refused by its own checks)."""

    value: Any
    reason: str


def refuse_value(value: Any, reason: str) -> Any:
    return RefusedValue(value, reason) if value is not None else Refused(reason)


def _status(value: Any) -> dict[str, Any]:
    if isinstance(value, Refused):
        return {"status": "refused", "refused_because": value.reason}
    if isinstance(value, RefusedValue):
        return {"status": "refused", "refused_because": value.reason}
    return {"status": "ok"}


def _materializations_of_run(context: dg.AssetExecutionContext, days: Sequence[str | None]) -> dict[str, Any]:
    partitions = [d for d in days if d is not None] or None
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=context.asset_key, asset_partitions=partitions),
        limit=4 * len(days) + 10)
    targets = {}
    for record in records.records:  # newest first: this run's materialization of each day
        if record.run_id == context.run_id and record.partition_key not in targets:
            targets[record.partition_key] = AssetCheckEvaluationTargetMaterializationData(
                run_id=record.run_id, storage_id=record.storage_id, timestamp=record.timestamp)
    return targets


def _log_check_evaluations(context: dg.AssetExecutionContext, checks: Mapping[str, Sequence[dg.AssetCheckResult]]):
    if not any(checks.values()):
        return
    specs = {spec.name: spec for spec in context.assets_def.check_specs}
    targets = _materializations_of_run(context, [d for d, c in checks.items() if c])
    for day, results in checks.items():
        for result in results:
            spec = specs[result.check_name]
            context.log_event(dg.AssetCheckEvaluation(
                asset_key=context.asset_key, check_name=result.check_name, passed=result.passed,
                metadata=result.metadata, severity=result.severity or dg.AssetCheckSeverity.ERROR,
                description=result.description or spec.description, blocking=spec.blocking,
                partition=day, target_materialization_data=targets.get(day)))


def _check_outputs(context: dg.AssetExecutionContext) -> Iterator[dg.Output]:
    """Each selected check's (valueless) step output, once per step: the checks ran in this step."""
    selected = context.selected_asset_check_keys
    for output_name, spec in context.assets_def.check_specs_by_output_name.items():
        if spec.key in selected:
            yield dg.Output(None, output_name=output_name)


def check(name: str, passed: bool, severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
          description: str | None = None, **metadata: Any) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(check_name=name, passed=bool(passed), severity=severity, description=description,
                               metadata=metadata)
