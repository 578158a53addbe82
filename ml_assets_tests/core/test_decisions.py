"""The gates, as paired statistics: sanity, choice and promotion (the champion's ratchet and track record)."""
from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from ml_assets.core import decisions as D
from ml_assets.core import stats
from ml_assets_tests.core.conftest import XGB_SMALL

BUDGET = {"parity_passed": True, "latency_p95_ms": 1.0, "size_bytes": 1000}


def _promotion(y, candidate, champion, *, references=None, evidence=None, slices=None, policy=D.PromotionPolicy(),
               **budget):
    return D.promotion(y, candidate, champion=champion, champion_name="flight_delay_xgboost 1.0.0",
                       references=references or {}, evidence=evidence or [], slices=slices or {},
                       policy=policy, **{**BUDGET, **budget})


def _scores(seed: int, n: int, noise: float = 1.0, rate: float = 0.25):
    """Labels and a champion score with signal (AUC about 0.6-0.75 depending on ``noise``)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rate).astype(float)
    e = rng.normal(0, 1, n)
    return y, y + noise * e, e, rng


def _as_good(y, e, rng, noise: float = 1.0, correlation: float = 0.8):
    """Another scorer of the same quality, correlated with the first (as two models trained on similar data)."""
    return y + noise * (correlation * e + math.sqrt(1 - correlation ** 2) * rng.normal(0, 1, y.size))


# ---------------------------------------------------------------------------------------------- sanity


@pytest.fixture(scope="module")
def holdout_scores(spec, split, inputs, xgb_model):
    from ml_assets.core.families import xgboost as X

    holdout = split.holdout
    y = holdout[spec.label.name].cast(pl.Float64).to_numpy()
    baseline = holdout.select(pl.sql_expr(spec.baseline.expression).cast(pl.Float64)).to_series().to_numpy()

    def shuffled(frame, seed):
        labels = frame[spec.label.name].sample(fraction=1.0, shuffle=True, seed=seed)
        return frame.with_columns(labels.alias(spec.label.name))

    noise = X.train(shuffled(split.train, 1), shuffled(split.valid, 2), inputs, params=XGB_SMALL, seed=7)
    return y, X.predict(xgb_model, holdout), X.predict(noise, holdout), baseline


def test_a_real_candidate_passes_sanity(holdout_scores):
    y, real, _, baseline = holdout_scores
    verdict = D.sanity(y, real, baseline)
    assert verdict["passed"], verdict
    assert verdict["auc_ci_low"] > 0.5 and verdict["auc_ci_low"] < verdict["auc"] < verdict["auc_ci_high"]
    assert verdict["p_worse_than_baseline"] >= 0.05 and verdict["reason"].startswith("above chance")


def test_a_candidate_trained_on_shuffled_labels_fails_sanity(holdout_scores):
    y, _, noise, baseline = holdout_scores
    verdict = D.sanity(y, noise, baseline)
    assert not verdict["passed"], verdict
    assert "includes chance (0.5)" in verdict["reason"]
    assert verdict["auc_ci_low"] <= 0.5


def test_a_candidate_significantly_worse_than_the_baseline_fails_sanity(holdout_scores):
    y, real, _, baseline = holdout_scores
    reversed_baseline = -baseline
    verdict = D.sanity(y, reversed_baseline, real)  # worse than chance and than the reference
    assert not verdict["passed"] and "significantly worse than the baseline" in verdict["reason"]


def test_sanity_needs_both_classes():
    verdict = D.sanity(np.ones(10), np.linspace(0, 1, 10), np.zeros(10))
    assert not verdict["passed"] and "nothing to judge on" in verdict["reason"]
    assert not D.sanity(np.zeros(0), np.zeros(0), np.zeros(0))["passed"]


def test_choose_the_best_qualified_candidate():
    assert D.choose({"xgboost": 0.70, "mlp": 0.72, "logistic": 0.69}, {}) == "mlp"
    assert D.choose({"xgboost": 0.70, "mlp": 0.72}, {"mlp": "behavior_directional failed"}) == "xgboost"
    assert D.choose({"xgboost": 0.70, "mlp": math.nan}, {}) == "xgboost"
    assert D.choose({"xgboost": 0.70, "logistic": 0.70}, {}) == "xgboost"  # a tie: the first listed
    assert D.choose({"xgboost": 0.70}, {"xgboost": "x"}) is None and D.choose({}, {}) is None


# ---------------------------------------------------------------------------------------------- promotion


def test_the_first_champion_needs_only_parity_and_budgets():
    y, p, _, _ = _scores(0, 500)
    assert _promotion(y, p, None).promote
    assert _promotion(y, p, None).reason == "every comparison passed"
    broken = _promotion(y, p, None, parity_passed=False)
    assert not broken.promote and "onnx_parity" in broken.reason
    slow = _promotion(y, p, None, latency_p95_ms=500.0)
    assert not slow.promote and "latency" in slow.reason
    big = _promotion(y, p, None, size_bytes=10**9)
    assert not big.promote and "size" in big.reason


def test_a_candidate_identical_to_the_champion_is_promoted(holdout_scores):
    y, real, _, _ = holdout_scores
    decision = _promotion(y, real.copy(), real)
    assert decision.promote, decision.reason
    (auc,) = [r for r in decision.rows if r["check"] == "auc"]
    assert auc["delta"] == 0.0 and auc["p_worse"] == 1.0 and auc["against"].startswith("champion")


def test_a_clearly_worse_candidate_is_refused(holdout_scores):
    y, real, noise, _ = holdout_scores
    decision = _promotion(y, noise, real)
    assert not decision.promote
    assert "auc [champion flight_delay_xgboost 1.0.0]: not significantly worse" in decision.reason
    (auc,) = [r for r in decision.rows if r["check"] == "auc"]
    assert auc["p_worse"] < 0.05 and auc["ci_high"] < 0 and auc["rows"] == y.size


def test_within_noise_is_not_worse():
    y, champion, e, rng = _scores(1, 900)
    decision = _promotion(y, _as_good(y, e, rng), champion)
    assert decision.promote, decision.reason


def test_the_ratchet_guard_uses_the_recent_champions():
    """A run of promotions each a little worse cannot walk quality down: the recent champions are references."""
    y, best, e, rng = _scores(2, 4000, noise=0.8)
    champion = y + 1.2 * e  # the current champion: already worse than the best recent one
    candidate = _as_good(y, e, rng, noise=1.2)  # as good as the champion
    alone = _promotion(y, candidate, champion)
    assert alone.promote, alone.reason  # against the champion alone it would pass
    guarded = _promotion(y, candidate, champion,
                         references={"flight_delay_xgboost 1.0.0": champion, "flight_delay_mlp 1.0.0": best})
    assert not guarded.promote
    assert "[recent champion flight_delay_mlp 1.0.0]" in guarded.reason
    assert "[champion flight_delay_xgboost 1.0.0]" not in guarded.reason
    # When the champion is itself the best reference, it is compared once.
    same = _promotion(y, candidate, champion, references={"flight_delay_xgboost 1.0.0": champion})
    assert [r["against"] for r in same.rows if r["check"] == "auc"] == ["champion flight_delay_xgboost 1.0.0"]


def test_the_ratchet_guard_never_keeps_a_worse_champion():
    """Above the champion in effect a candidate is no step down: an older champion that suits today's rows better
    does not make the system keep the worse model that serves now (2013-02-03: candidate 0.574, champion 0.554,
    a champion of 8 days before 0.633; the old guard kept 0.554)."""
    y, best, e, rng = _scores(2, 4000, noise=0.8)
    champion = y + 1.6 * e
    candidate = y + 1.2 * e
    decision = _promotion(y, candidate, champion, references={"flight_delay_mlp 1.0.0": best})
    assert decision.promote, decision.reason
    guard = next(r for r in decision.rows if r["against"] == "recent champion flight_delay_mlp 1.0.0")
    assert guard["delta"] < 0 and guard["p_adjusted"] < 0.05 and "not binding" in guard["rule"]


def _track(rng, days: int, spread: float, within_se: float = 0.006) -> list[dict]:
    """Daily deltas against the champion: a day effect of SD ``spread`` plus each day's own row noise."""
    return [{"day": str(k), "delta": rng.normal(0, spread) + rng.normal(0, within_se), "variance": within_se ** 2}
            for k in range(days)]


