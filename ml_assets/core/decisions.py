"""The decisions, in plain words and numbers: is a candidate sane, which one is chosen, may it replace the champion.

Every comparison is paired (both models scored the same rows) with DeLong's test (``core.stats``), and
"worse" means *significantly* worse, so a gate neither fires on noise nor lets a real regression through:

sanity (model_evaluation, refusing): the chosen candidate ranks significantly better than chance (the lower
    end of its AUC interval is above 0.5) and is not significantly worse than a trivial baseline (the events'
    order in the day, e.g. "later departures run later").
choice: among the candidates that passed their refusing behavioral checks, the highest holdout AUC.
promotion (champion, recorded per day): the candidate replaces the champion when
    - its ONNX parity passed and its latency and size are within budget;
    - on day D's holdout it is not significantly worse than the champion, with the interval widened by the
      day-to-day spread of the family's daily differences (``day_spread``): the question is the days to come;
    - below the champion in effect, it is not significantly worse than any champion of the recent days either
      (Holm over them), so a run of promotions each a little worse cannot walk quality down (the ratchet);
    - its family's track record over the last ``evidence_days`` labelled days (each day: that family's model
      of the day against the champion in effect, on rows neither trained on), pooled day by day, is not
      significantly worse: more than one day of evidence;
    - no slice large enough to judge (``min_slice_rows``, chosen for power) is significantly worse, with
      Holm's correction across the slices (without it, some slice of twenty fails by chance most days).
Without a champion, the first sane candidate with parity is promoted.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ml_assets.core import stats


@dataclass(frozen=True)
class SanityPolicy:
    alpha: float = 0.05  # one-sided


def sanity(y: np.ndarray, p_candidate: np.ndarray, p_baseline: np.ndarray, policy: SanityPolicy = SanityPolicy()
           ) -> dict[str, Any]:
    """Better than chance and not significantly worse than the baseline, with the numbers behind it."""
    if y.size == 0 or y.min() == y.max():
        return {"passed": False, "reason": f"{y.size} labelled rows with {len(set(y.tolist()))} class(es): "
                                           "nothing to judge on"}
    ci = stats.auc_ci(y, p_candidate, confidence=1 - 2 * policy.alpha)
    vs = stats.paired_auc_difference(y, p_candidate, p_baseline, confidence=1 - 2 * policy.alpha)
    above_chance = ci.low > 0.5
    not_worse = vs.p_value_a_worse >= policy.alpha
    reasons = []
    if not above_chance:
        reasons.append(f"AUC interval [{ci.low:.3f}, {ci.high:.3f}] includes chance (0.5)")
    if not not_worse:
        reasons.append(f"significantly worse than the baseline (delta {vs.delta:+.3f}, p={vs.p_value_a_worse:.3g})")
    return {"passed": above_chance and not_worse, "reason": "; ".join(reasons) or "above chance, not worse than "
            "the baseline", "auc": vs.auc_a, "auc_ci_low": ci.low, "auc_ci_high": ci.high,
            "baseline_auc": vs.auc_b, "delta_vs_baseline": vs.delta, "delta_ci_low": vs.ci_low,
            "delta_ci_high": vs.ci_high, "p_worse_than_baseline": vs.p_value_a_worse, "alpha": policy.alpha}


def choose(aucs: dict[str, float], disqualified: dict[str, str]) -> str | None:
    """The qualified candidate with the highest AUC (ties: the first listed)."""
    qualified = {f: a for f, a in aucs.items() if f not in disqualified and not math.isnan(a)}
    return max(qualified, key=lambda f: (qualified[f], -list(aucs).index(f))) if qualified else None


@dataclass(frozen=True)
class PromotionPolicy:
    alpha: float = 0.05  # one-sided, for every "not significantly worse"
    evidence_days: int = 7
    reference_days: int = 14  # champions that served within this many days form the reference set
    spread_days: int = 28  # the family's days before today that estimate the day-to-day spread
    slice_drop: float = 0.10  # the drop a slice test must have 80% power to detect
    min_slice_rows: int | None = None  # default: from the power calculation
    max_single_row_p95_ms: float = 50.0
    max_size_bytes: int = 50_000_000

    @property
    def slice_rows(self) -> int:
        if self.min_slice_rows is not None:
            return self.min_slice_rows
        return stats.min_rows_for_power(self.slice_drop, alpha=self.alpha)

    def describe(self) -> dict[str, Any]:
        return {**asdict(self), "min_slice_rows": self.slice_rows,
                "slice_power": round(stats.power_of_paired_test(self.slice_rows, self.slice_drop, alpha=self.alpha), 3)}


@dataclass
class Decision:
    promote: bool
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def reason(self) -> str:
        failed = [r for r in self.rows if not r["passed"]]
        if self.promote:
            return "every comparison passed" if self.rows else "no champion yet"
        return "; ".join(f"{r['check']}{' [' + r['against'] + ']' if r.get('against') else ''}: {r['rule']}"
                         for r in failed)


def _row(check: str, passed: bool, rule: str, against: str = "", **numbers: Any) -> dict[str, Any]:
    return {"check": check, "against": against, "passed": bool(passed), "rule": rule,
            **{k: (float(v) if isinstance(v, (int, float, np.floating)) and not isinstance(v, bool) else v)
               for k, v in numbers.items()}}


def _paired_row(check: str, against: str, y: np.ndarray, p_candidate: np.ndarray, p_reference: np.ndarray,
                alpha: float, day_spread: float = 0.0) -> dict[str, Any]:
    d = stats.paired_auc_difference(y, p_candidate, p_reference)
    se, p_worse = _with_day_spread(d.delta, d.se, day_spread)
    passed = math.isnan(p_worse) or p_worse >= alpha
    half = float(stats._norm().ppf(1 - alpha)) * se
    return _row(check, passed, f"not significantly worse (one-sided p >= {alpha:g}, the day-to-day spread of the "
                "difference included)", against, candidate_auc=d.auc_a, reference_auc=d.auc_b, delta=d.delta,
                ci_low=d.delta - half, ci_high=d.delta + half, rows_se=d.se, day_spread=day_spread, p_worse=p_worse,
                rows=d.n)


def _with_day_spread(delta: float, rows_se: float, day_spread: float) -> tuple[float, float]:
    """(SE, one-sided p that the candidate is worse) with the day-to-day spread added to the rows' SE: the
    question is whether the candidate is worse on the days to come, not on today's rows only."""
    se = math.sqrt(rows_se ** 2 + day_spread ** 2)
    if math.isnan(delta) or math.isnan(se):
        return se, math.nan
    if se == 0:
        return se, 1.0 if delta >= 0 else 0.0
    return se, float(stats._norm().cdf(delta / se))


