"""Hyperparameter search within a budget, judged out of sample the way the deployed model is judged.

``search`` splits a training window by time: the last ``validation_days`` days validate, the earlier ones train.
Each trial fits the family on the training days only (no refit), with the trial's parameters and training window
length (the most recent N days; ``window_choices``), and scores the validation days by their mean daily AUC (the
figure the champion is measured by). The defaults are the first trial.

Picking the best of several noisy trials flatters the winner, so the best trial is adopted only when it beats the
defaults, paired day by day on the same validation days, by more than ``adopt_se`` standard errors of the per-day
differences; otherwise the defaults stay. Seeded TPE: with ``n_trials`` alone a search is reproducible; a time
budget makes the number of finished trials depend on the machine (both are recorded).
"""
from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from ml_assets.core.evaluation import roc_auc
from ml_assets.core.families import Family, ModelInputs

WINDOW_PARAM = "window_days"  # a search choice applied by the caller: train on the most recent N days only


def daily_aucs(rows: pl.DataFrame, p: np.ndarray, label: str) -> dict[dt.date, float]:
    """ROC-AUC within each day of ``rows`` that has both classes."""
    frame = rows.select("date", y=pl.col(label).cast(pl.Float64)).with_columns(p=pl.Series(p))
    out = {}
    for (day,), part in frame.group_by(["date"], maintain_order=True):
        auc = roc_auc(part["y"].to_numpy(), part["p"].to_numpy())
        if not math.isnan(auc):
            out[day] = auc
    return out


def recent_days(rows: pl.DataFrame, days: int | None) -> pl.DataFrame:
    """The rows of the most recent ``days`` distinct dates (all rows when None)."""
    if not days:
        return rows
    dates = rows["date"].unique().sort()
    return rows.filter(pl.col("date") >= dates[max(0, dates.len() - int(days))])


def split_last_days(rows: pl.DataFrame, validation_days: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    dates = rows["date"].unique().sort()
    if dates.len() <= validation_days:
        return rows.head(0), rows
    first_valid = dates[dates.len() - validation_days]
    return rows.filter(pl.col("date") < first_valid), rows.filter(pl.col("date") >= first_valid)


def search(family: Family, rows: pl.DataFrame, inputs: ModelInputs, n_trials: int, timeout_seconds: float | None,
           seed: int = 0, validation_days: int = 7, min_train_days: int = 14,
           window_choices: Sequence[int | None] = (None,), adopt_se: float = 1.0,
           base_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{"params": ..., "search": ...}``: the parameters to train with (the defaults unless a trial won clearly;
    ``window_days`` among them when a shorter window won) and how they were found. The defaults: the family's,
    with ``base_params`` (the dataset's recipe) over them."""
    defaults = {**family.default_params, **(base_params or {})}
    train, valid = split_last_days(rows, validation_days)
    train_days = train["date"].n_unique() if train.height else 0
    if family.tune_space is None or n_trials <= 0:
        return {"params": defaults, "search": {"trials": 0, "reason": "no search (budget 0 or not tunable)"}}
    if train_days < min_train_days:
        return {"params": defaults, "search": {"trials": 0, "reason": f"{train_days} training day(s) before the "
                                               f"{validation_days} validation days (needs {min_train_days})"}}
    import optuna

    choices = [c for c in window_choices if c is None or c < train_days] or [None]
    scores: dict[int, dict[dt.date, float]] = {}

    def objective(trial: optuna.Trial) -> float:
        window = trial.suggest_categorical(WINDOW_PARAM, choices) if len(choices) > 1 else choices[0]
        params = {**defaults, **family.tune_space(trial), "refit_on_window": False, "early_stopping_rounds": 0}
        rows_ = recent_days(train, window)
        model = family.train(rows_, valid.head(0), inputs, params=params, seed=seed)
        per_day = daily_aucs(valid, family.predict(model, valid), inputs.label)
        scores[trial.number] = per_day
        return float(np.mean(list(per_day.values()))) if per_day else 0.0

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    first = {k: v for k, v in defaults.items() if k in _tuned_keys(family)}
    if len(choices) > 1:
        first[WINDOW_PARAM] = choices[0]
    study.enqueue_trial(first)
    study.optimize(objective, n_trials=n_trials, timeout=timeout_seconds)
    best = study.best_trial
    base, top = scores[0], scores[best.number]
    common = sorted(set(base) & set(top))
    diff = np.array([top[d] - base[d] for d in common]) if common else np.zeros(0)
    se = float(diff.std(ddof=1) / math.sqrt(diff.size)) if diff.size > 1 else math.inf
    gain = float(diff.mean()) if diff.size else 0.0
    adopted = best.number != 0 and gain > adopt_se * se
    chosen = {**defaults, **best.params} if adopted else defaults
    summary = {"trials": len(study.trials), "objective": f"mean daily AUC on the last {validation_days} days of "
               "the window (fits on the earlier days only: out of sample)",
               "validated_on": f"{valid['date'].min()}..{valid['date'].max()}",
               "default_score": round(float(np.mean(list(base.values()))), 5) if base else None,
               "best_score": round(best.value, 5), "best_trial": best.number, "gain_vs_default": round(gain, 5),
               "gain_se": round(se, 5) if math.isfinite(se) else None, "adopted": adopted,
               "rule": f"adopt the best trial only if it beats the defaults by > {adopt_se:g} SE, paired per day"}
    return {"params": chosen, "search": summary}


def _tuned_keys(family: Family) -> list[str]:
    """The parameter names the family's search space suggests (read by calling it with a recorder)."""
    names: list[str] = []

    class Recorder:
        def __getattr__(self, _method):
            def suggest(name, *args, **kwargs):
                names.append(name)
                first = args[0] if args else None
                return first[0] if isinstance(first, (list, tuple)) else first
            return suggest

    family.tune_space(Recorder())
    return names
