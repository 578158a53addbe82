"""deployment_bundle: day D's exported candidate as a self-sufficient bundle, versioned, registered in MLflow,
and judged against the champion on the same holdout rows by the blocking ``promotion`` check."""

import datetime as dt
import json

import dagster as dg
import polars as pl
from pydantic import Field

from ml_assets.core import champion as C
from ml_assets.core.dates import parse_day
from ml_assets.defs.metadata import markdown_table
from ml_assets.defs.models.candidates import LINEAGE_FILE
from ml_assets.defs.models.evaluation import EvaluationSettings
from ml_assets.defs.partitions import daily_check_spec, daily_partitions
from ml_assets.resources.storage import StorageRoot
from ml_assets.resources.tracking import MLflowTracking

MODEL_LINES = ["flight_delay_xgboost", "flight_delay_mlp"]


class PromotionSettings(dg.ConfigurableResource):
    auc_tolerance: float = Field(0.01, description="candidate AUC may trail the champion's by at most this")
    slice_auc_tolerance: float = Field(0.02, description="the same, per important slice (plus the noise allowance)")
    slice_noise_z: float = Field(2.0, description="standard errors of sampling noise allowed per slice")
    min_slice_rows: int = Field(100, description="a slice value with at least this many holdout rows is important")
    max_single_row_p95_ms: float = Field(50.0, description="latency budget")
    max_size_bytes: int = Field(50_000_000, description="model size budget")
    live_auc_tolerance: float = Field(0.05, description="live_auc_drop: live AUC may trail evaluation AUC by this")

    def policy(self):
        from ml_assets.core.promotion import PromotionPolicy

        return PromotionPolicy(self.auc_tolerance, self.slice_auc_tolerance, self.slice_noise_z,
                               self.min_slice_rows, self.max_single_row_p95_ms, self.max_size_bytes)


