"""<family>_model: one candidate per registered family (``core.families``), trained every day on its training_set.

Each is an MLflow run (params, out-of-sample validation metrics and which model they belong to, training-data
version and span, code versions, git commit, the Dagster run) and carries behavioral checks computed on its
validation rows; the refusing ones (``core.behavior.REFUSING``) disqualify the candidate for the day. A model's
data version is the hash of its model files and spec (not of its MLflow run id): a retrain on the same data
gives the same version and nothing downstream runs again.
"""

import json

import dagster as dg
import polars as pl
from pydantic import Field

from ml_assets.core import behavior
from ml_assets.core import families as FAM
from ml_assets.core.versioning import files_hash, frame_hash
from ml_assets.defs.blueprint import MODELS, Blueprint
from ml_assets.defs.days import DayResult, Days, day_check_spec, emit_days, refused_upstream, refusing_spec
from ml_assets.defs.metadata import numbers, table
from ml_assets.resources.tracking import MLflowTracking, git_commit

LINEAGE_FILE = "lineage.json"
BEHAVIOR_FILE = "behavior.json"
# Differ from run to run (MLflow run id, measured latency): not part of a model's data version.
VOLATILE = {LINEAGE_FILE, "latency.json"}


class CandidateConfig(dg.Config):
    seed: int = 0
    params: dict = Field(default_factory=dict, description="hyperparameters over the family's defaults")
    tune_trials: int = Field(0, description="optuna trials of a search of this very day (out of sample), over the "
                                            "scheduled one of <family>_params; 0: no extra search")
    tune_seconds: float = Field(60.0, description="that search's time budget")
    track_energy: bool = Field(False, description="estimate training energy/carbon with codecarbon (offline)")


def model_version(value) -> str:
    """Model files minus their run-specific lineage: equal models get equal data versions."""
    from ml_assets.core.versioning import content_hash

    if isinstance(value, dict) and value and all(isinstance(v, bytes) for v in value.values()):
        return files_hash({k: v for k, v in value.items() if k not in VOLATILE})
    return content_hash(value)


