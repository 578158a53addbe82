"""batch_predictions and live_performance: the champion at work, and how well it really did.

batch_predictions for D uses the champion in effect the evening before D, read from the champion history
(``core.champion.as_of``), so a promotion decided on D's outcomes can never leak into it. That is also why it
declares no dependency on ``champion`` or ``deployment_bundle``: in a run for D those steps would be D's own
(whose outcome must not matter), and a promotion refused by the blocking check would skip the predictions
that the old champion must still make.
"""

import datetime as dt

import dagster as dg
import polars as pl

from ml_assets.core import champion as C
from ml_assets.core.dates import parse_day
from ml_assets.defs.deployment.bundle import PromotionSettings
from ml_assets.defs.metadata import frame_metadata, markdown_table, png_markdown
from ml_assets.defs.partitions import daily_check_spec, daily_partitions
from ml_assets.resources.storage import StorageRoot

PREDICTION_LOG_DIR = "predictions"
TREND_DAYS = 28


@dg.asset(
    partitions_def=daily_partitions, group_name="deployment", kinds={"onnx", "polars"}, code_version="batch-v1",
    backfill_policy=dg.BackfillPolicy.multi_run(1),
    description="Every scheduled flight of day D scored by the champion in effect the evening before D "
                "(labels are never read). Columns: date, carrier, flight, origin, dest, sched_dep_time, "
                "p_late, model_version. Empty while there is no champion yet.",
)
def batch_predictions(context: dg.AssetExecutionContext, flight_features: pl.DataFrame,
                      storage: StorageRoot) -> dg.Output[pl.DataFrame]:
    from ml_assets.core.bundle import load_bundle
    from ml_assets.core.features import LABEL
    from ml_assets.core.live import PREDICTION_COLUMNS
    from ml_assets.core.versioning import frame_hash

    day = parse_day(context.partition_key)
    root = storage.path()
    schedule = flight_features.filter(pl.col("date") == day).drop(LABEL)
    serving = C.as_of(C.read_history(root), day - dt.timedelta(days=1))
    if serving is None:
        frame = pl.DataFrame(schema={"date": pl.Date, "carrier": pl.String, "flight": pl.Int64,
                                     "origin": pl.String, "sched_dep_time": pl.Int64, "dest": pl.String,
                                     "p_late": pl.Float64, "model_version": pl.String})
        return dg.Output(frame, metadata={"dagster/row_count": 0, "champion": f"none before {day}"})
    bundle = load_bundle(root / serving["bundle"])  # MANIFEST verified: a tampered bundle never scores
    frame = schedule.with_columns(p_late=pl.Series(bundle.score(schedule)),
                                  model_version=pl.lit(f"{serving['model_line']}/{bundle.version}"))
    frame = frame.select(PREDICTION_COLUMNS).with_columns(pl.col("flight").cast(pl.Int64),
                                                          pl.col("sched_dep_time").cast(pl.Int64))
    return dg.Output(frame, data_version=dg.DataVersion(frame_hash(frame)), metadata={
        **frame_metadata(frame), "champion": f"{serving['model_line']} {bundle.version}",
        "champion_decided_on": serving["day"], "mean_p_late": float(frame["p_late"].mean() or 0.0),
    })


def _online_lines(root, day: dt.date) -> list[str]:
    """Serving log lines that may concern flights of ``day`` (asked the day before or on the day, UTC)."""
    lines = []
    for asked in (day - dt.timedelta(days=1), day):
        path = root / PREDICTION_LOG_DIR / f"predictions-{asked.isoformat()}.jsonl"
        if path.exists():
            lines += path.read_text().splitlines()
    return lines


def _number(value) -> float:
    return float("nan") if value is None else float(value)


def _trend(root, day: dt.date, today: pl.DataFrame) -> pl.DataFrame:
    """Live AUC of the previous days (their stored partitions) and today's."""
    from ml_assets.core.storage import read_parquet

    frames = []
    for back in range(TREND_DAYS - 1, 0, -1):
        path = root / "assets" / "live_performance" / f"{(day - dt.timedelta(days=back)).isoformat()}.parquet"
        if path.exists():
            frames.append(read_parquet(path))
    return pl.concat([*frames, today], how="vertical_relaxed") if frames else today


@dg.asset(
    partitions_def=daily_partitions, group_name="deployment", kinds={"polars"}, code_version="live-v1",
    backfill_policy=dg.BackfillPolicy.multi_run(1),
    check_specs=[daily_check_spec("live_auc_drop", asset="live_performance",
                                  description="live AUC not below the champion's evaluation AUC by more "
                                              "than the tolerance (warning)")],
    description="Day D's batch and logged online predictions joined with D's realized outcomes: AUC, "
                "calibration and slice metrics, with the live AUC trend over the last 28 days.",
)
def live_performance(context: dg.AssetExecutionContext, batch_predictions: pl.DataFrame,
                     flight_features: pl.DataFrame, storage: StorageRoot, promotion_settings: PromotionSettings):
    from ml_assets.core import live
    from ml_assets.core.bundle import load_bundle
    from ml_assets.core.plots import daily_series

    day = parse_day(context.partition_key)
    root = storage.path()
    outcomes = flight_features.filter(pl.col("date") == day)
    sources = {"batch": batch_predictions, "online": live.online_predictions(_online_lines(root, day), day)}
    rows, reports = [], {}
    for source, predictions in sources.items():
        joined = live.join_outcomes(predictions, outcomes)
        result = live.live_metrics(joined)
        versions = sorted(set(joined["model_version"].to_list())) if joined.height else []
        rows.append({"date": day, "source": source, "model_version": ", ".join(versions),
                     "predictions": predictions.height, **{k: result["overall"].get(k) for k in (
                         "rows", "late_rate", "mean_p_late", "roc_auc", "pr_auc", "log_loss", "brier", "ece")}})
        reports[source] = result
    table = pl.DataFrame(rows).with_columns(pl.col("date").cast(pl.Date))
    trend = _trend(root, day, table).filter(pl.col("source") == "batch").sort("date")
    batch_auc = _number(table.filter(pl.col("source") == "batch")["roc_auc"][0])

    serving = C.as_of(C.read_history(root), day - dt.timedelta(days=1))
    evaluation_auc = float("nan")
    if serving is not None:
        evaluation_auc = _number(load_bundle(root / serving["bundle"]).metrics["overall"].get("roc_auc"))
    drop = live.auc_drop(batch_auc, evaluation_auc, promotion_settings.live_auc_tolerance)
    slices = pl.DataFrame(reports["batch"]["slices"]) if reports["batch"]["slices"] else pl.DataFrame()
    metadata = {
        **frame_metadata(table), "live_auc": batch_auc, "evaluation_auc": evaluation_auc,
        "joined_rows": int(table.filter(pl.col("source") == "batch")["rows"][0] or 0),
        "metrics": dg.MetadataValue.md(markdown_table(table)),
    }
    if slices.height:
        metadata["slices"] = dg.MetadataValue.md(markdown_table(
            slices.select("slice", "value", "rows", "roc_auc", "auc_gap", "ece", "flagged"), max_rows=60))
    if trend.height:
        metadata["trend"] = png_markdown(daily_series(trend["date"].to_list(), trend["roc_auc"].to_list(),
                                                      "live AUC (batch predictions)", "ROC-AUC"), "live AUC trend")
    yield dg.Output(table, metadata=metadata)
    yield dg.AssetCheckResult(check_name="live_auc_drop", passed=bool(drop["passed"]),
                              severity=dg.AssetCheckSeverity.WARN,
                              metadata={k: v for k, v in drop.items() if k != "passed"})