def day_spread(evidence: list[dict[str, Any]], min_days: int = 5) -> float:
    """The between-day SD of a family's daily deltas against the champion in effect, beyond their within-day
    (DeLong) noise: a method-of-moments random effect, 0 with fewer than ``min_days`` days.

    Measured on Feb-Mar 2013 it is ~0.010 while one day's DeLong SE is ~0.006: a model that suits today's
    weather and traffic better than another does not suit tomorrow's the same way."""
    if len(evidence) < min_days:
        return 0.0
    deltas = np.array([e["delta"] for e in evidence])
    within = float(np.mean([e["variance"] for e in evidence]))
    return math.sqrt(max(0.0, float(deltas.var(ddof=1)) - within))


def day_evidence(y: np.ndarray, p_family: np.ndarray, p_champion: np.ndarray) -> dict[str, float] | None:
    """One day of a family's track record: its delta against the champion in effect, with the DeLong variance."""
    d = stats.paired_auc_difference(y, p_family, p_champion)
    if math.isnan(d.delta) or math.isnan(d.se):
        return None
    return {"delta": d.delta, "variance": d.se ** 2}


def pooled_evidence(days: list[dict[str, Any]], alpha: float, spread: float = 0.0) -> dict[str, Any]:
    """Equal-weight mean of the per-day deltas and its SE (as ``stats.pooled_paired_difference``), the
    day-to-day ``spread`` (``day_spread``) counted once per day."""
    k = len(days)
    mean = float(np.mean([d["delta"] for d in days]))
    se = math.sqrt(sum(d["variance"] for d in days) / k ** 2 + spread ** 2 / k)
    z = mean / se if se > 0 else (0.0 if mean == 0 else math.copysign(math.inf, mean))
    p_worse = float(stats._norm().cdf(z)) if se > 0 else (1.0 if mean >= 0 else 0.0)
    half = float(stats._norm().ppf(1 - alpha)) * se
    return {"days": k, "delta": mean, "se": se, "ci_low": mean - half, "ci_high": mean + half, "p_worse": p_worse}


