"""The gate statistics against brute-force formulas, resampling and simulated nulls (all seeded)."""
from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
import sys
import time

import numpy as np
import pytest
from scipy.stats import chi2_contingency, norm, rankdata

from ml_assets.core import stats
from ml_assets.core.stats import (
    AucEstimate,
    Interval,
    auc_ci,
    auc_with_variance,
    hanley_mcneil_variance,
    holm_adjust,
    min_rows_for_power,
    paired_auc_difference,
    paired_bootstrap_auc_difference,
    pooled_paired_difference,
    power_of_paired_test,
    rolling_auc,
    significantly_below,
    two_proportion_test,
)

# ---------------------------------------------------------------- data and brute-force references


def scored_rows(rng: np.random.Generator, n: int, noise_a: float = 1.0, noise_b: float = 1.0):
    """Labels driven by a latent signal (~25% positive); each scorer sees the signal plus its own noise."""
    signal = rng.normal(size=n)
    y = rng.random(n) < 1.0 / (1.0 + np.exp(-(2.0 * signal - 1.5)))
    return y, signal + noise_a * rng.normal(size=n), signal + noise_b * rng.normal(size=n)


def tied_rows(rng: np.random.Generator, n: int):
    """Coarse integer scores, so many ties within and across the classes."""
    y = rng.random(n) < 0.35
    return y, rng.integers(0, 6, size=n) + y * rng.integers(0, 3, size=n)


def psi_matrix(y, p) -> np.ndarray:
    """psi(x_i, y_j) for every (positive, negative) pair: 1 if the positive scores higher, 1/2 if tied."""
    y = np.asarray(y, dtype=bool)
    pos, neg = np.asarray(p, float)[y][:, None], np.asarray(p, float)[~y][None, :]
    return (pos > neg) + 0.5 * (pos == neg)


def naive_components(y, p) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's V10 (per positive) and V01 (per negative) straight from the pair matrix, O(n^2)."""
    psi = psi_matrix(y, p)
    return psi.mean(axis=1), psi.mean(axis=0)


def naive_delong_variance(y, p) -> float:
    v10, v01 = naive_components(y, p)
    auc = v10.mean()
    s10 = ((v10 - auc) ** 2).sum() / (v10.size - 1)
    s01 = ((v01 - auc) ** 2).sum() / (v01.size - 1)
    return s10 / v10.size + s01 / v01.size


