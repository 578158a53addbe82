"""raw_<source>: each day's landed file, stored as it is, then judged against the landing contract.

A failed refusing check refuses the day (``defs.days``): the data is kept for inspection and no consumer sees it.
The outcomes are also checked against the day's events (no outcome for an unknown event).
"""

import dagster as dg
import polars as pl

from ml_assets.core import landing, schemas
from ml_assets.core.dates import parse_day
from ml_assets.defs.blueprint import DATA, Blueprint
from ml_assets.defs.days import DayResult, Days, Refused, day_check_spec, emit_days, refused_upstream, refusing_spec
from ml_assets.defs.metadata import contract_check, frame_metadata, violations_check
from ml_assets.resources.storage import StorageRoot

LANDED = "landed_file"
CONTRACT = "contract"


def _rules(bp: Blueprint, source: str) -> list[str]:
    s = bp.spec.sources[source]
    rules = [LANDED, "schema", "non_empty", "date_matches_partition"]
    if s.key_unique == "error":
        rules.append("unique_key")
    if any(c.max_null_share is not None for c in s.columns.values()):
        rules.append("coverage")
    if s.role == "outcomes":
        rules.append("matches_events")
    return rules


def _specs(bp: Blueprint, source: str) -> list[dg.AssetCheckSpec]:
    s = bp.spec.sources[source]
    kw = {"asset": bp.raw(source), "partitions_def": bp.partitions}
    specs = [refusing_spec(CONTRACT, description="the landing contract: " + ", ".join(
        r.replace("_", " ") for r in _rules(bp, source)), **kw)]
    if s.key_unique == "warn":
        specs.append(day_check_spec("unique_key", description=f"one row per {', '.join(s.key)} (warns)", **kw))
    return specs


def _judge(bp: Blueprint, source: str, day: str, frame: pl.DataFrame, path: str, events) -> list[dg.AssetCheckResult]:
    s = bp.spec.sources[source]
    duplicates = schemas.duplicate_key_violations(frame, s.key)
    rules = {LANDED: [], "schema": schemas.schema_violations(frame, schemas.source_schema(bp.spec, source)),
             "non_empty": schemas.empty_violations(frame),
             "date_matches_partition": schemas.date_violations(frame, parse_day(day), bp.spec.replay.date_parts)}
    if s.key_unique == "error":
        rules["unique_key"] = duplicates
    if "coverage" in _rules(bp, source):
        rules["coverage"] = schemas.null_share_violations(frame, s.columns)
    if s.role == "outcomes":
        rules["matches_events"] = ([schemas.Violation("events_refused_or_missing", None, frame.height,
                                                      [getattr(events, "reason", "no events")])]
                                   if isinstance(events, Refused) or events is None
                                   else schemas.unmatched_key_violations(frame, events, s.key))
    results = [contract_check(rules, CONTRACT, file=path)]
    if s.key_unique == "warn":
        results.append(violations_check("unique_key", duplicates, severity=dg.AssetCheckSeverity.WARN, file=path))
    return results


def _delivery(path, day: str) -> dict:
    """When the file was delivered, and for a day's outcomes how long after the day ended (the label delay)."""
    import datetime as dt

    at = landing.delivered_at(path)
    if at is None:
        return {}
    end_of_day = dt.datetime.combine(parse_day(day) + dt.timedelta(days=1), dt.time())
    return {"delivered_at": at.isoformat(), "hours_after_the_day": round((at - end_of_day).total_seconds() / 3600, 1)}


def raw_asset(bp: Blueprint, source: str) -> dg.AssetsDefinition:
    s = bp.spec.sources[source]
    descriptions = {name: c.description for name, c in s.columns.items() if c.description}
    ins = {}
    if s.role == "outcomes":
        ins["events"] = dg.AssetIn(bp.raw(bp.spec.events_name))

    @dg.asset(key=bp.raw(source), partitions_def=bp.partitions, group_name=DATA, kinds={"polars", "parquet"},
              deps=[bp.landing(source)], ins=ins, check_specs=_specs(bp, source), owners=list(bp.owners),
              tags=bp.tags(layer="raw"), backfill_policy=dg.BackfillPolicy.single_run(),
              code_version="raw-v2", description=f"The day's landed {source}, validated against the landing "
                                                 f"contract: {s.description}.")
    def _raw(context: dg.AssetExecutionContext, storage: StorageRoot, **inputs):
        root = storage.path()
        events: Days | None = inputs.get("events")
        results = {}
        for day in context.partition_keys:
            try:
                path = landing.latest_file(root, bp.spec, source, day)
                frame = landing.read_landed(path)
            except (landing.LandingFileMissing, landing.LandingFileError) as exc:
                results[day] = DayResult(Refused(f"{context.asset_key.to_user_string()} {day}: {exc}"), checks=[
                    contract_check({LANDED: [schemas.Violation(LANDED, None, 0, [str(exc)])]}, CONTRACT)])
                continue
            day_events = events.day(day) if events is not None else None
            results[day] = DayResult(frame, {**frame_metadata(frame, descriptions), "landing_file": str(path),
                                             **_delivery(path, day)},
                                     _judge(bp, source, day, frame, str(path), day_events))
        yield from emit_days(context, results)

    return _raw


def reference_asset(bp: Blueprint, name: str) -> dg.AssetsDefinition:
    ref = bp.spec.reference[name]

    @dg.asset(key=bp.key(name), group_name=DATA, kinds={"polars", "parquet"}, deps=[bp.landing(name)],
              check_specs=[dg.AssetCheckSpec("schema", asset=bp.key(name), blocking=True,
                                             description="columns, types, one row per key")],
              owners=list(bp.owners), tags=bp.tags(layer="raw"), code_version="reference-v2",
              description=f"{ref.description} (reference data, landed once).")
    def _reference(context: dg.AssetExecutionContext, storage: StorageRoot):
        path = landing.reference_file(storage.path(), name)
        frame = landing.read_landed(path)
        violations = schemas.schema_violations(frame, schemas.reference_schema(bp.spec, name))
        yield from emit_days(context, {None: DayResult(frame, {**frame_metadata(frame), "landing_file": str(path)},
                                                       [violations_check("schema", violations, file=str(path))])})

    return _reference


def build(bp: Blueprint) -> list:
    return [*(raw_asset(bp, s) for s in bp.spec.sources), *(reference_asset(bp, r) for r in bp.spec.reference)]
