"""deployment_bundle: day D's exported candidate as a self-sufficient, versioned bundle, registered in MLflow.

The bundle's semantic version is computed from what changed against the newest bundle of its line
(``core.semver``); an identical model for the same day keeps its version. The value is the bundle's pointer
(line, version, folder, MANIFEST digest, parity, latency, size): the champion step decides on it.
"""

import json

import dagster as dg
import polars as pl

from ml_assets.core import bundle as B
from ml_assets.core.evaluation import evaluate
from ml_assets.core.features import feature_code_version
from ml_assets.core.semver import decide_version
from ml_assets.core.versioning import bytes_hash, frame_hash
from ml_assets.defs.blueprint import DEPLOYMENT, Blueprint
from ml_assets.defs.days import DayResult, Days, emit_days, refused_upstream, refusing_spec
from ml_assets.defs.metadata import numbers
from ml_assets.defs.models.candidates import LINEAGE_FILE
from ml_assets.defs.models.evaluation import holdout
from ml_assets.defs.models.onnx import LATENCY_FILE, PARITY_FILE
from ml_assets.resources.storage import StorageRoot
from ml_assets.resources.tracking import MLflowTracking


def _line_history(root, line: str) -> list[dict]:
    """The lineage of every bundle of a line, oldest version first."""
    return [{"version": v, **json.loads((B.bundle_path(root, line, v) / B.LINEAGE_FILE).read_bytes())}
            for v in B.list_bundles(root, line)]


def choose_version(root, line: str, candidate: dict) -> tuple[str, str, list[str], bool]:
    """(version, bump, reasons, already written): an identical model for the same day keeps its version."""
    history = _line_history(root, line)
    for previous in history:
        if previous.get("model_sha256") == candidate["model_sha256"] and previous.get("day") == candidate["day"]:
            return previous["version"], "existing", ["the same model for the same day is already bundled"], True
    decision = decide_version(history[-1] if history else None, candidate)
    return decision.version, decision.bump, list(decision.reasons), False


def data_card(bp: Blueprint, day: str, training: pl.DataFrame) -> dict:
    import datetime as dt

    label = bp.spec.label.name
    end = dt.date.fromisoformat(day)
    expected = {(end - dt.timedelta(days=i)).isoformat() for i in range(1, bp.window_days + 1)
                if end - dt.timedelta(days=i) >= bp.spec.first_day}
    present = {str(d) for d in training["date"].unique().to_list()}
    per_day = (training.group_by("date", "split").agg(rows=pl.len(), labelled=pl.col(label).is_not_null().sum(),
                                                     positive_share=pl.col(label).cast(pl.Float64).mean())
               .sort("date").with_columns(pl.col("date").cast(pl.String), pl.col("positive_share").round(4)))
    return {"dataset": bp.spec.name, "date_span": f"{training['date'].min()} .. {training['date'].max()}",
            "days": per_day.height, "rows": training.height,
            "positive_share": round(float(training[label].cast(pl.Float64).mean()), 4),
            "rows_per_day": per_day.to_dicts(),
            "gaps": [f"{d}: no labelled rows (refused, or outcomes not landed)" for d in sorted(expected - present)]}


