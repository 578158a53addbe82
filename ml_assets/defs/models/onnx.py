"""onnx_model: the chosen candidate as ONNX, and the proof that it gives the native model's answers.

Parity (max |p_onnx - p_native| on day D's labelled rows) and the single-row latency travel with the output
(``parity.json``), so the bundle and the promotion read them as an input, not from the event log.
"""

import json

import dagster as dg
import polars as pl
from pydantic import Field

from ml_assets.core import families as FAM
from ml_assets.defs.blueprint import MODELS, Blueprint
from ml_assets.defs.days import DayResult, Days, Refused, emit_days, refused_upstream, refusing_spec
from ml_assets.defs.models.candidates import LINEAGE_FILE, model_version
from ml_assets.defs.models.evaluation import holdout

PARITY_FILE = "parity.json"
LATENCY_FILE = "latency.json"  # measured, so it differs from run to run: not part of the data version
PARITY_TOLERANCE = 1e-5  # the same as core.onnx_export.PARITY_TOLERANCE (not imported: onnxruntime is heavy)


class EvaluationSettings(dg.ConfigurableResource):
    parity_tolerance: float = Field(PARITY_TOLERANCE, description="onnx_parity: max |p_onnx - p_native|")


def export_day(day: str, chosen: str, files: dict[str, bytes], rows: pl.DataFrame, tolerance: float) -> DayResult:
    from ml_assets.core import onnx_export as X
    from ml_assets.core.evaluation import measure_latency

    model = FAM.load(files)
    onnx_bytes = FAM.get(chosen).export_onnx(model)
    session = X.onnx_session(onnx_bytes)
    result = X.parity(FAM.get(chosen).predict(model, rows), X.score_session(session, rows), tol=tolerance)
    latency = measure_latency(lambda f: X.score_session(session, f), rows, single_rows=30, batch_repeats=2)
    out = {"model.onnx": onnx_bytes, FAM.SPEC_FILE: files[FAM.SPEC_FILE], LINEAGE_FILE: files[LINEAGE_FILE],
           PARITY_FILE: json.dumps({**result, "family": chosen}, indent=1, default=float).encode(),
           LATENCY_FILE: json.dumps(latency, indent=1, default=float).encode()}
    check = dg.AssetCheckResult(check_name="onnx_parity", passed=bool(result["passed"]),
                                description=result.get("reason"),
                                metadata={"max_abs_diff": float(result["max_abs_diff"]), "tolerance": tolerance,
                                          "rows": result["rows"], "family": chosen})
    return DayResult(out, {"family": chosen, "onnx_bytes": len(onnx_bytes),
                           "parity_max_abs_diff": float(result["max_abs_diff"]), "parity_rows": result["rows"],
                           "single_row_p95_ms": round(latency["single_row_p95_ms"], 3)}, [check])


def build(bp: Blueprint) -> list:
    key = bp.key("onnx_model")
    ins = {f: dg.AssetIn(bp.candidate(f), input_manager_key="model_io_manager") for f in bp.families}
    ins["evaluation"] = dg.AssetIn(bp.key("model_evaluation"))
    ins["labelled"] = dg.AssetIn(bp.key("labelled_features"))

    @dg.asset(key=key, partitions_def=bp.partitions, group_name=MODELS, kinds={"onnx"}, ins=ins,
              io_manager_key="model_io_manager", code_version="onnx-v2", owners=list(bp.owners),
              backfill_policy=dg.BackfillPolicy.single_run(), tags=bp.tags(layer="models"),
              check_specs=[refusing_spec("onnx_parity", asset=key, partitions_def=bp.partitions,
                                         description="onnxruntime gives the native model's answers on the holdout "
                                                     "(max |diff| <= tolerance, on at least one row)")],
              description="The chosen candidate as ONNX over the feature columns (encodings inside the graph), with "
                          "its parity proof and latency. Files: model.onnx, model_spec.json, lineage.json, parity.json, latency.json.")
    def onnx_model(context: dg.AssetExecutionContext, evaluation: Days, labelled: Days,
                   evaluation_settings: EvaluationSettings, **candidates):
        results = {}
        for day in context.partition_keys:
            refused = refused_upstream(day, model_evaluation=evaluation, labelled=labelled)
            if refused:
                results[day] = DayResult(refused)
                continue
            chosen = evaluation[day]["chosen"][0]
            files = candidates[chosen].day(day)
            if isinstance(files, Refused):
                results[day] = DayResult(Refused(f"upstream {files.reason}"))
                continue
            results[day] = export_day(day, chosen, files, holdout(bp, labelled[day]),
                                      evaluation_settings.parity_tolerance)
        yield from emit_days(context, results, version_of=model_version)

    return [onnx_model]
