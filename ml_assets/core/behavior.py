"""Behavioral checks: properties a sound model has, whatever its AUC (declared in the spec's ``behavior``).

Each check takes ``predict(frame) -> probabilities`` over the FULL feature frame (keys and carried identifiers
included), changes the rows in one realistic way and compares predictions on the SAME rows. Each returns a
dict: ``check``, ``passed``, ``tried`` (what was changed) and the numbers behind the verdict.

- invariance: identifiers (tail number, flight number) must not move predictions at all;
- directional: worse conditions within a realistic range (visibility at most 1 mile, +0.05 in/h of rain) must
  not move many rows the other way: the share of rows whose probability drops by more than ``eps`` must stay
  at most ``max_wrong_share`` (calibrated on real days; a sound tree model moves a few rows the wrong way
  through interactions, a model that learned the reverse moves most of them);
- robustness: tiny noise on continuous columns moves predictions little;
- edge inputs: unknown categories and missing values give finite probabilities in [0, 1].
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import polars as pl

from ml_assets.core.spec import DatasetSpec, Directional

Predict = Callable[[pl.DataFrame], np.ndarray]

INVARIANCE_EPS = 1e-6
WRONG_WAY_EPS = 1e-4  # a drop smaller than this is numerical, not a move
ROBUSTNESS_NOISE_SCALE = 0.01
ROBUSTNESS_MEAN_TOL = 0.01
ROBUSTNESS_MAX_TOL = 0.2
UNKNOWN_CATEGORY = "__unknown__"


def _p(predict: Predict, frame: pl.DataFrame) -> np.ndarray:
    return np.asarray(predict(frame), dtype=np.float64).ravel()


def _result(check: str, passed: bool, tried: str, rows: int, **numbers) -> dict:
    return {"check": check, "passed": bool(passed) and rows > 0, "tried": tried, "rows": rows,
            **({} if rows else {"reason": "no rows to try it on"}), **numbers}


def invariance_check(predict: Predict, frame: pl.DataFrame, columns: list[str], seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    changes = []
    for column in columns:
        values = frame.get_column(column)
        if values.dtype.is_numeric():
            changes.append((values + 1000 + pl.Series(np.arange(frame.height))).cast(values.dtype).alias(column))
        else:
            changes.append(pl.Series(column, rng.permutation(values.to_numpy())).cast(values.dtype))
    diff = np.abs(_p(predict, frame.with_columns(changes)) - _p(predict, frame)) if frame.height else np.zeros(0)
    max_diff = float(diff.max()) if diff.size else 0.0
    return _result("invariance", max_diff <= INVARIANCE_EPS, f"rewrote {', '.join(columns)}", frame.height,
                   max_abs_change=max_diff, eps=INVARIANCE_EPS)


def _moved(frame: pl.DataFrame, d: Directional) -> pl.DataFrame:
    """``frame`` with the change applied to ``d.column`` and to the columns carrying the same quantity
    (``d.also``): moving one of them alone would be a day that cannot happen."""
    def changed(column: str) -> pl.Expr:
        value = pl.col(column)
        if d.fill_null is not None:
            value = value.fill_null(d.fill_null)
        value = pl.min_horizontal(value, pl.lit(d.set_at_most)) if d.set_at_most is not None else value + d.add
        return value.cast(frame.schema[column]).alias(column)
    return frame.with_columns(changed(c) for c in [d.column, *d.also])


def directional_check(predict: Predict, frame: pl.DataFrame, changes: list[Directional],
                      max_wrong_share: float) -> dict:
    base = _p(predict, frame) if frame.height else np.zeros(0)
    shifts = {}
    for d in changes:
        moved = _p(predict, _moved(frame, d)) if frame.height else np.zeros(0)
        delta = (moved - base) if d.direction == "up" else (base - moved)
        shifts[d.column] = {"changed": d.description, "wrong_way_share": float(np.mean(delta < -WRONG_WAY_EPS))
                            if delta.size else 0.0, "mean_shift": float(delta.mean()) if delta.size else 0.0}
    worst = max((s["wrong_way_share"] for s in shifts.values()), default=0.0)
    return _result("directional", worst <= max_wrong_share, "; ".join(d.description for d in changes), frame.height,
                   worst_wrong_way_share=worst, max_wrong_share=max_wrong_share, changes=shifts)


def robustness_check(predict: Predict, frame: pl.DataFrame, columns: list[str], seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    noisy = []
    for column in columns:
        values = frame.get_column(column).cast(pl.Float64)
        std = float(values.std() or 0.0)
        noisy.append((values + pl.Series(rng.normal(0.0, ROBUSTNESS_NOISE_SCALE * std, frame.height))).alias(column))
    diff = np.abs(_p(predict, frame.with_columns(noisy)) - _p(predict, frame)) if frame.height else np.zeros(0)
    mean_diff, max_diff = (float(diff.mean()), float(diff.max())) if diff.size else (0.0, 0.0)
    return _result("robustness", mean_diff <= ROBUSTNESS_MEAN_TOL and max_diff <= ROBUSTNESS_MAX_TOL,
                   f"gaussian noise {ROBUSTNESS_NOISE_SCALE} x std on {', '.join(columns)}", frame.height,
                   mean_abs_change=mean_diff, max_abs_change=max_diff, mean_tol=ROBUSTNESS_MEAN_TOL,
                   max_tol=ROBUSTNESS_MAX_TOL)


def edge_inputs_check(predict: Predict, frame: pl.DataFrame, categorical: list[str], numeric: list[str]) -> dict:
    cases = {"unknown_categories": frame.with_columns(pl.lit(UNKNOWN_CATEGORY).alias(c) for c in categorical),
             "all_missing": frame.with_columns(*(pl.lit(None, dtype=pl.Float64).alias(c) for c in numeric),
                                               *(pl.lit(None, dtype=pl.String).alias(c) for c in categorical))}
    outcomes = {}
    for name, case in cases.items():
        p = _p(predict, case) if case.height else np.zeros(0)
        finite = p[np.isfinite(p)]
        outcomes[name] = {"rows": int(p.size), "non_finite": int(p.size - finite.size),
                          "valid": bool(finite.size == p.size and np.all((p >= 0) & (p <= 1)))}
    return _result("edge_inputs", all(o["valid"] for o in outcomes.values()), ", ".join(cases), frame.height,
                   cases=outcomes)


CHECKS = {
    "invariance": "identifiers do not move predictions",
    "directional": "worse conditions do not move many rows the other way",
    "robustness": "tiny numeric noise gives tiny changes",
    "edge_inputs": "unknown categories and missing values give finite probabilities in [0, 1]",
}
REFUSING = {"directional", "edge_inputs"}  # a candidate failing these is not a candidate


def run_behavior_checks(predict: Predict, frame: pl.DataFrame, spec: DatasetSpec, seed: int = 0) -> list[dict]:
    b = spec.behavior
    out = []
    if b.invariant:
        out.append(invariance_check(predict, frame, b.invariant, seed))
    if b.directional:
        out.append(directional_check(predict, frame, b.directional, b.max_wrong_share))
    if b.robust:
        out.append(robustness_check(predict, frame, b.robust, seed))
    out.append(edge_inputs_check(predict, frame, spec.features.categorical,
                                 [*spec.features.numeric, *spec.history_columns]))
    return out


def checks_declared(spec: DatasetSpec) -> dict[str, str]:
    b = spec.behavior
    present = {"invariance": bool(b.invariant), "directional": bool(b.directional), "robustness": bool(b.robust),
               "edge_inputs": True}
    return {name: text for name, text in CHECKS.items() if present[name]}
