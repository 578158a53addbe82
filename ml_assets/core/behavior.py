"""Behavioral checks: properties a sound late-flight model has, whatever its AUC.

Each check takes ``predict(frame) -> p_late`` over the FULL feature frame (keys included), so that a model
that secretly reads a column it should ignore is caught. Each returns a dict: ``check``, ``passed``,
``tried`` (what was changed) and the numbers behind the verdict.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import polars as pl

from ml_assets.core.features import CATEGORICAL, NUMERIC, WEATHER_COLUMNS

Predict = Callable[[pl.DataFrame], np.ndarray]

INVARIANCE_EPS = 1e-6
# Mean p_late may drop by at most this much under worse weather (numerical slack, not a real drop).
DIRECTIONAL_SLACK = 1e-3
# Noise of 1% of a column's std must move predictions little on average and never by much.
ROBUSTNESS_NOISE_SCALE = 0.01
ROBUSTNESS_MEAN_TOL = 0.01
ROBUSTNESS_MAX_TOL = 0.2
# Worse but plausible weather (in-distribution, so the check tests the model rather than extrapolation):
# 1 mile visibility is the ~2nd percentile of departures; +0.05 in/hour of rain is moderate rain.
LOW_VISIBILITY_MILES = 1.0
EXTRA_PRECIP_INCHES = 0.05
CONTINUOUS_COLUMNS = ["distance", "temp", "dewp", "humid", "wind_speed", "wind_gust", "pressure", "visib"]
UNKNOWN_CATEGORY = "__unknown__"


def _p(predict: Predict, frame: pl.DataFrame) -> np.ndarray:
    return np.asarray(predict(frame), dtype=np.float64).ravel()


def _result(check: str, passed: bool, tried: str, **numbers) -> dict:
    return {"check": check, "passed": bool(passed), "tried": tried, **numbers}


def invariance_check(predict: Predict, frame: pl.DataFrame, eps: float = INVARIANCE_EPS, seed: int = 0) -> dict:
    """Tail number and flight number are identifiers, not inputs: rewriting them must not move p_late."""
    rng = np.random.default_rng(seed)
    changed = frame.with_columns(
        tailnum=pl.Series(rng.permutation(frame.get_column("tailnum").to_numpy())).cast(pl.String),
        flight=(pl.col("flight") + 1000 + pl.int_range(pl.len())).cast(frame.schema["flight"]),
    )
    diff = np.abs(_p(predict, changed) - _p(predict, frame))
    max_diff = float(diff.max()) if diff.size else 0.0
    return _result("invariance", max_diff <= eps, "shuffled tailnum, renumbered flight",
                   max_abs_change=max_diff, eps=eps, rows=frame.height)


def _worse_weather(frame: pl.DataFrame, change: str) -> pl.DataFrame:
    if change == "lower_visibility":
        return frame.with_columns(visib=pl.min_horizontal(pl.col("visib"), pl.lit(LOW_VISIBILITY_MILES)))
    if change == "more_precipitation":
        return frame.with_columns(precip=pl.col("precip").fill_null(0.0) + EXTRA_PRECIP_INCHES)
    raise ValueError(f"unknown weather change {change!r}")


def directional_check(
    predict: Predict, frame: pl.DataFrame, slack: float = DIRECTIONAL_SLACK,
    changes: tuple[str, ...] = ("lower_visibility", "more_precipitation"),
) -> dict:
    """Worse weather (visibility at most 1 mile; +0.05 in/hour of rain) must not lower mean p_late."""
    base = float(_p(predict, frame).mean()) if frame.height else 0.0
    shifts = {}
    for change in changes:
        shifts[change] = float(_p(predict, _worse_weather(frame, change)).mean()) - base if frame.height else 0.0
    passed = all(s >= -slack for s in shifts.values())
    return _result("directional", passed, ", ".join(changes), mean_p_late=base,
                   mean_shift=shifts, slack=slack, rows=frame.height)


def robustness_check(
    predict: Predict, frame: pl.DataFrame, noise_scale: float = ROBUSTNESS_NOISE_SCALE,
    mean_tol: float = ROBUSTNESS_MEAN_TOL, max_tol: float = ROBUSTNESS_MAX_TOL, seed: int = 0,
) -> dict:
    """Gaussian noise of ``noise_scale`` x std on continuous columns: small mean and max change."""
    rng = np.random.default_rng(seed)
    noisy = []
    for column in CONTINUOUS_COLUMNS:
        values = frame.get_column(column).cast(pl.Float64)
        std = float(values.std() or 0.0)
        noise = rng.normal(0.0, noise_scale * std, frame.height)
        noisy.append((values + pl.Series(noise)).alias(column))  # null + noise stays null
    diff = np.abs(_p(predict, frame.with_columns(noisy)) - _p(predict, frame))
    mean_diff = float(diff.mean()) if diff.size else 0.0
    max_diff = float(diff.max()) if diff.size else 0.0
    return _result("robustness", mean_diff <= mean_tol and max_diff <= max_tol,
                   f"gaussian noise {noise_scale} x std on {', '.join(CONTINUOUS_COLUMNS)}",
                   mean_abs_change=mean_diff, max_abs_change=max_diff, mean_tol=mean_tol, max_tol=max_tol)


def edge_inputs_check(predict: Predict, frame: pl.DataFrame) -> dict:
    """Unknown categories, all-missing weather, everything missing: finite probabilities in [0, 1]."""
    cases = {
        "unknown_categories": frame.with_columns(pl.lit(UNKNOWN_CATEGORY).alias(c) for c in CATEGORICAL),
        "missing_weather": frame.with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in WEATHER_COLUMNS),
        "all_missing": frame.with_columns(
            *(pl.lit(None, dtype=pl.Float64).alias(c) for c in NUMERIC),
            *(pl.lit(None, dtype=pl.String).alias(c) for c in CATEGORICAL),
        ),
    }
    outcomes = {}
    for name, case in cases.items():
        p = _p(predict, case)
        finite = p[np.isfinite(p)]
        outcomes[name] = {
            "rows": int(p.size),
            "non_finite": int(p.size - finite.size),
            "valid": bool(p.size == case.height and finite.size == p.size and np.all((p >= 0) & (p <= 1))),
            "min": float(finite.min()) if finite.size else None,
            "max": float(finite.max()) if finite.size else None,
        }
    return _result("edge_inputs", all(o["valid"] for o in outcomes.values()), ", ".join(cases), cases=outcomes)


def run_behavior_checks(predict: Predict, frame: pl.DataFrame, seed: int = 0) -> list[dict]:
    return [
        invariance_check(predict, frame, seed=seed),
        directional_check(predict, frame),
        robustness_check(predict, frame, seed=seed),
        edge_inputs_check(predict, frame),
    ]
