"""model_evaluation and onnx_model: judge every candidate on the same holdout (day D, never seen in
training), pick the best, export it to ONNX and prove the export gives the same answers."""
import datetime as dt
import json

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from ml_assets.core.dates import parse_day
from ml_assets.core.features import LABEL
from ml_assets.core.versioning import files_hash, frame_hash
from ml_assets.defs.metadata import markdown_table, png_markdown
from ml_assets.defs.models.candidates import LINEAGE_FILE
from ml_assets.defs.partitions import daily_check_spec, daily_partitions
from ml_assets.resources.storage import StorageRoot
from ml_assets.resources.tracking import MLflowTracking

CANDIDATES = {"xgboost_model": "xgboost", "torch_model": "mlp"}


class EvaluationSettings(dg.ConfigurableResource):
    auc_floor: float = Field(0.55, description="model_sanity: the chosen candidate's holdout AUC must exceed it")
    parity_tolerance: float = Field(1e-5, description="onnx_parity: max |p_onnx - p_native| on the holdout")


def _holdout(flight_features: pl.DataFrame, day) -> pl.DataFrame:
    return flight_features.filter(pl.col("date") == day)


def _baseline_auc(holdout: pl.DataFrame) -> float:
    """A trivial baseline: "later departures run later" (the scheduled departure time as the score)."""
    from ml_assets.core.evaluation import roc_auc

    labelled = holdout.filter(pl.col(LABEL).is_not_null())
    if labelled.is_empty():
        return 0.5
    return roc_auc(labelled[LABEL].cast(pl.Int8).to_numpy(), labelled["sched_dep_minutes"].to_numpy())


def _champion_row(storage: StorageRoot, day, holdout: pl.DataFrame, baseline: float) -> dict | None:
    """The champion in effect the evening before ``day``, scored through its bundle on the same holdout."""
    from ml_assets.core import champion as C
    from ml_assets.core import evaluation as E
    from ml_assets.core.bundle import load_bundle

    root = storage.path()
    serving = C.as_of(C.read_history(root), day - dt.timedelta(days=1))
    if serving is None:
        return None
    bundle = load_bundle(root / serving["bundle"])
    session = bundle.session()
    result = E.evaluate(holdout, bundle.score(holdout, session), bundle.threshold)
    latency = E.measure_latency(lambda f: bundle.score(f, session), holdout, single_rows=20, batch_repeats=2)
    return {"candidate": "champion", "family": bundle.family, "date": day, **result["overall"], **latency,
            "size_bytes": len(bundle.model_bytes), "baseline_auc": baseline,
            "flagged_slices": ", ".join(result["flagged_slices"]), "mlflow_run_id": bundle.lineage.get("mlflow_run_id"),
            "model_version": f"{serving['model_line']}/{bundle.version}"}