def rank_auc(y, p) -> float:
    y = np.asarray(y, dtype=bool)
    n_pos, n_neg = y.sum(), (~y).sum()
    return (rankdata(p)[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


# ---------------------------------------------------------------- single AUC


@pytest.mark.parametrize("seed", range(5))
def test_auc_equals_brute_force_mann_whitney_with_ties(seed):
    y, p = tied_rows(np.random.default_rng(seed), 60)
    assert auc_with_variance(y, p).auc == pytest.approx(psi_matrix(y, p).mean(), abs=1e-14)
    assert len(np.unique(p)) < 15  # the case really has ties


@pytest.mark.parametrize("seed", range(5))
def test_delong_variance_equals_naive_structural_components(seed):
    rng = np.random.default_rng(100 + seed)
    y, p = tied_rows(rng, 80) if seed % 2 else scored_rows(rng, 80)[:2]
    estimate = auc_with_variance(y, p)
    assert estimate.variance == pytest.approx(naive_delong_variance(y, p), abs=1e-12, rel=0)
    assert estimate.se == pytest.approx(math.sqrt(estimate.variance))
    assert (estimate.n, estimate.n_pos + estimate.n_neg, estimate.n_pos) == (80, 80, int(np.sum(y)))


def test_delong_variance_close_to_stratified_bootstrap_variance():
    rng = np.random.default_rng(7)
    y, p, _ = scored_rows(rng, 2000)
    pos, neg = p[y], p[~y]
    labels = np.r_[np.ones(pos.size, bool), np.zeros(neg.size, bool)]
    boot = [
        rank_auc(labels, np.r_[rng.choice(pos, pos.size), rng.choice(neg, neg.size)]) for _ in range(1000)
    ]
    ratio = auc_with_variance(y, p).variance / np.var(boot, ddof=1)
    assert 0.85 < ratio < 1.15


def test_auc_undefined_without_both_classes():
    one_class = auc_with_variance(np.ones(5), np.arange(5.0))
    assert math.isnan(one_class.auc) and math.isnan(one_class.variance) and one_class.n_neg == 0
    assert all(math.isnan(v) for v in auc_ci(np.zeros(5), np.arange(5.0)))
    # One positive: the AUC exists but its DeLong variance (a sample variance over positives) does not.
    single = auc_with_variance([0, 0, 1, 0], [0.1, 0.2, 0.9, 0.3])
    assert single.auc == 1.0 and math.isnan(single.variance)


def test_labels_and_scores_are_validated():
    with pytest.raises(ValueError, match="0/1"):
        auc_with_variance([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="labels but"):
        auc_with_variance([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        auc_with_variance([0, 1, 1], [0.1, math.nan, 0.3])
    bool_and_float = auc_with_variance(np.array([False, True, True, False]), [0.1, 0.8, 0.3, 0.4])
    assert bool_and_float == auc_with_variance([0.0, 1.0, 1.0, 0.0], [0.1, 0.8, 0.3, 0.4])


def test_auc_ci_stays_inside_unit_interval_and_covers_the_true_auc():
    rng = np.random.default_rng(11)
    near_perfect = auc_ci(*scored_rows(rng, 60, noise_a=0.05)[:2])
    assert 0.0 < near_perfect.low < near_perfect.high < 1.0
    # Binormal classes: positives ~ N(mu, 1), negatives ~ N(0, 1), so the true AUC = Phi(mu / sqrt 2).
    mu, n_pos, n_neg = 1.0, 60, 140
    true_auc = norm.cdf(mu / math.sqrt(2))
    y = np.r_[np.ones(n_pos), np.zeros(n_neg)]
    covered = [auc_ci(y, np.r_[rng.normal(mu, 1, n_pos), rng.normal(0, 1, n_neg)]).contains(true_auc)
               for _ in range(400)]
    assert 0.91 <= np.mean(covered) <= 0.98


def test_auc_ci_is_undefined_at_a_perfect_auc():
    assert all(math.isnan(v) for v in auc_ci([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]))


# ---------------------------------------------------------------- paired DeLong


def test_identical_scorers_give_zero_difference_and_p_one():
    y, p, _ = scored_rows(np.random.default_rng(3), 500)
    for other in (p, 3.0 * p + 1.0):  # a monotone transform ranks the rows identically
        result = paired_auc_difference(y, p, other)
        assert (result.delta, result.se, result.z) == (0.0, 0.0, 0.0)
        assert result.p_value_two_sided == 1.0 and result.p_value_a_worse == 1.0
        assert (result.ci_low, result.ci_high) == (0.0, 0.0)


def test_paired_variance_equals_naive_delong_covariance():
    y, p_a, p_b = scored_rows(np.random.default_rng(5), 120, noise_a=1.0, noise_b=1.5)
    (v10_a, v01_a), (v10_b, v01_b) = naive_components(y, p_a), naive_components(y, p_b)
    s10, s01 = np.cov(v10_a, v10_b), np.cov(v01_a, v01_b)  # ddof=1, as DeLong
    covariance = s10 / v10_a.size + s01 / v01_a.size
    expected_variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    result = paired_auc_difference(y, p_a, p_b)
    assert result.se**2 == pytest.approx(expected_variance, abs=1e-12, rel=0)
    assert result.delta == pytest.approx(v10_a.mean() - v10_b.mean(), abs=1e-14)
    assert result.ci_low < result.delta < result.ci_high


def test_noisy_copy_is_detected_as_worse_and_not_the_other_way_round():
    rng = np.random.default_rng(8)
    y, p, _ = scored_rows(rng, 5000)
    noisy = p + 1.0 * rng.normal(size=p.size)
    worse = paired_auc_difference(y, noisy, p)
    assert worse.delta < 0 and worse.p_value_a_worse < 1e-3 and worse.ci_high < 0
    better = paired_auc_difference(y, p, noisy)
    assert better.p_value_a_worse > 0.999
    assert better.p_value_two_sided == pytest.approx(worse.p_value_two_sided)


def test_paired_test_is_calibrated_under_the_null():
    rng = np.random.default_rng(2024)
    p_values = [paired_auc_difference(*scored_rows(rng, 300)).p_value_two_sided for _ in range(400)]
    assert 0.02 <= np.mean(np.array(p_values) < 0.05) <= 0.09


def test_paired_difference_undefined_with_one_class():
    result = paired_auc_difference(np.zeros(4), [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1])
    assert math.isnan(result.delta) and math.isnan(result.p_value_two_sided) and result.n == 4


# ---------------------------------------------------------------- several days


def test_pooled_single_day_equals_the_single_day_result():
    day = scored_rows(np.random.default_rng(9), 400, noise_a=1.3)
    pooled, single = pooled_paired_difference([day]), paired_auc_difference(*day)
    assert pooled.n_days == 1
    for field in ("auc_a", "auc_b", "delta", "se", "ci_low", "ci_high", "z", "p_value_a_worse", "n", "n_pos"):
        assert getattr(pooled, field) == pytest.approx(getattr(single, field), rel=1e-12), field


def test_pooled_se_shrinks_with_the_square_root_of_the_number_of_days():
    # The same day seen 9 times: each copy alone is inconclusive, together they are not.
    day = scored_rows(np.random.default_rng(10), 300, noise_a=2.0)
    single, pooled = paired_auc_difference(*day), pooled_paired_difference([day] * 9)
    assert single.ci_low < 0 < single.ci_high and single.z < -0.7  # worse, but not conclusively
    assert pooled.delta == pytest.approx(single.delta) and pooled.se == pytest.approx(single.se / 3)
    assert pooled.ci_high < 0 and pooled.n_days == 9 and pooled.n == 9 * 300


def test_several_days_of_a_true_difference_exclude_zero_where_single_days_do_not():
    rng = np.random.default_rng(12)
    days = [scored_rows(rng, 400, noise_a=1.25) for _ in range(12)]
    one_class_day = (np.zeros(50), rng.random(50), rng.random(50))
    pooled = pooled_paired_difference(days + [one_class_day])
    singles = [paired_auc_difference(*day) for day in days]
    assert pooled.n_days == 12 and pooled.n == 12 * 400  # the one-class day is skipped
    assert pooled.ci_high < 0 and pooled.p_value_a_worse < 0.01
    assert np.mean([d.ci_low < 0 < d.ci_high for d in singles]) >= 2 / 3
    assert pooled.se < min(d.se for d in singles)
    assert pooled.delta == pytest.approx(np.mean([d.delta for d in singles]))  # equal weights


def test_pooled_without_usable_days_is_undefined():
    result = pooled_paired_difference([(np.ones(5), np.arange(5.0), np.arange(5.0))])
    assert result.n_days == 0 and math.isnan(result.delta) and math.isnan(result.ci_low)


# ---------------------------------------------------------------- bootstrap cross-check


def test_weighted_resample_auc_equals_auc_of_the_expanded_rows():
    rng = np.random.default_rng(13)
    y, p = tied_rows(rng, 40)
    pos, neg = p[y].astype(float), p[~y].astype(float)
    w_pos, w_neg = rng.integers(0, 4, (3, pos.size)), rng.integers(0, 4, (3, neg.size))
    got = stats._weighted_aucs(pos, neg, w_pos, w_neg) * (pos.size * neg.size)
    for b in range(3):
        expanded = psi_matrix(np.r_[np.ones(w_pos[b].sum()), np.zeros(w_neg[b].sum())],
                              np.r_[np.repeat(pos, w_pos[b]), np.repeat(neg, w_neg[b])])
        assert got[b] == pytest.approx(expanded.sum(), abs=1e-9)


def test_bootstrap_and_delong_intervals_agree():
    y, p_a, p_b = scored_rows(np.random.default_rng(14), 2000, noise_a=1.2)
    delong, boot = paired_auc_difference(y, p_a, p_b), paired_bootstrap_auc_difference(y, p_a, p_b)
    assert boot.delta == delong.delta and boot.method == "bootstrap"
    width_ratio = (boot.ci_high - boot.ci_low) / (delong.ci_high - delong.ci_low)
    assert 0.7 < width_ratio < 1.3
    assert abs((boot.ci_low + boot.ci_high) / 2 - delong.delta) < 0.25 * (delong.ci_high - delong.ci_low)


def test_bootstrap_is_seeded_fast_and_degenerate_for_identical_scorers():
    y, p_a, p_b = scored_rows(np.random.default_rng(15), 1000)
    start = time.perf_counter()
    first = paired_bootstrap_auc_difference(y, p_a, p_b, n_boot=1000, seed=1)
    assert time.perf_counter() - start < 1.0
    assert first == paired_bootstrap_auc_difference(y, p_a, p_b, n_boot=1000, seed=1)
    assert first.se != paired_bootstrap_auc_difference(y, p_a, p_b, n_boot=1000, seed=2).se
    same = paired_bootstrap_auc_difference(y, p_a, p_a, n_boot=200)
    assert (same.delta, same.se, same.ci_low, same.ci_high, same.p_value_two_sided) == (0, 0, 0, 0, 1)


# ---------------------------------------------------------------- multiplicity and proportions


def test_holm_matches_a_hand_computed_example():
    # Sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06.
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjust([0.5, 0.6]) == [1.0, 1.0]  # capped
    assert holm_adjust([]) == []


def test_holm_leaves_nan_out_of_the_count():
    adjusted = holm_adjust([0.01, math.nan, 0.04])
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.04)
    with pytest.raises(ValueError):
        holm_adjust([1.5])


def test_two_proportion_test_matches_newcombe_and_chi_square():
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 vs 48/80, method 10 interval.
    result = two_proportion_test(56, 70, 48, 80)
    assert result["difference"] == pytest.approx(0.2)
    assert result["ci"] == pytest.approx([0.0524, 0.3339], abs=1e-4)
    chi2 = chi2_contingency([[56, 14], [48, 32]], correction=False)
    assert result["z"] ** 2 == pytest.approx(chi2.statistic)
    assert result["p_value"] == pytest.approx(chi2.pvalue)
    assert two_proportion_test(10, 10, 5, 5)["p_value"] == 1.0
    assert math.isnan(two_proportion_test(0, 0, 3, 10)["difference"])


def test_significantly_below():
    assert significantly_below(0.60, 0.02, 0.68)
    assert not significantly_below(0.66, 0.02, 0.68)  # z = -1, p = 0.16
    assert not significantly_below(0.70, 0.02, 0.68)
    assert not significantly_below(math.nan, 0.02, 0.68) and not significantly_below(0.5, math.nan, 0.68)
    assert significantly_below(0.67, 0.0, 0.68) and not significantly_below(0.68, 0.0, 0.68)


# ---------------------------------------------------------------- power


def test_hanley_mcneil_variance_by_hand():
    # AUC 0.8, 50 + 50: Q1 = 2/3, Q2 = 32/45 -> (0.16 + 49 (2/3 - 0.64) + 49 (32/45 - 0.64)) / 2500.
    expected = (0.16 + 49 * (2 / 3 - 0.64) + 49 * (32 / 45 - 0.64)) / 2500
    assert hanley_mcneil_variance(0.8, 50, 50) == pytest.approx(expected)
    assert math.sqrt(expected) == pytest.approx(0.0445, abs=5e-4)


def test_power_follows_the_documented_formula():
    # 1000 rows at 20%: champion at 0.68 and candidate at 0.63 (Hanley-McNeil), r = 0.6, one-sided 5%.
    v_a, v_b = hanley_mcneil_variance(0.68, 200, 800), hanley_mcneil_variance(0.63, 200, 800)
    sd_null = math.sqrt(2 * v_a * 0.4)
    sd_alternative = math.sqrt(v_a + v_b - 1.2 * math.sqrt(v_a * v_b))
    expected = norm.cdf((0.05 - norm.ppf(0.95) * sd_null) / sd_alternative)
    assert power_of_paired_test(1000, 0.05) == pytest.approx(expected, rel=1e-12)
    assert 0.7 < expected < 0.9


def test_min_rows_is_the_exact_power_boundary_and_monotone_in_delta(capsys):
    sizes = [min_rows_for_power(delta) for delta in (0.08, 0.05, 0.03, 0.02, 0.01)]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    for delta, n in zip((0.08, 0.05, 0.03, 0.02, 0.01), sizes):
        assert power_of_paired_test(n, delta) >= 0.8 > power_of_paired_test(n - 1, delta)
    two_sided = min_rows_for_power(0.03, one_sided=False, power=0.9, correlation=0.8, prevalence=0.3)
    assert power_of_paired_test(two_sided, 0.03, one_sided=False, correlation=0.8, prevalence=0.3) >= 0.9
    assert power_of_paired_test(two_sided - 1, 0.03, one_sided=False, correlation=0.8, prevalence=0.3) < 0.9
    assert capsys.readouterr().out == ""


def test_power_depends_on_the_assumptions_in_the_expected_direction():
    base = min_rows_for_power(0.03)
    assert min_rows_for_power(0.03, correlation=0.9) < base  # more alike models: a sharper paired test
    assert min_rows_for_power(0.03, prevalence=0.05) > base  # rarer positives: less information
    assert min_rows_for_power(0.03, one_sided=False) > base
    assert min_rows_for_power(0.03, power=0.9) > base
    powers = [power_of_paired_test(n, 0.03) for n in range(5, 5000, 37)]
    assert powers == sorted(powers) and power_of_paired_test(2, 0.03) == 0.0  # < 1 expected positive
    with pytest.raises(ValueError):
        min_rows_for_power(0.0)
    with pytest.raises(ValueError):
        min_rows_for_power(0.02, correlation=1.0)


# ---------------------------------------------------------------- monitoring


def daily_series(rng: np.random.Generator, first: dt.date, count: int, rows: int = 200):
    return [(first + dt.timedelta(days=i), *scored_rows(rng, rows)[:2]) for i in range(count)]


def test_rolling_auc_window_at_the_start_and_mean_of_daily_aucs():
    days = daily_series(np.random.default_rng(16), dt.date(2013, 3, 1), 5)
    rows = rolling_auc(days, window=3)
    assert [r["days_used"] for r in rows] == [1, 2, 3, 3, 3]
    assert [r["label_day"] for r in rows] == [f"2013-03-0{i}" for i in range(1, 6)]
    estimates = [auc_with_variance(y, p) for _, y, p in days]
    assert rows[4]["auc"] == pytest.approx(np.mean([e.auc for e in estimates[2:5]]))
    assert rows[4]["se"] == pytest.approx(math.sqrt(sum(e.variance for e in estimates[2:5])) / 3)
    assert rows[4]["rows"] == 600 and rows[4]["ci_low"] < rows[4]["auc"] < rows[4]["ci_high"]
    # A one-day window is that day's own DeLong interval.
    first = rolling_auc(days, window=1)[0]
    assert (first["ci_low"], first["ci_high"]) == pytest.approx(tuple(auc_ci(*days[0][1:])))
    json.dumps(rows)


def test_rolling_auc_skips_one_class_days_and_respects_calendar_gaps():
    rng = np.random.default_rng(17)
    days = daily_series(rng, dt.date(2013, 3, 1), 4)
    days[1] = (days[1][0], np.zeros(200), days[1][2])  # no late flights that day
    days.append((dt.date(2013, 3, 10), *scored_rows(rng, 200)[:2]))  # after a gap of five missing days
    rows = rolling_auc(list(reversed(days)), window=3)  # input order does not matter
    assert [r["days_used"] for r in rows] == [1, 1, 2, 2, 1]
    assert rows[1]["auc"] == pytest.approx(rows[0]["auc"])
    # String label days: the window counts entries.
    by_position = rolling_auc([(f"d{i}", y, p) for i, (_, y, p) in enumerate(days)], window=3)
    assert [r["days_used"] for r in by_position] == [1, 1, 2, 2, 3]


def test_rolling_auc_with_no_usable_day_is_nan():
    (row,) = rolling_auc([(dt.date(2013, 1, 1), np.ones(10), np.arange(10.0))])
    assert row["days_used"] == 0 and math.isnan(row["auc"]) and math.isnan(row["ci_low"])


# ---------------------------------------------------------------- storage and import cost


def test_results_are_json_ready():
    y, p_a, p_b = scored_rows(np.random.default_rng(18), 200)
    stored = paired_auc_difference(y, p_a, p_b).as_dict()
    assert all(type(v) in (float, int, str) for v in stored.values())
    assert json.loads(json.dumps(stored))["delta"] == pytest.approx(stored["delta"])
    undefined = auc_with_variance(np.ones(3), [0.1, 0.2, 0.3]).as_dict()
    assert type(undefined["auc"]) is float and math.isnan(undefined["auc"]) and type(undefined["n"]) is int
    assert Interval(np.float64(0.1), 0.2).as_dict() == {"low": 0.1, "high": 0.2}
    assert isinstance(auc_with_variance(y, p_a), AucEstimate)


def test_import_is_cheap():
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, ml_assets.core.stats; "
         "print(sorted(m for m in ('dagster', 'matplotlib', 'polars', 'scipy.stats') if m in sys.modules))"],
        capture_output=True, text=True, check=True,
    )
    assert loaded.stdout.strip() == "[]"
