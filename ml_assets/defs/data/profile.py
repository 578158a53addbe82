"""data_profile: statistics of the day's features and their drift against the trailing window.

Judged at schedule time (before any outcome): drift and volume are what can go wrong before predictions are made.
The label's balance is watched once the outcomes land (``monitoring.live_performance``).
"""

import datetime as dt

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from ml_assets.core import profile as P
from ml_assets.core.dates import parse_day
from ml_assets.defs.blueprint import DATA, Blueprint, window
from ml_assets.defs.days import DayResult, Days, day_check_spec, emit_days, refused_upstream
from ml_assets.defs.metadata import numbers, png, table

TRAILING_DAYS = 28


class DataQualitySettings(dg.ConfigurableResource):
    """Warning thresholds for the data checks (drift, volume)."""

    categorical_drift_max: float = Field(0.2, description="L-inf distance of category shares")
    numeric_drift_max: float = Field(0.3, description="Jensen-Shannon divergence, bits")
    row_count_tolerance: float = Field(0.5, description="allowed |rows - trailing median| / median")


def _drift_check(drift: pl.DataFrame, quiet: list[str], thresholds: dict[str, float]) -> dg.AssetCheckResult:
    watched = drift.filter(~pl.col("column").is_in(quiet))
    over = watched.filter(pl.col("value") > pl.col("metric").replace_strict(thresholds, return_dtype=pl.Float64))
    return dg.AssetCheckResult(
        check_name="feature_drift", passed=over.is_empty(), severity=dg.AssetCheckSeverity.WARN,
        description=None if over.is_empty() else f"{over.height} column(s) drifted: {', '.join(over['column'])}",
        metadata={"columns_over_threshold": over.height, "watched_columns": watched.height,
                  "max_drift": float(watched["value"].fill_nan(None).max() or 0.0),
                  "over": table(over) if over.height else "none"})


def _row_count_check(count: int, trailing: list[int], tolerance: float) -> dg.AssetCheckResult:
    deviation = P.row_count_deviation(count, trailing)
    return dg.AssetCheckResult(
        check_name="row_count", passed=deviation <= tolerance, severity=dg.AssetCheckSeverity.WARN,
        metadata={"rows": count, "trailing_days": len(trailing), "trailing_median": float(np.median(trailing)),
                  "relative_deviation": float(deviation), "tolerance": tolerance})


def _profile_day(spec, day: str, features: Days, quality: DataQualitySettings, plots: bool) -> DayResult:
    """Day D's statistics and drift against the stored trailing days; checks only with a reference."""
    numeric, categorical = [*spec.features.numeric, *spec.history_columns], spec.features.categorical
    thresholds = {"linf": quality.categorical_drift_max, "jensen_shannon": quality.numeric_drift_max}
    current = features[day]
    start = (parse_day(day) - dt.timedelta(days=TRAILING_DAYS)).isoformat()
    trailing = features.usable([k for k in features if start <= k < day])
    reference = pl.concat(list(trailing.values()), how="vertical_relaxed") if trailing else current.head(0)
    drift = P.drift(current, reference, numeric, categorical)
    stats = P.numeric_stats(current, numeric)
    profile = (pl.concat([stats.with_columns(kind=pl.lit("numeric")),
                          P.categorical_stats(current, categorical).with_columns(kind=pl.lit("categorical"))],
                         how="diagonal_relaxed")
               .join(drift.select("column", drift_metric="metric", drift=pl.col("value")), on="column", how="left")
               .with_columns(date=pl.lit(parse_day(day))))
    metadata = {"dagster/row_count": profile.height, "rows_profiled": current.height,
                "reference_days": len(trailing), "numeric_statistics": table(stats, 80),
                "drift": table(drift.sort("value", descending=True, nulls_last=True), 80)}
    if plots:
        from ml_assets.core.plots import distributions, drift_bars  # matplotlib: not at definitions load

        metadata["drift_plot"] = png(drift_bars(drift, thresholds, f"Feature drift {day} vs {len(trailing)} "
                                                f"trailing days"), "drift")
        shown = P.most_drifted(drift, numeric, spec.features.drift_quiet)
        metadata["distributions"] = png(distributions(current, reference, shown), "distributions")
    if not trailing:  # without a reference window there is nothing to compare: not evaluated
        return DayResult(profile, {**metadata, "drift_status": "no reference: no trailing day stored yet"}, [])
    return DayResult(profile, metadata, [
        _drift_check(drift, spec.features.drift_quiet, thresholds),
        _row_count_check(current.height, [f.height for f in trailing.values()], quality.row_count_tolerance)])


def build(bp: Blueprint) -> list:
    spec = bp.spec
    key = bp.key("data_profile")
    kw = {"asset": key, "partitions_def": bp.partitions}

    @dg.asset(key=key, partitions_def=bp.partitions, group_name=DATA, kinds={"polars"}, code_version="profile-v2",
              ins={"features": dg.AssetIn(bp.key("features"), partition_mapping=window(-TRAILING_DAYS, 0))},
              check_specs=[day_check_spec("feature_drift", description=f"drift vs the trailing {TRAILING_DAYS} days "
                                          "(warns; not evaluated without a trailing day)", **kw),
                           day_check_spec("row_count", description="rows vs the trailing median (warns; not "
                                          "evaluated without a trailing day)", **kw)],
              backfill_policy=dg.BackfillPolicy.single_run(), owners=list(bp.owners), tags=bp.tags(layer="monitoring"),
              description=f"Per-day statistics of the features (counts, nulls, quantiles, category shares) and their "
                          f"drift against the trailing {TRAILING_DAYS} days, known the evening before.")
    def data_profile(context: dg.AssetExecutionContext, features: Days, data_quality: DataQualitySettings):
        results = {}
        for day in context.partition_keys:
            refused = refused_upstream(day, features=features)
            # plots for the newest day of a step only: a year's backfill need not draw 365 of each
            results[day] = DayResult(refused) if refused else _profile_day(
                spec, day, features, data_quality, plots=day == context.partition_keys[-1])
        yield from emit_days(context, results)

    return [data_profile]
