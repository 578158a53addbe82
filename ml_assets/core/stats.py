"""Statistics for the decision gates: AUC uncertainty, paired model comparisons, power, multiplicity.

Every comparison of two scorers here is *paired*: both scored the same rows, so their AUCs are correlated
and an unpaired test (two independent intervals overlapping or not) would be far too conservative. The
paired tests use DeLong's method for correlated ROC curves (DeLong, DeLong & Clarke-Pearson 1988) in the
O(n log n) rank form of Sun & Xu (2014), with ties counted as one half (mid-ranks), as in Mann-Whitney.

AUC is a within-day ranking measure, so evidence over several days is combined day by day, never by
pooling rows across days (a day-level shift in base rate or score scale would otherwise leak into it).

Pure numpy; scipy.stats is imported on first use only (it costs more to import than numpy itself), so
modules that only need the result types stay cheap to import.
"""
from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any, NamedTuple

import numpy as np

# A day or slice needs at least this many rows of each class for the DeLong variance to exist
# (the structural components' sample variances use ddof=1).
MIN_ROWS_PER_CLASS = 2


@cache
def _norm():
    """scipy.stats.norm, imported lazily (see the module docstring)."""
    from scipy.stats import norm

    return norm


def _z_critical(confidence: float) -> float:
    """The two-sided normal quantile for a central interval of this confidence."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return float(_norm().ppf(0.5 + confidence / 2.0))


def _json_value(value: Any) -> Any:
    """Plain Python numbers (NaN kept as float('nan')) so results serialize with the json module."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (tuple, list)):
        return [_json_value(v) for v in value]
    return value


class _JsonResult:
    """Mixin for result dataclasses: ``as_dict()`` gives JSON-ready values."""

    def as_dict(self) -> dict[str, Any]:
        return {key: _json_value(value) for key, value in asdict(self).items()}  # type: ignore[call-overload]


class Interval(NamedTuple):
    """A (low, high) interval; a tuple so ``low, high = auc_ci(...)`` works."""

    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def as_dict(self) -> dict[str, float]:
        return {"low": float(self.low), "high": float(self.high)}


NAN_INTERVAL = Interval(math.nan, math.nan)


@dataclass(frozen=True)
class AucEstimate(_JsonResult):
    auc: float
    variance: float
    se: float
    n: int
    n_pos: int
    n_neg: int


@dataclass(frozen=True)
class PairedDifference(_JsonResult):
    """AUC of scorer a minus AUC of scorer b on the same rows (or days), with its uncertainty.

    ``p_value_a_worse`` is one-sided for H1: auc_a < auc_b (small when a is credibly worse).
    ``n_days`` is 1 for a single-day comparison; ``method`` names how the SE was obtained.
    """

    auc_a: float
    auc_b: float
    delta: float
    se: float
    ci_low: float
    ci_high: float
    z: float
    p_value_two_sided: float
    p_value_a_worse: float
    n: int
    n_pos: int
    n_neg: int
    n_days: int = 1
    confidence: float = 0.95
    method: str = "delong"

    @property
    def ci(self) -> Interval:
        return Interval(self.ci_low, self.ci_high)


# ---------------------------------------------------------------- inputs


def _labels(y) -> np.ndarray:
    """0/1 labels (bool, int or float) as a bool array; anything else is an error, not a guess."""
    y_arr = np.asarray(y).ravel()
    if y_arr.dtype == np.bool_:
        return y_arr
    y_float = y_arr.astype(np.float64)
    if not np.all((y_float == 0.0) | (y_float == 1.0)):
        raise ValueError("labels must be 0/1")
    return y_float == 1.0


def _scores(p, size: int) -> np.ndarray:
    p_arr = np.asarray(p, dtype=np.float64).ravel()
    if p_arr.size != size:
        raise ValueError(f"{size} labels but {p_arr.size} scores")
    if np.isnan(p_arr).any():
        raise ValueError("scores contain NaN: their rank, and so the AUC, is undefined")
    return p_arr


def _midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of the ranks they span (O(n log n))."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    return (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]


# ---------------------------------------------------------------- DeLong