def _parity_passed(context: dg.AssetExecutionContext, tolerance: float) -> tuple[bool, float | None]:
    """onnx_model D's recorded parity, read from its materialization (it may have run in another run)."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("onnx_model"), asset_partitions=[context.partition_key]),
        limit=1)
    if not records.records:
        return False, None
    value = records.records[0].asset_materialization.metadata.get("parity_max_abs_diff")
    diff = None if value is None else float(value.value)
    return diff is not None and diff <= tolerance, diff


def _line_history(root, line: str) -> list[dict]:
    """features + lineage of every bundle of a line, oldest version first."""
    from ml_assets.core.bundle import LINEAGE_FILE as BUNDLE_LINEAGE, bundle_path, list_bundles

    out = []
    for version in list_bundles(root, line):
        folder = bundle_path(root, line, version)
        out.append({"version": version, **json.loads((folder / BUNDLE_LINEAGE).read_bytes())})
    return out


def _choose_version(root, line: str, candidate: dict) -> tuple[str, str, list[str], bool]:
    """(version, bump, reasons, already_written): an identical model for the same day keeps its version."""
    from ml_assets.core.semver import decide_version

    history = _line_history(root, line)
    for previous in history:
        if previous.get("model_sha256") == candidate["model_sha256"] and previous.get("day") == candidate["day"]:
            return previous["version"], "existing", ["the same model for the same day is already bundled"], True
    decision = decide_version(history[-1] if history else None, candidate)
    return decision.version, decision.bump, list(decision.reasons), False


@dg.asset(
    partitions_def=daily_partitions, group_name="deployment", kinds={"onnx", "mlflow"}, code_version="bundle-v1",
    ins={"onnx_model": dg.AssetIn(input_manager_key="model_io_manager")},
    backfill_policy=dg.BackfillPolicy.multi_run(1),
    check_specs=[daily_check_spec(
        "promotion", asset="deployment_bundle", blocking=True,
        description="the candidate may replace the champion: ONNX parity passed, not worse on the same holdout "
                    "overall and per important slice (within tolerance), latency and size within budget")],
    description="bundles/<model line>/<version>/: model.onnx, features.json, metrics.json, lineage.json, "
                "model_card.md, MANIFEST. Semantic version computed from what changed; registered in MLflow.",
)
def deployment_bundle(context: dg.AssetExecutionContext, onnx_model: dict, flight_features: pl.DataFrame,
                      storage: StorageRoot, mlflow: MLflowTracking, promotion_settings: PromotionSettings,
                      evaluation_settings: EvaluationSettings):
    from ml_assets.core import bundle as B
    from ml_assets.core.evaluation import evaluate, measure_latency
    from ml_assets.core.onnx_export import onnx_session, score_session
    from ml_assets.core.promotion import decide
    from ml_assets.core.semver import model_line
    from ml_assets.core.versioning import bytes_hash, frame_hash

    day = parse_day(context.partition_key)
    root = storage.path()
    onnx_bytes = onnx_model["model.onnx"]
    spec = json.loads(onnx_model["model_spec.json"])
    trained = json.loads(onnx_model[LINEAGE_FILE])
    line = model_line(spec["family"])
    holdout = flight_features.filter(pl.col("date") == day)

    session = onnx_session(onnx_bytes)
    candidate_eval = evaluate(holdout, score_session(session, holdout), spec["threshold"])
    latency = measure_latency(lambda f: score_session(session, f), holdout, single_rows=50, batch_repeats=3)
    # The champion that D's candidate would replace: the one in effect the evening before D.
    champion = C.as_of(C.read_history(root), day - dt.timedelta(days=1))
    champion_eval = None
    if champion is not None:
        served = B.load_bundle(root / champion["bundle"])
        champion_eval = evaluate(holdout, served.score(holdout), served.threshold)
    parity_ok, parity_diff = _parity_passed(context, evaluation_settings.parity_tolerance)
    decision = decide(candidate_eval, champion_eval, parity_passed=parity_ok,
                      latency_p95_ms=latency["single_row_p95_ms"], size_bytes=len(onnx_bytes),
                      policy=promotion_settings.policy())

    candidate = {**trained, "day": day.isoformat(), "model_sha256": bytes_hash(onnx_bytes),
                 "params": trained.get("params", spec.get("params", {}))}
    version, bump, reasons, existed = _choose_version(root, line, candidate)
    metrics = {"holdout_day": day.isoformat(), "overall": candidate_eval["overall"],
               "slices": candidate_eval["slices"], "flagged_slices": candidate_eval["flagged_slices"],
               "calibration": candidate_eval["calibration"], "latency": latency, "size_bytes": len(onnx_bytes),
               "parity_max_abs_diff": parity_diff,
               "champion_on_same_holdout": champion_eval["overall"] if champion_eval else None}
    lineage = {**candidate, "version": version, "model_line": line, "version_bump": bump,
               "version_reasons": reasons, "holdout_data_version": frame_hash(holdout),
               "holdout_rows": holdout.height, "parent_champion": C.pointer(champion)}
    if existed:
        path = B.bundle_path(root, line, version)
    else:
        path = B.write_bundle(root, version, onnx_bytes, spec, metrics, lineage)
    bundle = B.load_bundle(path)  # verifies the MANIFEST of what was just written (or found)
    files = {p.name: p.read_bytes() for p in path.iterdir()}
    registry_version = mlflow.register_bundle(
        line, version, files, run_id=trained["mlflow_run_id"],
        tags={"day": day.isoformat(), "bundle": f"{B.BUNDLES_DIR}/{line}/{version}",
              "promotable": str(decision.promote).lower()})

    comparisons = pl.DataFrame(decision.comparisons)
    relative = f"{B.BUNDLES_DIR}/{line}/{version}"
    yield dg.MaterializeResult(
        data_version=dg.DataVersion(bytes_hash(files[B.MANIFEST_FILE])),
        metadata={
            "version": version, "model_line": line, "bundle": relative, "path": str(path),
            "version_bump": bump, "version_reasons": "; ".join(reasons),
            "registry_version": registry_version, "promote": decision.promote,
            "champion_before": f"{champion['model_line']} {champion['version']}" if champion else "none",
            "holdout_auc": candidate_eval["overall"]["roc_auc"],
            "champion_holdout_auc": champion_eval["overall"]["roc_auc"] if champion_eval else float("nan"),
            "single_row_p95_ms": latency["single_row_p95_ms"], "size_bytes": len(onnx_bytes),
            "manifest": dg.MetadataValue.md(f"```\n{files[B.MANIFEST_FILE].decode()}```"),
            "model_card": dg.MetadataValue.md(bundle.model_card),
        })
    yield dg.AssetCheckResult(check_name="promotion", passed=decision.promote, metadata={
        "decision": "promote" if decision.promote else "keep the champion",
        "reason": decision.reason, "candidate": f"{line} {version}",
        "champion": f"{champion['model_line']} {champion['version']}" if champion else "none (first champion)",
        "comparisons": dg.MetadataValue.md(markdown_table(comparisons, max_rows=200))})