def promotion(y: np.ndarray, p_candidate: np.ndarray, *, champion: np.ndarray | None, champion_name: str,
              references: dict[str, np.ndarray], evidence: list[dict[str, Any]], slices: dict[str, np.ndarray],
              parity_passed: bool, latency_p95_ms: float, size_bytes: int,
              policy: PromotionPolicy = PromotionPolicy()) -> Decision:
    """``references``: the recent champions' scores on the same rows (name -> scores); ``slices``: slice column
    -> the slice value of every row; ``evidence``: the candidate family's per-day records (``day_evidence``),
    oldest first, today's last (the days before it give the day-to-day spread)."""
    rows = [_row("onnx_parity", parity_passed, "the ONNX export gives the native model's answers"),
            _row("latency", latency_p95_ms <= policy.max_single_row_p95_ms,
                 f"single-row p95 <= {policy.max_single_row_p95_ms:g} ms", value=latency_p95_ms),
            _row("size", size_bytes <= policy.max_size_bytes, f"model bytes <= {policy.max_size_bytes}",
                 value=size_bytes)]
    if champion is None:
        return Decision(all(r["passed"] for r in rows), rows)
    spread = day_spread(evidence[:-1][-policy.spread_days:])
    versus_champion = _paired_row("auc", f"champion {champion_name}", y, p_candidate, champion, policy.alpha, spread)
    rows.append(versus_champion)
    rows += _ratchet_rows(y, p_candidate, references, champion_name, versus_champion["delta"], spread, policy)
    if evidence:
        e = pooled_evidence(evidence[-policy.evidence_days:], policy.alpha, spread)
        rows.append(_row("track_record", e["p_worse"] >= policy.alpha,
                         f"the family over its last {e['days']} labelled day(s) is not significantly worse than the "
                         f"champions in effect (one-sided p >= {policy.alpha:g}, the day-to-day spread included)",
                         **e))
    rows += _slice_rows(y, p_candidate, champion, champion_name, slices, spread, policy)
    return Decision(all(r["passed"] for r in rows), rows)


def _ratchet_rows(y, p_candidate, references, champion_name, delta_vs_champion, spread, policy) -> list[dict]:
    """No walk down: the candidate against every other recent champion, Holm-adjusted over them (the best of
    them on today's rows would be chosen on the very rows it is tested on). A ratchet is a run of steps down,
    so these bind only when the candidate is below the champion in effect; above it, refusing would keep a
    model that is worse still."""
    others = {name: scores for name, scores in references.items() if name != champion_name}
    if not others:
        return []
    tested = [(name, stats.paired_auc_difference(y, p_candidate, scores)) for name, scores in others.items()]
    p_worse = [_with_day_spread(d.delta, d.se, spread)[1] for _, d in tested]
    binding = not delta_vs_champion >= 0
    out = []
    for (name, d), p, adjusted in zip(tested, p_worse, stats.holm_adjust(p_worse)):
        rule = (f"not significantly worse (Holm over {len(tested)} recent champions, one-sided p >= {policy.alpha:g})"
                if binding else "not binding: the candidate is above the champion in effect (no step down)")
        out.append(_row("auc", not binding or math.isnan(adjusted) or adjusted >= policy.alpha, rule,
                        f"recent champion {name}", candidate_auc=d.auc_a, reference_auc=d.auc_b, delta=d.delta,
                        p_worse=p, p_adjusted=adjusted, rows=d.n))
    return out


def _slice_rows(y, p_candidate, champion, champion_name, slices, spread, policy) -> list[dict[str, Any]]:
    judged = []
    for column, values in slices.items():
        for value in sorted({v for v in values.tolist() if v is not None}):
            mask = values == value
            ys = y[mask]
            if mask.sum() < policy.slice_rows or ys.min() == ys.max() or min(ys.sum(), (1 - ys).sum()) < 2:
                continue
            d = stats.paired_auc_difference(ys, p_candidate[mask], champion[mask])
            judged.append((f"{column}={value}", d))
    p_worse = [_with_day_spread(d.delta, d.se, spread)[1] for _, d in judged]
    adjusted = stats.holm_adjust(p_worse)
    return [_row("auc", math.isnan(p) or p >= policy.alpha, f"slice not significantly worse (Holm-adjusted "
                 f"one-sided p >= {policy.alpha:g}; slices of >= {policy.slice_rows} rows)", f"{name} vs {champion_name}",
                 candidate_auc=d.auc_a, reference_auc=d.auc_b, delta=d.delta, p_worse=raw, p_adjusted=p, rows=d.n)
            for (name, d), raw, p in zip(judged, p_worse, adjusted)]
