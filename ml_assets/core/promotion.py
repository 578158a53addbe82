"""The promotion gate: may a candidate replace the champion?

Both are scored by the caller on the SAME holdout rows (day D, seen by neither in training) through their
ONNX graphs, i.e. exactly what would serve. The candidate passes when

- its ONNX parity check passed;
- its AUC is not below the champion's by more than ``auc_tolerance`` overall, AND on every important slice
  (a slice value with at least ``min_slice_rows`` labelled rows in the holdout) by more than
  ``slice_auc_tolerance`` plus ``slice_noise_z`` standard errors of the difference. One day's slices hold a
  few hundred rows, where an AUC moves by ~0.05 from sampling alone: without the noise allowance a model that
  learned nothing beats a good one on some slice most days. The standard errors (Hanley & McNeil 1982) are
  added as if independent, which overstates the noise of a paired comparison: slices block only clear losses;
- its single-row p95 latency and its size are within budget.

Without a champion only parity and budgets apply. Every comparison is one row of a table, so the UI shows
exactly why a candidate was or was not promoted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PromotionPolicy:
    auc_tolerance: float = 0.01
    slice_auc_tolerance: float = 0.02
    slice_noise_z: float = 2.0
    min_slice_rows: int = 100
    max_single_row_p95_ms: float = 50.0
    max_size_bytes: int = 50_000_000


@dataclass(frozen=True)
class Decision:
    promote: bool
    comparisons: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [c for c in self.comparisons if not c["passed"]]

    @property
    def reason(self) -> str:
        if self.promote:
            return "every comparison passed"
        return "; ".join(f"{c['check']}" + (f" [{c['slice']}]" if c["slice"] else "") + f": {c['rule']}"
                         for c in self.failed)


def _row(check: str, slice_: str, candidate: float | None, reference: float | None, rule: str,
         passed: bool) -> dict[str, Any]:
    return {"check": check, "slice": slice_, "candidate": candidate, "reference": reference, "rule": rule,
            "passed": bool(passed)}


def _not_worse(candidate: float, champion: float, tolerance: float) -> bool:
    if math.isnan(champion):
        return True  # the champion has no AUC here (one class only): nothing to be worse than
    return not math.isnan(candidate) and candidate >= champion - tolerance


def auc_standard_error(auc: float, rows: int, late_rate: float) -> float:
    """Hanley & McNeil's standard error of an AUC from its positive and negative counts."""
    n_pos, n_neg = rows * late_rate, rows * (1 - late_rate)
    if math.isnan(auc) or n_pos < 1 or n_neg < 1:
        return math.nan
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    return math.sqrt(max(variance, 0.0))


def _slice_allowance(candidate: dict[str, Any], champion: dict[str, Any], policy: "PromotionPolicy") -> float:
    se = [auc_standard_error(s["roc_auc"], s["rows"], s.get("late_rate", math.nan)) for s in (candidate, champion)]
    noise = math.sqrt(se[0] ** 2 + se[1] ** 2) if not any(math.isnan(x) for x in se) else 0.0
    return policy.slice_auc_tolerance + policy.slice_noise_z * noise


def _slice_key(s: dict[str, Any]) -> tuple[str, str]:
    return str(s["slice"]), str(s["value"])


def decide(candidate: dict[str, Any], champion: dict[str, Any] | None, *, parity_passed: bool,
           latency_p95_ms: float, size_bytes: int, policy: PromotionPolicy = PromotionPolicy()) -> Decision:
    """``candidate``/``champion`` are ``evaluation.evaluate`` results on the same rows (champion None: first)."""
    rows = [
        _row("onnx_parity", "", None, None, "ONNX parity check passed", parity_passed),
        _row("latency", "", latency_p95_ms, policy.max_single_row_p95_ms, "single-row p95 ms <= budget",
             latency_p95_ms <= policy.max_single_row_p95_ms),
        _row("size", "", float(size_bytes), float(policy.max_size_bytes), "model bytes <= budget",
             size_bytes <= policy.max_size_bytes),
    ]
    if champion is not None:
        cand, champ = candidate["overall"]["roc_auc"], champion["overall"]["roc_auc"]
        rows.append(_row("auc", "overall", cand, champ, f"AUC >= champion - {policy.auc_tolerance}",
                         _not_worse(cand, champ, policy.auc_tolerance)))
        champion_slices = {_slice_key(s): s for s in champion["slices"]}
        for s in candidate["slices"]:
            c = champion_slices.get(_slice_key(s))
            if c is None or s["rows"] < policy.min_slice_rows:
                continue  # the same rows on both sides, so a slice is either important for both or for neither
            allowance = _slice_allowance(s, c, policy)
            rows.append(_row("auc", f"{s['slice']}={s['value']}", s["roc_auc"], c["roc_auc"],
                             f"AUC >= champion - {allowance:.3f} (tolerance + {policy.slice_noise_z:g} SE)",
                             _not_worse(s["roc_auc"], c["roc_auc"], allowance)))
    return Decision(promote=all(r["passed"] for r in rows), comparisons=rows)