def _structural_components(positive: np.ndarray, scores: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """DeLong's placement values via ranks (Sun & Xu 2014).

    For each positive: the fraction of negatives it outscores; for each negative: the fraction of
    positives that outscore it (ties count 1/2). Both average to the AUC. Needs both classes present.
    """
    pos, neg = scores[positive], scores[~positive]
    n_pos, n_neg = pos.size, neg.size
    overall = _midranks(scores)
    # A positive's rank among all rows minus its rank among positives = negatives below it (+1/2 per tie).
    v_pos = (overall[positive] - _midranks(pos)) / n_neg
    # Likewise a negative's overall rank minus its rank among negatives = positives below it.
    v_neg = 1.0 - (overall[~positive] - _midranks(neg)) / n_pos
    auc = float(v_pos.mean())
    return auc, v_pos, v_neg


def _delong_variance(v_pos: np.ndarray, v_neg: np.ndarray) -> float:
    """var(AUC) = S10/m + S01/n from the placement values; NaN below two rows of a class."""
    if v_pos.size < MIN_ROWS_PER_CLASS or v_neg.size < MIN_ROWS_PER_CLASS:
        return math.nan
    return float(np.var(v_pos, ddof=1) / v_pos.size + np.var(v_neg, ddof=1) / v_neg.size)


def auc_with_variance(y, p) -> AucEstimate:
    """ROC AUC with its DeLong variance. NaN AUC when a class is missing; NaN variance below 2 of a class."""
    positive = _labels(y)
    scores = _scores(p, positive.size)
    n, n_pos = positive.size, int(positive.sum())
    n_neg = n - n_pos
    if n_pos == 0 or n_neg == 0:
        return AucEstimate(math.nan, math.nan, math.nan, n, n_pos, n_neg)
    auc, v_pos, v_neg = _structural_components(positive, scores)
    variance = _delong_variance(v_pos, v_neg)
    return AucEstimate(auc, variance, math.sqrt(variance), n, n_pos, n_neg)


def _logit_interval(auc: float, se: float, confidence: float) -> Interval:
    """Normal interval on the logit scale (delta method), mapped back: it stays inside (0, 1).

    Undefined (NaN) at AUC 0 or 1, where the logit is infinite: a degenerate [1, 1] would claim certainty.
    """
    if not (math.isfinite(auc) and math.isfinite(se)) or not 0.0 < auc < 1.0:
        return NAN_INTERVAL
    centre = math.log(auc / (1.0 - auc))
    half_width = _z_critical(confidence) * se / (auc * (1.0 - auc))
    return Interval(_expit(centre - half_width), _expit(centre + half_width))


def _expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def auc_ci(y, p, confidence: float = 0.95) -> Interval:
    """DeLong confidence interval for one AUC, on the logit scale so it stays within [0, 1]."""
    estimate = auc_with_variance(y, p)
    return _logit_interval(estimate.auc, estimate.se, confidence)


def _difference_result(
    auc_a: float, auc_b: float, delta: float, se: float, ci: Interval | None, *,
    n: int, n_pos: int, n_neg: int, n_days: int, confidence: float, method: str,
) -> PairedDifference:
    """z and p-values from delta/se; ``ci`` None means the normal interval delta +- z*se.

    se == 0 happens when the scorers rank every row alike (e.g. identical or monotone transforms):
    then a zero delta is no evidence either way (p = 1), and a non-zero delta is certain.
    """
    norm = _norm()
    if not (math.isfinite(delta) and math.isfinite(se)):
        z = p_two = p_worse = math.nan
    elif se == 0.0:
        z = 0.0 if delta == 0.0 else math.copysign(math.inf, delta)
        p_two = 1.0 if delta == 0.0 else 0.0
        p_worse = 0.0 if delta < 0.0 else 1.0
    else:
        z = delta / se
        p_two = float(min(1.0, 2.0 * norm.sf(abs(z))))
        p_worse = float(norm.cdf(z))
    if ci is None:
        if math.isfinite(delta) and math.isfinite(se):
            half_width = _z_critical(confidence) * se
            ci = Interval(delta - half_width, delta + half_width)
        else:
            ci = NAN_INTERVAL
    return PairedDifference(
        auc_a=float(auc_a), auc_b=float(auc_b), delta=float(delta), se=float(se),
        ci_low=float(ci.low), ci_high=float(ci.high), z=float(z),
        p_value_two_sided=float(p_two), p_value_a_worse=float(p_worse),
        n=int(n), n_pos=int(n_pos), n_neg=int(n_neg), n_days=int(n_days),
        confidence=float(confidence), method=method,
    )


def paired_auc_difference(y, p_a, p_b, confidence: float = 0.95) -> PairedDifference:
    """DeLong test of auc_a - auc_b for two scorers on the same rows.

    var(delta) is the variance of the *difference* of the placement values, which equals
    var_a + var_b - 2 cov_ab and is exactly 0 for identical scorers (no cancellation error).
    """
    positive = _labels(y)
    a = _scores(p_a, positive.size)
    b = _scores(p_b, positive.size)
    n, n_pos = positive.size, int(positive.sum())
    n_neg = n - n_pos
    counts = dict(n=n, n_pos=n_pos, n_neg=n_neg, n_days=1, confidence=confidence, method="delong")
    if n_pos == 0 or n_neg == 0:
        return _difference_result(math.nan, math.nan, math.nan, math.nan, None, **counts)
    auc_a, v_pos_a, v_neg_a = _structural_components(positive, a)
    auc_b, v_pos_b, v_neg_b = _structural_components(positive, b)
    variance = _delong_variance(v_pos_a - v_pos_b, v_neg_a - v_neg_b)
    return _difference_result(auc_a, auc_b, auc_a - auc_b, math.sqrt(variance), None, **counts)


def pooled_paired_difference(days: Sequence[tuple[Any, Any, Any]], confidence: float = 0.95) -> PairedDifference:
    """Evidence over several days: the equal-weighted mean of the per-day DeLong differences.

    Each day's delta and variance are computed within the day (AUC ranks rows of one day against each
    other). Days are independent, so SE(mean) = sqrt(sum of daily variances) / k.

    Why equal weights rather than inverse-variance: the gate asks "is the candidate worse on a typical
    day", and every day is one day of service, so a busy day should not outvote a quiet one. The DeLong
    variance also depends on the AUC level itself, so inverse-variance weights would favour the days
    where the models happen to rank best (a bias), and a day where both rank alike (variance 0) would
    take infinite weight. Daily volumes here are similar, so the power given up is small. It also
    matches ``rolling_auc``. Days without two rows of each class (no DeLong variance) are skipped;
    ``n_days`` counts the days used and n/n_pos/n_neg their rows.
    """
    per_day = [paired_auc_difference(y, p_a, p_b, confidence) for y, p_a, p_b in days]
    used = [d for d in per_day if math.isfinite(d.se)]
    k = len(used)
    counts = dict(
        n=sum(d.n for d in used), n_pos=sum(d.n_pos for d in used), n_neg=sum(d.n_neg for d in used),
        n_days=k, confidence=confidence, method="delong_pooled_equal_weight",
    )
    if k == 0:
        return _difference_result(math.nan, math.nan, math.nan, math.nan, None, **counts)
    auc_a = float(np.mean([d.auc_a for d in used]))
    auc_b = float(np.mean([d.auc_b for d in used]))
    # Mean of the daily deltas (equal to auc_a - auc_b up to rounding; kept exact for one day).
    delta = float(np.mean([d.delta for d in used]))
    se = math.sqrt(sum(d.se**2 for d in used)) / k
    return _difference_result(auc_a, auc_b, delta, se, None, **counts)


# ---------------------------------------------------------------- bootstrap cross-check


def _resample_counts(rng: np.random.Generator, size: int, n_boot: int) -> np.ndarray:
    """(n_boot, size) counts: how often each row is drawn when resampling ``size`` rows with replacement."""
    draws = rng.integers(0, size, size=(n_boot, size))
    offsets = np.arange(n_boot)[:, None] * size
    return np.bincount((draws + offsets).ravel(), minlength=n_boot * size).reshape(n_boot, size)


def _weighted_aucs(pos: np.ndarray, neg: np.ndarray, w_pos: np.ndarray, w_neg: np.ndarray) -> np.ndarray:
    """AUC of each resample given as row counts, without materializing resampled arrays or re-ranking.

    A resample's AUC = sum_i w_i * (weighted negatives below pos_i + half the tied ones) / (m n). Sorting
    the negatives once, a cumulative sum of their counts answers "weighted negatives below x" for every
    positive with one lookup, so each resample costs O(m + n).
    """
    order = np.argsort(neg, kind="stable")
    sorted_neg = neg[order]
    below = np.searchsorted(sorted_neg, pos, side="left")
    up_to = np.searchsorted(sorted_neg, pos, side="right")
    cumulative = np.zeros((w_neg.shape[0], neg.size + 1), dtype=np.int64)
    np.cumsum(w_neg[:, order], axis=1, out=cumulative[:, 1:])
    credit = cumulative[:, below] + 0.5 * (cumulative[:, up_to] - cumulative[:, below])
    return (w_pos * credit).sum(axis=1) / (pos.size * neg.size)


def paired_bootstrap_auc_difference(
    y, p_a, p_b, n_boot: int = 1000, seed: int = 0, confidence: float = 0.95,
) -> PairedDifference:
    """Stratified paired bootstrap of auc_a - auc_b: a cross-check on the DeLong test.

    Positives and negatives are resampled separately (the class counts stay fixed, as DeLong assumes),
    and both scorers see the same resampled rows. delta is the full-sample difference, se the bootstrap
    SD, the interval is the percentile interval, and the p-values use the normal approximation delta/se.
    """
    if n_boot < 2:
        raise ValueError("n_boot must be at least 2")
    positive = _labels(y)
    a = _scores(p_a, positive.size)
    b = _scores(p_b, positive.size)
    n, n_pos = positive.size, int(positive.sum())
    n_neg = n - n_pos
    counts = dict(n=n, n_pos=n_pos, n_neg=n_neg, n_days=1, confidence=confidence, method="bootstrap")
    if n_pos == 0 or n_neg == 0:
        return _difference_result(math.nan, math.nan, math.nan, math.nan, None, **counts)
    auc_a = _structural_components(positive, a)[0]
    auc_b = _structural_components(positive, b)[0]
    rng = np.random.default_rng(seed)
    deltas = np.empty(n_boot)
    # Blocks of resamples keep memory bounded (a few million cells) on large inputs.
    block = max(1, 2_000_000 // (n + 1))
    for start in range(0, n_boot, block):
        size = min(block, n_boot - start)
        w_pos = _resample_counts(rng, n_pos, size)
        w_neg = _resample_counts(rng, n_neg, size)
        deltas[start:start + size] = (
            _weighted_aucs(a[positive], a[~positive], w_pos, w_neg)
            - _weighted_aucs(b[positive], b[~positive], w_pos, w_neg)
        )
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(deltas, [tail, 1.0 - tail])
    se = float(np.std(deltas, ddof=1))
    return _difference_result(auc_a, auc_b, auc_a - auc_b, se, Interval(float(low), float(high)), **counts)


# ---------------------------------------------------------------- multiplicity and simple tests


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (family-wise error control for per-slice gates).

    adj_(i) = max_{j<=i} min(1, (m - j + 1) p_(j)) over the sorted p-values, so they are monotone and
    capped at 1. NaN (a slice that could not be tested) stays NaN and does not count toward m.
    """
    p = np.asarray(p_values, dtype=np.float64).ravel()
    tested = ~np.isnan(p)
    if np.any((p[tested] < 0.0) | (p[tested] > 1.0)):
        raise ValueError("p-values must be in [0, 1]")
    adjusted = np.full(p.shape, math.nan)
    index = np.flatnonzero(tested)
    order = index[np.argsort(p[index], kind="stable")]
    m = order.size
    scaled = (m - np.arange(m)) * p[order]
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return [float(v) for v in adjusted]


def _wilson_interval(successes: int, n: int, z: float) -> Interval:
    phat = successes / n
    denominator = 1.0 + z * z / n
    centre = (phat + z * z / (2 * n)) / denominator
    half_width = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denominator
    return Interval(centre - half_width, centre + half_width)


def two_proportion_test(
    successes_a: int, n_a: int, successes_b: int, n_b: int, confidence: float = 0.95,
) -> dict[str, Any]:
    """Difference of two proportions (e.g. label rate now vs at training), p_a - p_b.

    z and the two-sided p-value use the pooled-variance z test (= Pearson chi-square, no continuity
    correction). The interval is Newcombe's hybrid score interval (his method 10), built from the two
    Wilson intervals: unlike the Wald interval it stays sensible at rates near 0 or 1 and small counts.
    """
    for successes, n in ((successes_a, n_a), (successes_b, n_b)):
        if n < 0 or not 0 <= successes <= max(n, 0):
            raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    result: dict[str, Any] = {
        "p_a": math.nan, "p_b": math.nan, "difference": math.nan, "z": math.nan, "p_value": math.nan,
        "ci": [math.nan, math.nan], "confidence": float(confidence), "method": "pooled_z_newcombe_hybrid_score",
    }
    if n_a == 0 or n_b == 0:
        return result
    p_a, p_b = successes_a / n_a, successes_b / n_b
    difference = p_a - p_b
    pooled = (successes_a + successes_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se == 0.0:  # both samples all successes or all failures: identical, no evidence of a shift
        z, p_value = 0.0, 1.0
    else:
        z = difference / se
        p_value = float(min(1.0, 2.0 * _norm().sf(abs(z))))
    z_crit = _z_critical(confidence)
    low_a, high_a = _wilson_interval(successes_a, n_a, z_crit)
    low_b, high_b = _wilson_interval(successes_b, n_b, z_crit)
    low = difference - math.sqrt((p_a - low_a) ** 2 + (high_b - p_b) ** 2)
    high = difference + math.sqrt((high_a - p_a) ** 2 + (p_b - low_b) ** 2)
    result.update(p_a=p_a, p_b=p_b, difference=difference, z=float(z), p_value=p_value, ci=[low, high])
    return result


def significantly_below(estimate_mean: float, estimate_se: float, reference: float, alpha: float = 0.05) -> bool:
    """One-sided z test of H1: true value < reference. NaN input is no evidence (False)."""
    values = (estimate_mean, estimate_se, reference)
    if not all(math.isfinite(v) for v in values) or estimate_se < 0:
        return False
    if estimate_se == 0.0:
        return estimate_mean < reference
    return bool(_norm().cdf((estimate_mean - reference) / estimate_se) < alpha)


# ---------------------------------------------------------------- power and minimum sizes


def hanley_mcneil_variance(auc: float, n_pos: float, n_neg: float) -> float:
    """Hanley & McNeil (1982) approximate variance of an AUC (exponential-score model)."""
    q1 = auc / (2.0 - auc)
    q2 = 2.0 * auc * auc / (1.0 + auc)
    return (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)


def _check_power_inputs(delta: float, auc: float, prevalence: float, correlation: float, alpha: float) -> None:
    if not 0.0 < auc < 1.0:
        raise ValueError(f"auc must be in (0, 1), got {auc}")
    if not 0.0 < delta < auc:
        raise ValueError(f"delta must be in (0, auc), got {delta}")
    if not 0.0 < prevalence < 1.0:
        raise ValueError(f"prevalence must be in (0, 1), got {prevalence}")
    if not -1.0 < correlation < 1.0:
        raise ValueError(f"correlation must be in (-1, 1), got {correlation}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def power_of_paired_test(
    n: int, delta: float, auc: float = 0.68, prevalence: float = 0.2, correlation: float = 0.6,
    alpha: float = 0.05, one_sided: bool = True,
) -> float:
    """Approximate power of the paired DeLong test on ``n`` rows to detect an AUC drop of ``delta``.

    Assumptions (all approximations, for sizing slices rather than for decisions):
    - the rows hold ``prevalence * n`` positives (expected counts, not rounded);
    - each AUC's variance follows Hanley-McNeil: the champion at ``auc``, the candidate at ``auc - delta``;
    - the two AUC estimates correlate with ``correlation`` (driven by how alike the two models' scores
      are; models retrained on similar data correlate strongly, 0.5-0.8 is typical), so
      var(diff) = var_a + var_b - 2 r sqrt(var_a var_b);
    - under the null both AUCs equal ``auc`` (var = 2 var_a (1 - r)); the statistic is normal.
    One-sided tests H1: candidate worse; two-sided adds the (tiny) opposite-tail rejection probability.
    Fewer than one expected row of a class gives power 0.
    """
    _check_power_inputs(delta, auc, prevalence, correlation, alpha)
    n_pos, n_neg = n * prevalence, n * (1.0 - prevalence)
    if n_pos < 1.0 or n_neg < 1.0:
        return 0.0
    var_champion = hanley_mcneil_variance(auc, n_pos, n_neg)
    var_candidate = hanley_mcneil_variance(auc - delta, n_pos, n_neg)
    sd_null = math.sqrt(2.0 * var_champion * (1.0 - correlation))
    sd_alternative = math.sqrt(
        var_champion + var_candidate - 2.0 * correlation * math.sqrt(var_champion * var_candidate)
    )
    norm = _norm()
    z_crit = float(norm.ppf(1.0 - alpha if one_sided else 1.0 - alpha / 2.0))
    power = norm.cdf((delta - z_crit * sd_null) / sd_alternative)
    if not one_sided:
        power += norm.cdf((-delta - z_crit * sd_null) / sd_alternative)
    return float(power)


def min_rows_for_power(
    delta: float, auc: float = 0.68, prevalence: float = 0.2, correlation: float = 0.6,
    alpha: float = 0.05, power: float = 0.8, one_sided: bool = True, max_rows: int = 10**9,
) -> int:
    """Smallest n at which ``power_of_paired_test`` reaches ``power`` (same assumptions, see there).

    Used to choose the minimum slice size a gate may act on. Power grows with n (both SDs shrink as
    the Hanley-McNeil variance does), so doubling brackets the answer and bisection finds it exactly.
    """
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be in (0, 1), got {power}")

    def enough(n: int) -> bool:
        return power_of_paired_test(n, delta, auc, prevalence, correlation, alpha, one_sided) >= power

    high = 2
    while not enough(high):
        if high >= max_rows:
            raise ValueError(f"more than {max_rows} rows needed")
        high = min(2 * high, max_rows)
    low = high // 2  # not enough (or 1, below every bracket)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high


# ---------------------------------------------------------------- monitoring


def rolling_auc(
    days: Sequence[tuple[Any, Any, Any]], window: int = 7, confidence: float = 0.95,
) -> list[dict[str, Any]]:
    """Trailing-window live AUC per label day: the mean of within-day AUCs, with a DeLong interval.

    For each day (in label-day order), the window is the trailing ``window`` days ending on it: calendar
    days when label days are dates (a missing day leaves a gap rather than stretching the window),
    otherwise positions in the sorted sequence. Days without two rows of each class are skipped;
    ``days_used`` counts the rest (fewer than ``window`` at the start). SE of the mean =
    sqrt(sum of daily variances) / k (independent days); the interval is on the logit scale, as ``auc_ci``.
    """
    if window < 1:
        raise ValueError("window must be at least 1")
    ordered = sorted(days, key=lambda entry: entry[0])
    label_days = [entry[0] for entry in ordered]
    if len(set(label_days)) != len(label_days):
        raise ValueError("label days must be unique")
    estimates = [auc_with_variance(y, p) for _, y, p in ordered]
    calendar = all(isinstance(day, dt.date) for day in label_days)
    rows = []
    for i, day in enumerate(label_days):
        if calendar:
            members = [j for j in range(i + 1) if (day - label_days[j]).days < window]
        else:
            members = list(range(max(0, i - window + 1), i + 1))
        used = [estimates[j] for j in members if math.isfinite(estimates[j].variance)]
        k = len(used)
        mean = float(np.mean([e.auc for e in used])) if k else math.nan
        se = math.sqrt(sum(e.variance for e in used)) / k if k else math.nan
        low, high = _logit_interval(mean, se, confidence)
        rows.append({
            "label_day": _json_value(day), "auc": mean, "se": se, "ci_low": low, "ci_high": high,
            "days_used": k, "rows": sum(e.n for e in used), "window": window,
        })
    return rows