def test_the_day_to_day_spread_of_the_family_widens_the_interval():
    """Daily candidates differ from the champion by ~0.01 from one day to the next beyond what one day's rows show
    (measured Feb-Mar 2013): a small deficit on today's rows alone is within that, a broken candidate is not."""
    y, champion, e, rng = _scores(5, 900)
    slightly = champion - 0.09 * rng.normal(0, 1, y.size) - 0.04 * y  # a little worse on today's rows
    rows_only = _promotion(y, slightly, champion)
    spread_track = _track(np.random.default_rng(1), 28, spread=0.012)
    assert D.day_spread(spread_track) > 0.005
    with_spread = _promotion(y, slightly, champion, evidence=[*spread_track, {"day": "today", "delta": 0.0,
                                                                               "variance": 1e-5}])
    assert not rows_only.promote, rows_only.reason
    assert with_spread.promote, with_spread.reason
    broken = _promotion(y, champion + 1.5 * rng.normal(0, 1, y.size), champion, evidence=spread_track)
    assert not broken.promote, broken.reason


def test_pooled_evidence_is_the_equal_weight_mean_of_the_days():
    days = []
    for seed in range(4):
        y, a, e, rng = _scores(10 + seed, 700)
        days.append((y, _as_good(y, e, rng) - 0.1 * (seed % 2) * y, a))
    records = [D.day_evidence(*d) for d in days]
    pooled = D.pooled_evidence(records, alpha=0.05)
    reference = stats.pooled_paired_difference(days, confidence=0.9)
    assert pooled["days"] == reference.n_days == 4
    assert pooled["delta"] == pytest.approx(reference.delta, abs=1e-12)
    assert pooled["se"] == pytest.approx(reference.se, abs=1e-12)
    assert pooled["p_worse"] == pytest.approx(reference.p_value_a_worse, abs=1e-9)
    assert (pooled["ci_low"], pooled["ci_high"]) == pytest.approx((reference.ci_low, reference.ci_high), abs=1e-9)
    y = np.array([1.0, 1.0, 1.0])
    assert D.day_evidence(y, np.array([0.1, 0.2, 0.3]), np.array([0.3, 0.2, 0.1])) is None  # one class: no record


