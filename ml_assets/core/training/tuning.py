"""Optional hyperparameter search for the XGBoost candidate (off by default: ``n_trials=0``).

Seeded TPE over a small space; the objective is validation log loss. The defaults are enqueued as the first
trial, so a search can only return parameters at least as good as the defaults on validation. With a
timeout the number of finished trials depends on machine speed, so only ``n_trials`` alone is reproducible.
"""
from __future__ import annotations

from typing import Any

import optuna
import polars as pl

from ml_assets.core.evaluation import log_loss
from ml_assets.core.features import LABEL
from ml_assets.core.training.xgb import DEFAULT_PARAMS, predict_xgboost, train_xgboost

TUNED_KEYS = ["max_depth", "learning_rate", "min_child_weight", "subsample", "colsample_bytree", "reg_lambda"]


def _suggest(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "max_depth": trial.suggest_int("max_depth", 3, 9),
        "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.3, log=True),
        "min_child_weight": trial.suggest_float("min_child_weight", 0.5, 20.0, log=True),
        "subsample": trial.suggest_float("subsample", 0.6, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 0.1, 20.0, log=True),
    }


def tune_xgboost(
    train: pl.DataFrame,
    valid: pl.DataFrame,
    n_trials: int = 0,
    timeout_seconds: float | None = None,
    seed: int = 0,
    nthread: int = 2,
) -> dict[str, Any]:
    """Best parameters found (a full parameter dict for ``train_xgboost``); the defaults when not tuning."""
    if n_trials <= 0 or valid.height == 0:
        return dict(DEFAULT_PARAMS)
    y_valid = valid.get_column(LABEL).cast(pl.Float64).to_numpy()

    def objective(trial: optuna.Trial) -> float:
        params = {**DEFAULT_PARAMS, **_suggest(trial)}
        model = train_xgboost(train, valid, params=params, seed=seed, nthread=nthread)
        return log_loss(y_valid, predict_xgboost(model, valid, nthread=nthread))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial({k: DEFAULT_PARAMS[k] for k in TUNED_KEYS})
    study.optimize(objective, n_trials=n_trials, timeout=timeout_seconds)
    return {**DEFAULT_PARAMS, **study.best_params}
