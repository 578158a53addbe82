"""xgboost_model and torch_model: candidates trained every day on that day's training_set.

Each is an MLflow run (params, validation metrics, training-data version and span, code version, git
commit, model files) and carries behavioral checks computed on its validation rows.
"""
import json

import dagster as dg
import polars as pl
from pydantic import Field

from ml_assets.core.features import FEATURE_CODE_VERSION, LABEL
from ml_assets.core.versioning import files_hash, frame_hash
from ml_assets.defs.partitions import daily_check_spec, daily_partitions
from ml_assets.resources.tracking import MLflowTracking, git_commit

MODEL_CODE_VERSION = {"xgboost": "xgboost-v1", "mlp": "mlp-v1"}
LINEAGE_FILE = "lineage.json"
BEHAVIOR_CHECKS = {
    "invariance": "changing tail number / flight number does not move the prediction",
    "directional": "worse origin weather does not lower the mean late probability",
    "robustness": "tiny numeric noise gives tiny changes",
    "edge_inputs": "unknown carrier, missing weather: finite probabilities in [0, 1] (blocking)",
}


class CandidateConfig(dg.Config):
    seed: int = 0
    params: dict = Field(default_factory=dict, description="hyperparameters over the family's defaults")
    tune_trials: int = Field(0, description="optuna trials (xgboost); 0 = no tuning")
    tune_seconds: float = Field(120.0, description="optuna time budget (xgboost)")
    track_energy: bool = Field(True, description="estimate training energy/carbon with codecarbon (offline)")


def _check_specs(asset: str) -> list[dg.AssetCheckSpec]:
    return [daily_check_spec(f"behavior_{name}", asset=asset, description=text, blocking=(name == "edge_inputs"))
            for name, text in BEHAVIOR_CHECKS.items()]


def _train_candidate(context: dg.AssetExecutionContext, family: str, training_set: pl.DataFrame,
                     config: CandidateConfig, mlflow: MLflowTracking):
    from ml_assets.core import behavior
    from ml_assets.core.energy import energy_estimate
    from ml_assets.core.evaluation import classification_metrics
    from ml_assets.core.training import families

    train = training_set.filter(pl.col("split") == "train").drop("split")
    valid = training_set.filter(pl.col("split") == "valid").drop("split")
    params = dict(config.params)
    with energy_estimate(config.track_energy) as energy:
        if family == "xgboost" and config.tune_trials > 0:
            from ml_assets.core.training.tuning import tune_xgboost

            params = tune_xgboost(train, valid, n_trials=config.tune_trials, timeout_seconds=config.tune_seconds,
                                  seed=config.seed)
        model = families.train(family, train, valid, params or None, seed=config.seed)
    files = families.save(model)
    p_valid = families.predict(model, valid)
    metrics = {f"valid_{k}": v for k, v in classification_metrics(
        valid[LABEL].cast(pl.Int8).to_numpy(), p_valid, model.spec["threshold"]).items()}
    days = training_set["date"].unique().sort()
    data_version = frame_hash(training_set)
    lineage = {
        "family": family, "partition": context.partition_key, "training_data_version": data_version,
        "date_span": [str(days.min()), str(days.max())], "train_rows": train.height, "valid_rows": valid.height,
        "feature_code_version": FEATURE_CODE_VERSION, "model_code_version": MODEL_CODE_VERSION[family],
        "params": model.spec["params"], "seed": config.seed, "git_commit": git_commit(), "training_energy": energy,
    }
    run_id, url = mlflow.log_run(
        run_name=f"{family}-{context.partition_key}", params={**model.spec["params"], "seed": config.seed},
        metrics=metrics, tags={k: str(v) for k, v in lineage.items() if not isinstance(v, dict)}, artifacts=files)
    files[LINEAGE_FILE] = json.dumps({**lineage, "mlflow_run_id": run_id}, indent=1).encode()
    yield dg.Output(files, data_version=dg.DataVersion(files_hash(files)),
                    metadata={
        "family": family, "mlflow_run": dg.MetadataValue.url(url), "mlflow_run_id": run_id,
        "training_data_version": data_version, "date_span": f"{days.min()}..{days.max()}",
        "train_rows": train.height, "valid_rows": valid.height, "threshold": model.spec["threshold"],
        **{k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))},
    })
    for result in behavior.run_behavior_checks(lambda f: families.predict(model, f), valid, seed=config.seed):
        name = result.pop("check")
        passed = result.pop("passed")
        yield dg.AssetCheckResult(
            check_name=f"behavior_{name}", passed=passed,
            severity=dg.AssetCheckSeverity.ERROR if name == "edge_inputs" else dg.AssetCheckSeverity.WARN,
            metadata={"tried": str(result.pop("tried")),
                      "details": dg.MetadataValue.json(json.loads(json.dumps(result, default=str)))})


@dg.asset(partitions_def=daily_partitions, group_name="models", kinds={"xgboost"},
          io_manager_key="model_io_manager", code_version=MODEL_CODE_VERSION["xgboost"],
          check_specs=_check_specs("xgboost_model"), backfill_policy=dg.BackfillPolicy.multi_run(1),
          description="Gradient-boosted trees (ordinal-coded categoricals, history late rates), early-stopped "
                      "on the validation days. Files: model.ubj, model_spec.json, lineage.json.")
def xgboost_model(context: dg.AssetExecutionContext, training_set: pl.DataFrame, config: CandidateConfig,
                  mlflow: MLflowTracking):
    yield from _train_candidate(context, "xgboost", training_set, config, mlflow)


@dg.asset(partitions_def=daily_partitions, group_name="models", kinds={"pytorch"},
          io_manager_key="model_io_manager", code_version=MODEL_CODE_VERSION["mlp"],
          check_specs=_check_specs("torch_model"), backfill_policy=dg.BackfillPolicy.multi_run(1),
          description="PyTorch MLP: embeddings for categoricals, standardized numerics with missing flags, "
                      "early stopping on validation log loss. Files: model.pt (state_dict), model_spec.json.")
def torch_model(context: dg.AssetExecutionContext, training_set: pl.DataFrame, config: CandidateConfig,
                mlflow: MLflowTracking):
    yield from _train_candidate(context, "mlp", training_set, config, mlflow)
