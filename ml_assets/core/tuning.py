"""Hyperparameter search within a budget, with an out-of-sample objective.

Each trial fits the family on the training split only (no refit on the window) and is scored by log loss on the
validation days it never saw; the defaults are the first trial, so a search can only return parameters at least
as good as the defaults there. The chosen parameters are then used by the normal fit (which refits on the whole
window when the family does). Seeded TPE: with ``n_trials`` alone the result is reproducible; a time budget makes
the number of finished trials depend on the machine.
"""
from __future__ import annotations

from typing import Any

import polars as pl

from ml_assets.core.evaluation import log_loss
from ml_assets.core.families import Family, ModelInputs, labels


def tune(family: Family, train: pl.DataFrame, valid: pl.DataFrame, inputs: ModelInputs, n_trials: int,
         timeout_seconds: float | None = None, seed: int = 0) -> dict[str, Any]:
    """The best parameters found and how they were found (``search``), or the defaults when not tunable."""
    if family.tune_space is None or n_trials <= 0 or valid.height == 0:
        return {"params": dict(family.default_params), "search": {"trials": 0, "reason": "no search"}}
    import optuna

    y_valid = labels(valid, inputs.label)
    defaults = dict(family.default_params)

    def objective(trial: optuna.Trial) -> float:
        params = {**defaults, **family.tune_space(trial), "refit_on_window": False}
        model = family.train(train, valid, inputs, params=params, seed=seed)
        return log_loss(y_valid, family.predict(model, valid))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial({k: defaults[k] for k in _tuned_keys(family) if k in defaults})
    study.optimize(objective, n_trials=n_trials, timeout=timeout_seconds)
    return {"params": {**defaults, **study.best_params},
            "search": {"trials": len(study.trials), "best_valid_log_loss": study.best_value,
                       "default_valid_log_loss": study.trials[0].value, "objective": "validation log loss of the "
                       "train-split fit (out of sample)"}}


def _tuned_keys(family: Family) -> list[str]:
    """The parameter names the family's search space suggests (read by calling it with a recorder)."""
    names: list[str] = []

    class Recorder:
        def __getattr__(self, _method):
            def suggest(name, low=None, *args, **kwargs):
                names.append(name)
                return low
            return suggest

    family.tune_space(Recorder())
    return names
