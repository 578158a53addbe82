"""features (what is known the evening before D) and labelled_features (the same rows with D's outcome).

``features`` D joins D's events with the context sources, the reference tables and the delay history of
D-1-lag; it never reads an outcome. ``labelled_features`` D attaches the label once D's outcomes have landed:
training, evaluation and live performance read it.
"""

import dagster as dg
import polars as pl

from ml_assets.core import features as F
from ml_assets.core import schemas
from ml_assets.core.dates import parse_day
from ml_assets.core.profile import label_rate
from ml_assets.defs.blueprint import DATA, Blueprint, day_offset, window
from ml_assets.defs.days import DayResult, Days, Refused, day_check_spec, emit_days, refused_upstream, refusing_spec
from ml_assets.defs.metadata import contract_check, frame_metadata


def _descriptions(bp: Blueprint) -> dict[str, str]:
    out = {name: c.description for s in bp.spec.sources.values() for name, c in s.columns.items() if c.description}
    out.update({name: f"SQL: {expr}" for name, expr in bp.spec.features.derived.items()})
    out.update({c: "realized rate as of the evening before (delay_history)" for c in bp.spec.history_columns})
    return out


def _feature_rules(bp: Blueprint, frame: pl.DataFrame, labelled: bool) -> dict:
    leaked = [c for c in bp.spec.outcome_columns if c in frame.columns]
    return {"schema": schemas.schema_violations(frame, schemas.feature_schema(bp.spec, labelled)),
            "no_outcome_leak": [schemas.Violation("outcome_column_in_features", c, frame.height) for c in leaked],
            "unique_key": schemas.duplicate_key_violations(frame, bp.spec.features.key),
            "non_empty": schemas.empty_violations(frame)}


def _feature_specs(bp: Blueprint, key: dg.AssetKey, extra: str = "") -> list[dg.AssetCheckSpec]:
    return [refusing_spec("contract", asset=key, partitions_def=bp.partitions,
                          description="columns, types and ranges; no outcome column; one row per "
                                      f"{', '.join(bp.spec.features.key)}; the day has rows{extra}")]


def features_asset(bp: Blueprint) -> dg.AssetsDefinition:
    spec = bp.spec
    key = bp.key("features")
    context_sources = [n for n, s in spec.sources.items() if s.role == "context"]
    ins = {"events": dg.AssetIn(bp.raw(spec.events_name)),
           **{n: dg.AssetIn(bp.raw(n)) for n in context_sources},
           **{n: dg.AssetIn(bp.key(n)) for n in spec.reference}}
    if spec.history is not None:
        ins["history"] = dg.AssetIn(bp.key("delay_history"),
                                    partition_mapping=window(bp.prediction_offset, bp.prediction_offset))

    @dg.asset(key=key, partitions_def=bp.partitions, group_name=DATA, kinds={"polars", "parquet"}, ins=ins,
              code_version=F.feature_code_version(spec), check_specs=_feature_specs(bp, key),
              backfill_policy=dg.BackfillPolicy.single_run(), owners=list(bp.owners), tags=bp.tags(layer="features"),
              description=f"One row per event of day D with only what is known the evening before: "
                          f"{', '.join(spec.schedule_sources)}, {', '.join(spec.reference) or 'no reference data'}"
                          f"{' and the delay history of D-' + str(1 + bp.outcome_lag) if spec.history else ''}. "
                          f"No outcome, no label.")
    def features(context: dg.AssetExecutionContext, **inputs):
        descriptions = _descriptions(bp)
        results = {}
        for day in context.partition_keys:
            daily = {n: inputs[n] for n in ["events", *context_sources]}
            refs = {n: inputs[n] for n in spec.reference}
            history = None
            if spec.history is not None:
                as_of = day_offset(day, bp.prediction_offset)
                history = inputs["history"].day(as_of) if as_of >= spec.first_day.isoformat() else None
            refused = refused_upstream(day, **daily) or refused_upstream(day, **refs) or (
                refused_upstream(day, history=history) if history is not None else None)
            if refused:
                results[day] = DayResult(refused)
                continue
            sources = {spec.events_name: inputs["events"][day], **{n: inputs[n][day] for n in context_sources},
                       **refs}
            frame = F.build_features(spec, sources, history)
            results[day] = DayResult(frame, {**frame_metadata(frame, descriptions),
                                             "feature_code_version": F.feature_code_version(spec),
                                             "history_as_of": as_of if history is not None else "none (feed start)"},
                                     [contract_check(_feature_rules(bp, frame, labelled=False))])
        yield from emit_days(context, results)

    return features


def labelled_asset(bp: Blueprint) -> dg.AssetsDefinition:
    spec = bp.spec
    key = bp.key("labelled_features")
    label = spec.label.name
    specs = _feature_specs(bp, key, "; some labelled rows") + [
        day_check_spec("label_classes", asset=key, partitions_def=bp.partitions,
                       description="labelled rows of both classes (warns: a day of one class, e.g. a dry day for "
                                   "rain, trains but no AUC can be judged on it)")]

    @dg.asset(key=key, partitions_def=bp.partitions, group_name=DATA, kinds={"polars", "parquet"},
              ins={"features": dg.AssetIn(bp.key("features")), "outcomes": dg.AssetIn(bp.raw(spec.outcomes_name))},
              code_version=f"labelled-v1-{F.feature_code_version(spec)}", check_specs=specs,
              backfill_policy=dg.BackfillPolicy.single_run(), owners=list(bp.owners), tags=bp.tags(layer="features"),
              description=f"features of D with the label {label} ({spec.label.positive}), once D's outcomes have "
                          f"landed ({bp.outcome_lag} day(s) later). Events without an outcome stay unlabelled.")
    def labelled_features(context: dg.AssetExecutionContext, features: Days, outcomes: Days):
        results = {}
        for day in context.partition_keys:
            refused = refused_upstream(day, features=features, outcomes=outcomes)
            if refused:
                results[day] = DayResult(refused)
                continue
            frame = F.attach_label(spec, features[day], outcomes[day])
            labels = frame[label].drop_nulls()
            both = labels.n_unique() == 2
            none = [schemas.Violation("some_labelled_rows", label, 0, ["no event has an outcome"])] \
                if labels.is_empty() else []
            # One class is a real day (no rain at all), kept for training and monitoring; no label at all is not.
            checks = [contract_check({**_feature_rules(bp, frame, labelled=True), "has_labels": none}),
                      dg.AssetCheckResult(check_name="label_classes", passed=both, severity=dg.AssetCheckSeverity.WARN,
                                          metadata={"labelled_rows": labels.len(), "positives": int(labels.sum() or 0)},
                                          description=None if both else f"{labels.len()} labelled rows, "
                                                                        f"{labels.n_unique()} class(es)")]
            rate = label_rate(frame, label)
            results[day] = DayResult(frame, {**frame_metadata(frame), "labelled_rows": labels.len(),
                                             "positive_share": rate if rate is not None else float("nan")}, checks)
        yield from emit_days(context, results)

    return labelled_features


def build(bp: Blueprint) -> list:
    return [features_asset(bp), labelled_asset(bp)]