def _specs(bp: Blueprint, key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    kw = {"asset": key, "partitions_def": bp.partitions}
    declared = behavior.checks_declared(bp.spec)
    refusing = "; ".join(t for n, t in declared.items() if n in behavior.REFUSING)
    warning = "; ".join(t for n, t in declared.items() if n not in behavior.REFUSING)
    return [refusing_spec("behavior", description=f"{refusing} (a failure disqualifies the candidate)", **kw),
            *([day_check_spec("behavior_warnings", description=f"{warning} (warns)", **kw)] if warning else [])]


def _behavior_checks(results: list[dict]) -> list[dg.AssetCheckResult]:
    """The refusing rules as one check, the warning rules as another; each lists what was tried and the numbers."""
    out = []
    for name, rules, severity in (("behavior", [r for r in results if r["check"] in behavior.REFUSING],
                                   dg.AssetCheckSeverity.ERROR),
                                  ("behavior_warnings", [r for r in results if r["check"] not in behavior.REFUSING],
                                   dg.AssetCheckSeverity.WARN)):
        if not rules:
            continue
        failed = [r["check"] for r in rules if not r["passed"]]
        out.append(dg.AssetCheckResult(
            check_name=name, passed=not failed, severity=severity,
            description=f"failed: {', '.join(failed)}" if failed else None,
            metadata={"tried": table(pl.DataFrame([{"rule": r["check"], "passed": r["passed"], "rows": r["rows"],
                                                     "tried": str(r["tried"])} for r in rules])),
                      "details": dg.MetadataValue.json(json.loads(json.dumps(rules, default=float)))}))
    return out


def model_inputs(bp: Blueprint) -> FAM.ModelInputs:
    s = bp.spec
    return FAM.ModelInputs(list(s.features.categorical), [*s.features.numeric, *s.history_columns], s.label.name,
                           s.prediction, monotone=s.monotone_inputs)


def train_day(bp: Blueprint, family: str, training: pl.DataFrame, config: CandidateConfig, day: str,
              mlflow: MLflowTracking, run_tags: dict[str, str], tuned: tuple[dict, dict] = ({}, {})) -> DayResult:
    """``tuned``: the scheduled search's parameters and where they came from (``params.params_for``)."""
    from ml_assets.core.energy import energy_estimate
    from ml_assets.core.tuning import WINDOW_PARAM, recent_days, search as run_search

    fam = FAM.get(family)
    recipe = bp.spec.models.get(family, {})  # the dataset's recipe, under the search's and the run's overrides
    params, tuned_from = {**recipe, **tuned[0], **config.params}, dict(tuned[1])
    search = tuned_from.pop("search", {"trials": 0})
    with energy_estimate(config.track_energy) as energy:
        if config.tune_trials > 0:
            found = run_search(fam, training.drop("split"), model_inputs(bp), config.tune_trials, config.tune_seconds,
                               config.seed, base_params=recipe)
            params, search, tuned_from = {**found["params"], **config.params}, found["search"], {"params_from": day}
        # A searched window length: train on the most recent days of the training set only.
        training = recent_days(training, params.pop(WINDOW_PARAM, None))
        train = training.filter(pl.col("split") == "train").drop("split")
        valid = training.filter(pl.col("split") == "valid").drop("split")
        model = fam.train(train, valid, model_inputs(bp), params=params or None, seed=config.seed)
    files = fam.save(model)
    results = behavior.run_behavior_checks(lambda f: fam.predict(model, f), valid, bp.spec, seed=config.seed)
    files[BEHAVIOR_FILE] = json.dumps(results, indent=1, default=float).encode()
    data_version = frame_hash(training)
    validation = model.spec.get("validation", {})
    lineage = {"family": family, "partition": day, "training_data_version": data_version,
               "date_span": [str(training["date"].min()), str(training["date"].max())],
               "train_rows": train.height, "valid_rows": valid.height, "dataset": bp.spec.name,
               "model_code_version": FAM.code_version(family), "params": model.spec["params"], "seed": config.seed,
               "git_commit": git_commit(), "training_energy": energy, "search": search,
               "params_from": tuned_from.get("params_from", "defaults")}
    metrics = {f"valid_{k}": v for k, v in validation.items() if isinstance(v, (int, float))}
    metrics.update({f"search_{k}": v for k, v in search.items() if isinstance(v, (int, float))})
    run_id, url = mlflow.log_run(
        run_name=f"{family}-{day}", params={**model.spec["params"], "seed": config.seed}, metrics=metrics,
        tags={**{k: str(v) for k, v in lineage.items() if not isinstance(v, (dict, list))},
              "validation_metrics_model": str(validation.get("model", "")), **run_tags},
        artifacts={k: v for k, v in files.items()}, dataset=(training, data_version, f"{bp.spec.name}-training_set-{day}"))
    files[LINEAGE_FILE] = json.dumps({**lineage, "mlflow_run_id": run_id}, indent=1).encode()
    checks = _behavior_checks(results)
    metadata = {"family": family, "mlflow_run": dg.MetadataValue.url(url), "mlflow_run_id": run_id,
                "params_from": lineage["params_from"],
                "training_data_version": data_version, "date_span": " .. ".join(lineage["date_span"]),
                "train_rows": train.height, "valid_rows": valid.height, "threshold": round(model.spec["threshold"], 4),
                "validation_metrics_model": str(validation.get("model", "")), **numbers(metrics)}
    return DayResult(files, metadata, checks)


def recipe_version(bp: Blueprint, family: str) -> str:
    """The family's code and the dataset's recipe for it: a changed recipe retrains (and re-searches)."""
    import hashlib

    recipe = json.dumps(bp.spec.models.get(family, {}), sort_keys=True).encode()
    return f"{FAM.code_version(family)}-{hashlib.sha256(recipe).hexdigest()[:8]}"


def candidate_asset(bp: Blueprint, family: str) -> dg.AssetsDefinition:
    from ml_assets.defs.models import params as P

    key = bp.candidate(family)
    tuned = family in bp.tuned_families
    span = max(1, 2 * bp.tune_every_days)
    decorate = dg.asset(
        key=key, partitions_def=bp.partitions, group_name=MODELS, kinds={FAM.kind(family)},
        io_manager_key="model_io_manager", code_version=recipe_version(bp, family),
        ins={"training_set": dg.AssetIn(bp.key("training_set")),
             **({"searches": P.params_input(bp, family)} if tuned else {})},
        check_specs=_specs(bp, key), backfill_policy=dg.BackfillPolicy.single_run(), owners=list(bp.owners),
        tags=bp.tags(layer="models", family=family),
        description=f"The {family} candidate of day D: {FAM.describe(family)}"
                    f"{', with the newest scheduled search of ' + bp.params(family).to_user_string() if tuned else ''}."
                    f" Files in open formats (model_spec.json and the model's own), behavior.json, lineage.json.")

    def days(context, training_set: Days, config: CandidateConfig, mlflow: MLflowTracking, searches: Days | None):
        tags = {"dagster_run_id": context.run_id, "dagster_run": mlflow.dagster_run_url(context.run_id)}
        results = {}
        for day in context.partition_keys:
            refused = refused_upstream(day, training_set=training_set)
            found = P.params_for(searches, day, span) if searches is not None else ({}, {})
            results[day] = DayResult(refused) if refused else train_day(
                bp, family, training_set[day], config, day, mlflow, tags, found)
        yield from emit_days(context, results, version_of=model_version)

    if tuned:
        @decorate
        def _tuned(context: dg.AssetExecutionContext, training_set: Days, searches: Days, config: CandidateConfig,
                   mlflow: MLflowTracking):
            yield from days(context, training_set, config, mlflow, searches)

        return _tuned

    @decorate
    def _candidate(context: dg.AssetExecutionContext, training_set: Days, config: CandidateConfig,
                   mlflow: MLflowTracking):
        yield from days(context, training_set, config, mlflow, None)

    return _candidate


def build(bp: Blueprint) -> list:
    return [candidate_asset(bp, f) for f in bp.families]
