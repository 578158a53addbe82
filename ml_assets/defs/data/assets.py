"""Data layer: landing zone -> raw_flights / raw_weather / planes -> flight_features.

The daily assets run for one day (the landing sensor) or for a range of days in one step (a single-run
backfill, ``ml-assets backfill``): each day is still stored, described and checked on its own partition.
"""

import dagster as dg
import polars as pl

from ml_assets.core import features as F
from ml_assets.core import landing, schemas
from ml_assets.core.dates import parse_day
from ml_assets.core.profile import label_rate
from ml_assets.core.versioning import frame_hash
from ml_assets.defs.metadata import check_result, frame_metadata
from ml_assets.defs.partitions import daily_check_spec, daily_partitions
from ml_assets.defs.ranges import day_outputs
from ml_assets.resources.storage import StorageRoot

RAW_CHECKS = ("schema", "unique_key", "non_empty", "date_matches_partition")


def _blocking_specs(asset: str, names: tuple[str, ...], what: str, daily: bool = True) -> list[dg.AssetCheckSpec]:
    spec = daily_check_spec if daily else dg.AssetCheckSpec
    return [spec(name, asset=asset, blocking=True, description=f"{what}: {name.replace('_', ' ')}")
            for name in names]


def _raw_days(context: dg.AssetExecutionContext, storage: StorageRoot, source: str, schema, key: list[str],
              key_severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR):
    """Store each day's landed file as it is, then judge it: a failed blocking check stops consumers."""
    frames, metadata, checks = {}, {}, {}
    for partition in context.partition_keys:
        day = parse_day(partition)
        path = landing.latest_file(storage.path(), source, day)
        frame = landing.read_landed(path)  # unreadable files fail the step with a named LandingFileError
        frames[partition] = frame
        metadata[partition] = {**frame_metadata(frame), "landing_file": str(path)}
        checks[partition] = [
            check_result("schema", schemas.schema_violations(frame, schema), file=str(path)),
            check_result("unique_key", schemas.duplicate_key_violations(frame, key), severity=key_severity,
                         file=str(path)),
            check_result("non_empty", schemas.empty_violations(frame), file=str(path)),
            check_result("date_matches_partition", schemas.date_violations(frame, day), file=str(path)),
        ]
    yield from day_outputs(context, frames, metadata, checks)


@dg.asset(partitions_def=daily_partitions, group_name="data", kinds={"polars", "parquet"},
          check_specs=_blocking_specs("raw_flights", RAW_CHECKS, "landed flights"),
          backfill_policy=dg.BackfillPolicy.single_run(),
          description="The day's landed flights, validated against the landing contract.")
def raw_flights(context: dg.AssetExecutionContext, storage: StorageRoot):
    yield from _raw_days(context, storage, "flights", schemas.LandingFlights, schemas.FLIGHT_KEY)


@dg.asset(partitions_def=daily_partitions, group_name="data", kinds={"polars", "parquet"},
          check_specs=_blocking_specs("raw_weather", ("schema", "non_empty", "date_matches_partition"),
                                      "landed weather")
          + [daily_check_spec("unique_key", asset="raw_weather",
                              description="one reading per origin and hour (warns: upstream repeats the DST hour)")],
          backfill_policy=dg.BackfillPolicy.single_run(),
          description="The day's landed hourly weather at the three origins.")
def raw_weather(context: dg.AssetExecutionContext, storage: StorageRoot):
    yield from _raw_days(context, storage, "weather", schemas.LandingWeather, schemas.WEATHER_KEY,
                         key_severity=dg.AssetCheckSeverity.WARN)


@dg.asset(group_name="data", kinds={"polars", "parquet"},
          check_specs=_blocking_specs("planes", ("schema",), "plane reference data", daily=False),
          description="Plane reference data (year, seats, engines), landed once.")
def planes(storage: StorageRoot):
    path = landing.planes_file(storage.path())
    frame = landing.read_landed(path)
    yield dg.Output(frame, data_version=dg.DataVersion(frame_hash(frame)),
                    metadata={**frame_metadata(frame), "landing_file": str(path)})
    yield check_result("schema", schemas.schema_violations(frame, schemas.LandingPlanes), file=str(path))


FEATURE_CHECKS = ("schema", "no_outcome_leak", "unique_key", "non_empty")


@dg.asset(partitions_def=daily_partitions, group_name="data", kinds={"polars", "parquet"},
          code_version=F.FEATURE_CODE_VERSION,
          check_specs=_blocking_specs("flight_features", FEATURE_CHECKS, "features"),
          backfill_policy=dg.BackfillPolicy.single_run(),
          description="One row per scheduled flight: only what is known the evening before, plus the label is_late.")
def flight_features(context: dg.AssetExecutionContext, raw_flights: pl.DataFrame, raw_weather: pl.DataFrame,
                    planes: pl.DataFrame):
    frame = F.build_features(raw_flights, raw_weather, planes)  # a range of days is built in one pass
    keys = context.partition_keys
    if len(keys) == 1:
        frames = {keys[0]: frame}
    else:
        frames = {k: frame.filter(pl.col("date") == parse_day(k)) for k in keys}
        stray = frame.height - sum(f.height for f in frames.values())
        if stray:
            raise ValueError(f"flight_features: {stray} row(s) fall outside the run's days {keys[0]}..{keys[-1]}")
    yield from day_outputs(context, frames, {k: _feature_metadata(f) for k, f in frames.items()},
                           {k: _feature_checks(f) for k, f in frames.items()})


def _feature_metadata(frame: pl.DataFrame) -> dict:
    late_share = label_rate(frame, F.LABEL)
    return {
        **frame_metadata(frame),
        "labelled_rows": int(frame[F.LABEL].is_not_null().sum()),
        "late_share": late_share if late_share is not None else float("nan"),
        "feature_code_version": F.FEATURE_CODE_VERSION,
    }


def _feature_checks(frame: pl.DataFrame) -> list[dg.AssetCheckResult]:
    leaked = [c for c in F.OUTCOME_COLUMNS if c in frame.columns]
    return [
        check_result("schema", schemas.schema_violations(frame, schemas.FlightFeatures)),
        check_result("no_outcome_leak", [schemas.Violation("outcome_column_in_features", c, frame.height)
                                         for c in leaked]),
        check_result("unique_key", schemas.duplicate_key_violations(
            frame, ["date", "carrier", "flight", "origin", "sched_dep_time"])),
        check_result("non_empty", schemas.empty_violations(frame)),
    ]