def test_a_family_slightly_worse_every_day_fails_its_track_record():
    y, champion, e, rng = _scores(3, 900)
    candidate = _as_good(y, e, rng)
    day = {"delta": -0.01, "variance": 0.01 ** 2}  # one such day: p = 0.16, no evidence
    assert _promotion(y, candidate, champion, evidence=[day]).promote
    week = _promotion(y, candidate, champion, evidence=[day] * 7)
    assert not week.promote and "track_record" in week.reason
    (record,) = [r for r in week.rows if r["check"] == "track_record"]
    assert record["days"] == 7 and record["p_worse"] < 0.05
    # only the last evidence_days count: old bad days age out
    recovered = _promotion(y, candidate, champion, evidence=[day] * 5 + [{"delta": 0.0, "variance": 1e-4}] * 7)
    assert recovered.promote, recovered.reason


def _sliced(seed: int, bad: dict[str, int], good_rows: int = 3000):
    """Slice A (``good_rows``) where the candidate is better, and each ``bad`` slice where it scores at random."""
    rng = np.random.default_rng(seed)
    names = np.array(["A"] * good_rows + [n for n, rows in bad.items() for _ in range(rows)])
    n = names.size
    y = (rng.random(n) < 0.3).astype(float)
    champion = y + rng.normal(0, 1.0, n)
    candidate = np.where(names == "A", y + rng.normal(0, 0.6, n), rng.normal(0, 1.0, n))
    return y, candidate, champion, {"part": names}


