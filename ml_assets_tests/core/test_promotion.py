import math

import pytest

from ml_assets.core.promotion import PromotionPolicy, decide


def _eval(auc: float, slices: dict[str, tuple[float, int]]) -> dict:
    return {"overall": {"roc_auc": auc},
            "slices": [{"slice": "origin", "value": v, "roc_auc": a, "rows": n} for v, (a, n) in slices.items()]}


BUDGET = {"parity_passed": True, "latency_p95_ms": 1.0, "size_bytes": 1000}


def test_first_champion_needs_only_parity_and_budgets():
    assert decide(_eval(0.6, {}), None, **BUDGET).promote
    assert not decide(_eval(0.9, {}), None, **{**BUDGET, "parity_passed": False}).promote
    slow = decide(_eval(0.9, {}), None, **{**BUDGET, "latency_p95_ms": 500.0})
    assert not slow.promote and "latency" in slow.reason


def test_worse_overall_is_refused_within_tolerance_is_accepted():
    champion = _eval(0.70, {"EWR": (0.70, 300)})
    assert not decide(_eval(0.68, {"EWR": (0.70, 300)}), champion, **BUDGET).promote
    assert decide(_eval(0.695, {"EWR": (0.70, 300)}), champion, **BUDGET).promote
    assert decide(_eval(0.75, {"EWR": (0.72, 300)}), champion, **BUDGET).promote


def test_worse_on_an_important_slice_is_refused_small_slices_ignored():
    champion = _eval(0.70, {"EWR": (0.75, 300), "JFK": (0.80, 20)})
    refused = decide(_eval(0.72, {"EWR": (0.60, 300), "JFK": (0.80, 20)}), champion, **BUDGET)
    assert not refused.promote and "origin=EWR" in refused.reason
    tiny_slice_worse = decide(_eval(0.72, {"EWR": (0.75, 300), "JFK": (0.10, 20)}), champion, **BUDGET)
    assert tiny_slice_worse.promote
    checked = {c["slice"] for c in tiny_slice_worse.comparisons}
    assert "origin=EWR" in checked and "origin=JFK" not in checked


def test_nan_auc_never_passes_as_better():
    champion = _eval(0.70, {})
    assert not decide(_eval(math.nan, {}), champion, **BUDGET).promote
    assert decide(_eval(0.6, {}), _eval(math.nan, {}), **BUDGET).promote  # nothing to be worse than


def test_policy_is_configurable():
    champion = _eval(0.70, {})
    assert decide(_eval(0.66, {}), champion, policy=PromotionPolicy(auc_tolerance=0.05), **BUDGET).promote


def test_hanley_mcneil_standard_error():
    from ml_assets.core.promotion import auc_standard_error

    assert auc_standard_error(0.5, 100, 0.5) == pytest.approx(0.0580, abs=1e-3)
    assert auc_standard_error(0.5, 10_000, 0.5) < auc_standard_error(0.5, 100, 0.5) / 5
    assert math.isnan(auc_standard_error(0.7, 100, 0.0))  # one class: no AUC, no error


def test_slice_loss_within_sampling_noise_passes_clear_loss_fails():
    def with_rate(auc, slice_auc, rows):
        e = _eval(auc, {"EV": (slice_auc, rows)})
        e["slices"][0]["late_rate"] = 0.3
        return e

    champion = with_rate(0.60, 0.58, 150)
    noisy = decide(with_rate(0.65, 0.47, 150), champion, **BUDGET)  # 0.11 below, SE of the gap ~0.07
    assert noisy.promote, noisy.comparisons
    clear = decide(with_rate(0.65, 0.47, 3000), with_rate(0.60, 0.58, 3000), **BUDGET)
    assert not clear.promote
