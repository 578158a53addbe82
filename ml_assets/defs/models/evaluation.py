"""model_evaluation: every candidate of day D judged on D's labelled rows (never seen in training), beside a
trivial baseline; the best qualified candidate is chosen, and the blocking-in-spirit ``model_sanity`` check refuses
the day when even the chosen one is not significantly better than chance or is significantly worse than the
baseline (``core.decisions.sanity``).

The value is the holdout scores: the flight key, the label, every candidate's probability and the baseline's,
and the chosen family; the champion step pairs them with the champion's scores on the same rows.
"""

import dagster as dg
import numpy as np
import polars as pl

from ml_assets.core import decisions
from ml_assets.core import families as FAM
from ml_assets.core.evaluation import evaluate, evaluation_plots, report_markdown
from ml_assets.core.features import labelled_rows
from ml_assets.defs.blueprint import MODELS, Blueprint
from ml_assets.defs.days import DayResult, Days, Refused, emit_days, refused_upstream, refusing_spec
from ml_assets.defs.metadata import numbers, png, table
from ml_assets.resources.tracking import MLflowTracking

SHOWN = ["candidate", "rows", "roc_auc", "auc_ci_low", "auc_ci_high", "pr_auc", "log_loss", "brier", "ece",
         "precision", "recall", "f1", "threshold", "status"]


def score_column(family: str) -> str:
    return f"p_{family}"


def holdout(bp: Blueprint, labelled: pl.DataFrame) -> pl.DataFrame:
    return labelled_rows(labelled, bp.spec)


def evaluate_day(bp: Blueprint, day: str, candidates: dict[str, object], labelled: pl.DataFrame, plots: bool,
                 mlflow: MLflowTracking | None) -> DayResult:
    spec = bp.spec
    rows = holdout(bp, labelled)
    y = rows[spec.label.name].cast(pl.Float64).to_numpy()
    if y.size == 0 or y.min() == y.max():  # a day of one class (kept for training): no AUC to judge on
        return DayResult(Refused(f"model_evaluation {day}: {y.size} labelled rows of {len(set(y.tolist()))} "
                                 f"class(es): no AUC to judge the candidates on"), {"holdout_rows": int(y.size)})
    slices = {s.name: s.expression for s in spec.slices}
    baseline = rows.select(pl.sql_expr(spec.baseline.expression).cast(pl.Float64)).to_series().fill_null(0).to_numpy()
    table_rows, scores, results, disqualified = [], {}, {}, {}
    for family, files in candidates.items():
        if isinstance(files, Refused):
            disqualified[family] = files.reason
            table_rows.append({"candidate": family, "status": f"disqualified: {files.reason}"})
            continue
        model = FAM.load(files)
        p = FAM.get(family).predict(model, rows)
        result = evaluate(rows, p, model.spec["threshold"], spec.label.name, slices)
        scores[family], results[family] = p, result
        table_rows.append({"candidate": family, **result["overall"], "status": "qualified"})
        if mlflow is not None:
            import json

            run_id = json.loads(files["lineage.json"])["mlflow_run_id"]
            mlflow.log_to_run(run_id, {f"holdout_{k}": v for k, v in result["overall"].items()})
    aucs = {f: results[f]["overall"]["roc_auc"] for f in results}
    chosen = decisions.choose({f: aucs.get(f, float("nan")) for f in candidates}, disqualified)
    if chosen is None:
        return DayResult(Refused(f"model_evaluation {day}: no qualified candidate ("
                                 + "; ".join(f"{f}: {r}" for f, r in disqualified.items()) + ")"),
                         {"comparison": table(pl.DataFrame(table_rows))})
    verdict = decisions.sanity(y, scores[chosen], baseline)
    frame = rows.select(*spec.features.key, spec.label.name).with_columns(
        *(pl.Series(score_column(f), p) for f, p in scores.items()), pl.Series("p_baseline", baseline),
        chosen=pl.lit(chosen))
    comparison = pl.DataFrame(table_rows + [{"candidate": f"baseline ({spec.baseline.description})",
                                             **evaluate(rows, baseline, None, spec.label.name)["overall"],
                                             "status": "reference"}], strict=False)
    metadata = {"dagster/row_count": frame.height, "chosen": chosen, "holdout_rows": frame.height,
                **numbers({f"{f}_auc": a for f, a in aucs.items()}),
                "comparison": table(comparison.select([c for c in SHOWN if c in comparison.columns])),
                "report": dg.MetadataValue.md(report_markdown(results[chosen], f"{chosen} on {day}"))}
    if plots:
        metadata.update({f"{name}_plot": png(data, name) for name, data in
                         evaluation_plots(rows, scores[chosen], results[chosen], spec.label.name).items()})
    check = dg.AssetCheckResult(
        check_name="model_sanity", passed=verdict["passed"], description=verdict["reason"],
        metadata={k: (round(v, 4) if isinstance(v, float) else v) for k, v in verdict.items() if k != "passed"}
        | {"chosen": chosen})
    return DayResult(frame, metadata, [check])


def build(bp: Blueprint) -> list:
    key = bp.key("model_evaluation")
    ins = {f: dg.AssetIn(bp.candidate(f), input_manager_key="model_io_manager") for f in bp.families}
    ins["labelled"] = dg.AssetIn(bp.key("labelled_features"))

    @dg.asset(key=key, partitions_def=bp.partitions, group_name=MODELS, kinds={"mlflow"}, ins=ins,
              code_version="evaluation-v3", backfill_policy=dg.BackfillPolicy.single_run(), owners=list(bp.owners),
              tags=bp.tags(layer="models"),
              check_specs=[refusing_spec("model_sanity", asset=key, partitions_def=bp.partitions,
                                         description="the chosen candidate is significantly better than chance and "
                                                     "not significantly worse than the baseline (paired DeLong)")],
              description="Every candidate scored on day D's labelled rows (seen by none in training), with 95% "
                          "intervals, beside the baseline; the best candidate that passed its behavioral checks is "
                          "chosen. Value: the holdout scores (key, label, each candidate's and the baseline's).")
    def model_evaluation(context: dg.AssetExecutionContext, labelled: Days, mlflow: MLflowTracking, **candidates):
        results = {}
        last = context.partition_keys[-1]
        for day in context.partition_keys:
            refused = refused_upstream(day, labelled=labelled)
            if refused:
                results[day] = DayResult(refused)
                continue
            day_candidates = {f: candidates[f].day(day) for f in bp.families}
            results[day] = evaluate_day(bp, day, day_candidates, labelled[day], plots=day == last, mlflow=mlflow)
        yield from emit_days(context, results)

    return [model_evaluation]