def test_slices_are_judged_only_above_the_power_based_size():
    policy = D.PromotionPolicy()
    assert policy.slice_rows == stats.min_rows_for_power(policy.slice_drop, alpha=policy.alpha) > 100
    assert policy.describe()["slice_power"] >= 0.8
    small = policy.slice_rows - 50
    y, candidate, champion, slices = _sliced(4, {"B": small})
    decision = _promotion(y, candidate, champion, slices=slices, policy=policy)
    assert decision.promote, decision.reason  # slice B is much worse, but too small to judge
    judged = [r["against"] for r in decision.rows if r["against"].startswith("part=")]
    assert judged == ["part=A vs flight_delay_xgboost 1.0.0"]

    y, candidate, champion, slices = _sliced(4, {"B": small, "C": policy.slice_rows + 300})
    refused = _promotion(y, candidate, champion, slices=slices, policy=policy)
    assert not refused.promote and "part=C vs" in refused.reason and "part=B" not in refused.reason
    (overall,) = [r for r in refused.rows if r["against"].startswith("champion")]
    assert overall["passed"]  # better overall: only the slice gate catches it
    assert _promotion(y, candidate, champion, slices=slices,
                      policy=D.PromotionPolicy(min_slice_rows=10_000)).promote


def test_slices_are_corrected_with_holm():
    """Ten slices where the candidate is as good: by chance one has p < 0.05; Holm keeps it from refusing."""
    rng = np.random.default_rng(9)
    n = 4000
    y = (rng.random(n) < 0.25).astype(float)
    e = rng.normal(0, 1, n)
    champion, candidate = y + e, y + 0.8 * e + 0.6 * rng.normal(0, 1, n)
    slices = {"part": np.repeat([f"s{i}" for i in range(10)], 400)}
    decision = _promotion(y, candidate, champion, slices=slices)
    rows = [r for r in decision.rows if r["against"].startswith("part=")]
    assert len(rows) == 10
    assert min(r["p_worse"] for r in rows) < 0.05  # uncorrected, this slice would refuse the candidate
    assert [r["p_adjusted"] for r in rows] == pytest.approx(stats.holm_adjust([r["p_worse"] for r in rows]))
    assert decision.promote, decision.reason


def test_slices_with_one_class_or_none_values_are_skipped():
    y, champion, e, rng = _scores(5, 1200)
    values = np.array(["A"] * 600 + [None] * 600, dtype=object)
    y[:600] = 0.0  # slice A: one class, nothing to judge
    decision = _promotion(y, _as_good(y, e, rng), champion, slices={"part": values})
    assert not [r for r in decision.rows if r["against"].startswith("part=")]


def test_scores_with_nan_are_an_error_not_a_promotion():
    y, champion, e, rng = _scores(6, 300)
    broken = _as_good(y, e, rng)
    broken[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        _promotion(y, broken, champion)


def test_the_decision_explains_itself():
    y, champion, e, rng = _scores(7, 600)
    decision = _promotion(y, _as_good(y, e, rng), champion)
    assert [r["check"] for r in decision.rows] == ["onnx_parity", "latency", "size", "auc"]
    assert all(isinstance(r["passed"], bool) and r["rule"] for r in decision.rows)
    auc = decision.rows[-1]
    assert {"candidate_auc", "reference_auc", "delta", "ci_low", "ci_high", "p_worse", "rows"} <= set(auc)
    assert D.Decision(True, []).reason == "no champion yet"