def bundle_day(bp: Blueprint, day: str, files: dict[str, bytes], labelled: pl.DataFrame, training: pl.DataFrame,
               storage: StorageRoot, mlflow: MLflowTracking) -> DayResult:
    from ml_assets.core.onnx_export import onnx_session, score_session

    root = storage.path()
    spec = json.loads(files["model_spec.json"])
    trained = json.loads(files[LINEAGE_FILE])
    proof = {**json.loads(files[PARITY_FILE]), "latency": json.loads(files[LATENCY_FILE])}
    line = bp.spec.model_line(spec["family"])
    onnx_bytes = files["model.onnx"]
    rows = holdout(bp, labelled)
    result = evaluate(rows, score_session(onnx_session(onnx_bytes), rows), spec["threshold"], bp.spec.label.name,
                      {s.name: s.expression for s in bp.spec.slices})
    candidate = {**trained, "day": day, "model_sha256": bytes_hash(onnx_bytes),
                 "feature_code_version": feature_code_version(bp.spec), "trained_through": trained["date_span"][-1]}
    version, bump, reasons, existed = choose_version(root, line, candidate)
    metrics = {"holdout_day": day, "overall": result["overall"], "slices": result["slices"],
               "flagged_slices": result["flagged_slices"], "calibration": result["calibration"],
               "latency": proof["latency"], "size_bytes": len(onnx_bytes), "parity_max_abs_diff": proof["max_abs_diff"]}
    lineage = {**candidate, "version": version, "model_line": line, "version_bump": bump, "version_reasons": reasons,
               "holdout_data_version": frame_hash(rows), "holdout_rows": rows.height}
    path = B.bundle_path(root, line, version)
    if not existed:
        path = B.write_bundle(root, B.build_bundle_files(
            version, line, onnx_bytes, spec, metrics, lineage, bp.spec.model_dump(mode="json"),
            data_card(bp, day, training), feature_code_version(bp.spec)))
    check = dg.AssetCheckResult(check_name="bundle_integrity", passed=True)
    try:
        bundle = B.load_bundle(path)  # verifies the MANIFEST of what was just written (or found)
    except B.BundleIntegrityError as exc:
        return DayResult(None, {"bundle": str(path)}, [dg.AssetCheckResult(
            check_name="bundle_integrity", passed=False, description=str(exc), metadata={"file": exc.file or ""})])
    manifest = (path / B.MANIFEST_FILE).read_bytes()
    registry = mlflow.register_bundle(line, version, bundle, run_id=trained["mlflow_run_id"],
                                      tags={"day": day, "bundle": f"{B.BUNDLES_DIR}/{line}/{version}",
                                            "manifest_sha256": bytes_hash(manifest)}, example=rows.head(5))
    pointer = {"model_line": line, "version": version, "family": spec["family"], "day": day,
               "model_sha256": candidate["model_sha256"],
               "bundle": f"{B.BUNDLES_DIR}/{line}/{version}", "trained_through": candidate["trained_through"],
               "date_span": trained["date_span"], "manifest_sha256": bytes_hash(manifest),
               "parity_passed": bool(proof["passed"]), "parity_max_abs_diff": proof["max_abs_diff"],
               "single_row_p95_ms": proof["latency"]["single_row_p95_ms"], "size_bytes": len(onnx_bytes),
               "registry_version": registry, "holdout_auc": result["overall"]["roc_auc"]}
    metadata = {"version": version, "model_line": line, "bundle": pointer["bundle"], "version_bump": bump,
                "version_reasons": "; ".join(reasons), "registry_version": str(registry),
                "mlflow_model": dg.MetadataValue.url(mlflow.model_version_url(line, registry)),
                **numbers({"holdout_auc": result["overall"]["roc_auc"], "size_bytes": len(onnx_bytes),
                           "single_row_p95_ms": proof["latency"]["single_row_p95_ms"]}),
                "model_card": dg.MetadataValue.md(bundle.model_card)}
    return DayResult(pointer, metadata, [check])


MEASURED = ("single_row_p95_ms", "manifest_sha256", "registry_version")  # differ between identical rebuilds


def pointer_version(value) -> str:
    """A bundle pointer's data version: what it points at, not what was measured when it was written."""
    from ml_assets.core.versioning import content_hash

    if isinstance(value, dict):
        return content_hash({k: v for k, v in value.items() if k not in MEASURED})
    return content_hash(value)


def build(bp: Blueprint) -> list:
    key = bp.key("deployment_bundle")

    @dg.asset(key=key, partitions_def=bp.partitions, group_name=DEPLOYMENT, kinds={"onnx", "mlflow"},
              io_manager_key="json_io_manager", code_version="bundle-v2", owners=list(bp.owners),
              ins={"onnx_model": dg.AssetIn(bp.key("onnx_model"), input_manager_key="model_io_manager"),
                   "labelled": dg.AssetIn(bp.key("labelled_features")),
                   "training_set": dg.AssetIn(bp.key("training_set"))},
              check_specs=[refusing_spec("bundle_integrity", asset=key, partitions_def=bp.partitions,
                                         description="the written bundle loads and matches its MANIFEST")],
              backfill_policy=dg.BackfillPolicy.single_run(), tags=bp.tags(layer="deployment"),
              description="bundles/<model line>/<version>/: model.onnx, features.json, metrics.json, lineage.json, "
                          "dataset.json, model_card.md, data_card.md, MANIFEST; semantic version computed from what "
                          "changed; registered in MLflow as a loadable model. Value: the bundle's pointer.")
    def deployment_bundle(context: dg.AssetExecutionContext, onnx_model: Days, labelled: Days, training_set: Days,
                          storage: StorageRoot, mlflow: MLflowTracking):
        results = {}
        for day in context.partition_keys:  # in day order: each version builds on the one before
            refused = refused_upstream(day, onnx_model=onnx_model, labelled=labelled, training_set=training_set)
            results[day] = DayResult(refused) if refused else bundle_day(
                bp, day, onnx_model[day], labelled[day], training_set[day], storage, mlflow)
        yield from emit_days(context, results, version_of=pointer_version)

    return [deployment_bundle]
