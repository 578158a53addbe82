"""data_profile: statistics of the day's features and their drift against the trailing window.

One run may profile a range of days (a single-run backfill): each day is compared with its own trailing window.
"""
import datetime as dt


import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from ml_assets.core import features as F
from ml_assets.core import profile as P
from ml_assets.core.dates import parse_day
from ml_assets.defs.metadata import markdown_table, png_markdown
from ml_assets.defs.partitions import daily_check_spec, daily_partitions
from ml_assets.defs.ranges import day_outputs

TRAILING_DAYS = 28
CALENDAR_COLUMNS = ["dow", "month", "day_of_year", "is_weekend"]


class DataQualitySettings(dg.ConfigurableResource):
    """Warning thresholds for the data checks (drift, label balance, volume)."""

    categorical_drift_max: float = Field(0.2, description="L-inf distance of category shares")
    numeric_drift_max: float = Field(0.3, description="Jensen-Shannon divergence, bits")
    # Weather and the calendar change from one day to the next by nature (one day's day_of_year never
    # matches a month's): their drift is reported but does not warn.
    drift_columns: list[str] = Field(default_factory=lambda: [
        c for c in F.FEATURES if c not in F.WEATHER_COLUMNS + CALENDAR_COLUMNS])
    label_rate_band: float = Field(0.2, description="allowed |late share - trailing late share|")
    row_count_tolerance: float = Field(0.5, description="allowed |rows - trailing median| / median")


@dg.asset(
    partitions_def=daily_partitions, group_name="data", kinds={"polars"},
    code_version="profile-v1",
    ins={"flight_features": dg.AssetIn(partition_mapping=dg.TimeWindowPartitionMapping(
        start_offset=-TRAILING_DAYS, end_offset=0, allow_nonexistent_upstream_partitions=True))},
    check_specs=[
        daily_check_spec("feature_drift", asset="data_profile", description="drift vs the trailing 28 days (warn)"),
        daily_check_spec("label_balance", asset="data_profile", description="late share vs trailing window (warn)"),
        daily_check_spec("row_count", asset="data_profile", description="rows vs trailing median (warn)"),
    ],
    backfill_policy=dg.BackfillPolicy.single_run(),
    description="Per-day statistics (counts, nulls, quantiles, category shares, label rate) and drift "
                "against the trailing 28 days.",
)
def data_profile(context: dg.AssetExecutionContext, flight_features: pl.DataFrame, data_quality: DataQualitySettings):
    frames, metadata, checks = {}, {}, {}
    for key in context.partition_keys:
        frames[key], metadata[key], checks[key] = _profile_day(flight_features, parse_day(key), data_quality)
    yield from day_outputs(context, frames, metadata, checks)


def _profile_day(flight_features: pl.DataFrame, day: dt.date, data_quality: DataQualitySettings):
    """(profile, metadata, check results) of one day against its own trailing window."""
    from ml_assets.core.plots import drift_bars  # matplotlib: not at definitions load

    current = flight_features.filter(pl.col("date") == day)
    reference = flight_features.filter((pl.col("date") < day)
                                       & (pl.col("date") >= day - dt.timedelta(days=TRAILING_DAYS)))
    drift = P.drift(current, reference, F.NUMERIC, F.CATEGORICAL)
    stats = P.numeric_stats(current, F.NUMERIC)
    cats = P.categorical_stats(current, F.CATEGORICAL)
    trailing_counts = reference.group_by("date").len()["len"].to_list()
    rate, ref_rate = P.label_rate(current, F.LABEL), P.label_rate(reference, F.LABEL) if reference.height else None

    thresholds = {"linf": data_quality.categorical_drift_max, "jensen_shannon": data_quality.numeric_drift_max}
    profile = (
        pl.concat([stats.with_columns(kind=pl.lit("numeric")), cats.with_columns(kind=pl.lit("categorical"))],
                  how="diagonal_relaxed")
        .join(drift.select("column", drift_metric="metric", drift=pl.col("value")), on="column", how="left")
        .with_columns(date=pl.lit(day))
    )
    png = drift_bars(drift, thresholds, f"Feature drift {day} vs {reference['date'].n_unique()} trailing days")
    metadata = {
        "dagster/row_count": profile.height,
        "rows_profiled": current.height,
        "reference_days": reference["date"].n_unique(),
        "late_share": rate if rate is not None else float("nan"),
        "reference_late_share": ref_rate if ref_rate is not None else float("nan"),
        "numeric_statistics": dg.MetadataValue.md(markdown_table(stats, max_rows=50)),
        "category_frequencies": dg.MetadataValue.md(markdown_table(cats)),
        "drift": dg.MetadataValue.md(markdown_table(drift.sort("value", descending=True, nulls_last=True),
                                                    max_rows=50)),
        "drift_plot": png_markdown(png, "drift"),
    }
    return profile, metadata, [_drift_check(drift, data_quality, thresholds),
                               _label_check(rate, ref_rate, data_quality.label_rate_band),
                               _row_count_check(current.height, trailing_counts, data_quality.row_count_tolerance)]


def _drift_check(drift: pl.DataFrame, dq: DataQualitySettings, thresholds: dict[str, float]) -> dg.AssetCheckResult:
    watched = drift.filter(pl.col("column").is_in(dq.drift_columns))
    over = watched.filter(pl.col("value") > pl.col("metric").replace_strict(thresholds, return_dtype=pl.Float64))
    return dg.AssetCheckResult(
        check_name="feature_drift", passed=over.is_empty(), severity=dg.AssetCheckSeverity.WARN,
        metadata={"columns_over_threshold": over.height, "watched_columns": watched.height,
                  "max_drift": float(watched["value"].fill_nan(None).max() or 0.0),
                  "over": dg.MetadataValue.md(markdown_table(over)) if over.height else "none"})


def _label_check(rate: float | None, ref_rate: float | None, band: float) -> dg.AssetCheckResult:
    if rate is None or ref_rate is None:
        return dg.AssetCheckResult(check_name="label_balance", passed=True, severity=dg.AssetCheckSeverity.WARN,
                                   metadata={"note": "no labelled rows in the day or the trailing window"})
    return dg.AssetCheckResult(
        check_name="label_balance", passed=abs(rate - ref_rate) <= band, severity=dg.AssetCheckSeverity.WARN,
        metadata={"late_share": rate, "trailing_late_share": ref_rate, "allowed_band": band,
                  "shift": rate - ref_rate})


def _row_count_check(count: int, trailing: list[int], tolerance: float) -> dg.AssetCheckResult:
    deviation = P.row_count_deviation(count, trailing)
    return dg.AssetCheckResult(
        check_name="row_count", passed=deviation is None or deviation <= tolerance,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"rows": count, "trailing_days": len(trailing),
                  "trailing_median": float(np.median(trailing)) if trailing else float("nan"),
                  "relative_deviation": deviation if deviation is not None else float("nan"),
                  "tolerance": tolerance})