@dg.asset(
    partitions_def=daily_partitions, group_name="models", kinds={"mlflow"}, code_version="evaluation-v2",
    ins={"xgboost_model": dg.AssetIn(input_manager_key="model_io_manager"),
         "torch_model": dg.AssetIn(input_manager_key="model_io_manager")},
    check_specs=[daily_check_spec("model_sanity", asset="model_evaluation", blocking=True,
                                  description="the chosen candidate beats the AUC floor and a departure-time baseline")],
    description="Every candidate scored on day D's labelled rows: AUC, PR-AUC, log loss, Brier, calibration, "
                "precision/recall/F1 at the validation-chosen threshold, per slice; latency and size. "
                "One row per candidate, `chosen` marks the best; plus the champion in effect the evening before "
                "(scored through its bundle on the same rows) when there is one.",
)
def model_evaluation(context: dg.AssetExecutionContext, xgboost_model: dict, torch_model: dict,
                     flight_features: pl.DataFrame, mlflow: MLflowTracking, evaluation_settings: EvaluationSettings,
                     storage: StorageRoot):
    from ml_assets.core import evaluation as E
    from ml_assets.core.training import families

    day = parse_day(context.partition_key)
    holdout = _holdout(flight_features, day)
    rows, reports, plots = [], {}, {}
    baseline = _baseline_auc(holdout)
    for asset_name, files in {"xgboost_model": xgboost_model, "torch_model": torch_model}.items():
        model = families.load(files)
        p = families.predict(model, holdout)
        result = E.evaluate(holdout, p, threshold=model.spec["threshold"])
        latency = E.measure_latency(lambda f: families.predict(model, f), holdout, single_rows=20, batch_repeats=2)
        size = E.model_size_bytes({k: v for k, v in files.items() if k != LINEAGE_FILE})
        plots[asset_name] = E.evaluation_plots(holdout, p, result)
        reports[asset_name] = E.report_markdown(result, f"{asset_name} on {day}", latency, size)
        run_id = json.loads(files[LINEAGE_FILE])["mlflow_run_id"]
        overall = result["overall"]
        mlflow.log_to_run(run_id, {f"holdout_{k}": v for k, v in overall.items() if isinstance(v, (int, float))},
                          artifacts={"report.md": reports[asset_name].encode(), **plots[asset_name]})
        rows.append({"candidate": asset_name, "family": CANDIDATES[asset_name], "date": day, **overall,
                     **latency, "size_bytes": size, "baseline_auc": baseline,
                     "flagged_slices": ", ".join(result["flagged_slices"]), "mlflow_run_id": run_id,
                     "model_version": files_hash(files)})
    table = pl.DataFrame(rows).with_columns(chosen=pl.col("roc_auc") == pl.col("roc_auc").max())
    # Ties go to the first candidate only.
    table = table.with_columns(chosen=pl.col("chosen") & (pl.col("chosen").cum_sum() == 1))
    champion_row = _champion_row(storage, day, holdout, baseline)
    if champion_row is not None:  # for comparison on the same rows; the promotion gate decides, not this table
        table = pl.concat([table, pl.DataFrame([{**champion_row, "chosen": False}])], how="diagonal_relaxed")
    best = table.filter("chosen").row(0, named=True)
    shown = ["candidate", "rows", "roc_auc", "pr_auc", "log_loss", "brier", "ece", "precision", "recall", "f1",
             "threshold", "single_row_p50_ms", "batch_ms", "size_bytes", "baseline_auc", "chosen"]
    yield dg.Output(table, data_version=dg.DataVersion(frame_hash(table)), metadata={
        "dagster/row_count": table.height, "holdout_rows": best["rows"], "chosen": best["candidate"],
        "chosen_auc": best["roc_auc"],
        "comparison": dg.MetadataValue.md(markdown_table(table.select([c for c in shown if c in table.columns]))),
        "report": dg.MetadataValue.md(reports[best["candidate"]]),
        **{f"{name}_plot": png_markdown(png, name) for name, png in plots[best["candidate"]].items()},
    })
    floor = evaluation_settings.auc_floor
    passed = bool(np.isfinite(best["roc_auc"]) and best["roc_auc"] > floor and best["roc_auc"] > best["baseline_auc"])
    yield dg.AssetCheckResult(check_name="model_sanity", passed=passed, metadata={
        "chosen": best["candidate"], "holdout_auc": best["roc_auc"], "auc_floor": floor,
        "baseline_auc": best["baseline_auc"],
        "all_candidates": dg.MetadataValue.md(markdown_table(table.select("candidate", "roc_auc", "baseline_auc")))})


@dg.asset(
    partitions_def=daily_partitions, group_name="models", kinds={"onnx"}, code_version="onnx-v1",
    io_manager_key="model_io_manager",
    ins={"xgboost_model": dg.AssetIn(input_manager_key="model_io_manager"),
         "torch_model": dg.AssetIn(input_manager_key="model_io_manager")},
    check_specs=[daily_check_spec("onnx_parity", asset="onnx_model", blocking=True,
                                  description="onnxruntime vs the native model on the holdout rows")],
    description="The chosen candidate as ONNX: raw feature columns in (strings stay strings, encoding and "
                "history-rate lookups inside the graph), p_late out. Files: model.onnx, model_spec.json, lineage.json.",
)
def onnx_model(context: dg.AssetExecutionContext, model_evaluation: pl.DataFrame, xgboost_model: dict,
               torch_model: dict, flight_features: pl.DataFrame, evaluation_settings: EvaluationSettings):
    from ml_assets.core import onnx_export
    from ml_assets.core.training import families

    chosen = model_evaluation.filter("chosen").row(0, named=True)["candidate"]
    files = {"xgboost_model": xgboost_model, "torch_model": torch_model}[chosen]
    model = families.load(files)
    holdout = _holdout(flight_features, parse_day(context.partition_key))
    onnx_bytes = onnx_export.export_onnx(model)
    parity = onnx_export.parity(families.predict(model, holdout), onnx_export.score_onnx(onnx_bytes, holdout),
                                tol=evaluation_settings.parity_tolerance)
    out = {"model.onnx": onnx_bytes, "model_spec.json": files["model_spec.json"],
           LINEAGE_FILE: files[LINEAGE_FILE]}
    yield dg.Output(out, data_version=dg.DataVersion(files_hash(out)), metadata={
        "source_candidate": chosen, "family": families.family_of(files), "onnx_bytes": len(onnx_bytes),
        "parity_max_abs_diff": parity["max_abs_diff"], "parity_rows": parity["rows"]})
    yield dg.AssetCheckResult(check_name="onnx_parity", passed=bool(parity["passed"]), metadata={
        "max_abs_diff": parity["max_abs_diff"], "tolerance": parity["tolerance"], "rows": parity["rows"],
        "candidate": chosen})
