"""Behavioral checks on real feature rows: identifiers, directions, noise, odd inputs; no rows is never a pass."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from ml_assets.core import behavior as B
from ml_assets.core.spec import Directional
from ml_assets_tests.core.conftest import HOLDOUT


@pytest.fixture(scope="module")
def frame(spec, labelled_days):
    return labelled_days[HOLDOUT].drop(spec.label.name)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def weather_model(f: pl.DataFrame) -> np.ndarray:
    """Later departures, worse visibility and rain raise the probability; identifiers are ignored."""
    visib = f["visib"].fill_null(10.0).to_numpy()
    precip = f["precip"].fill_null(0.0).to_numpy()
    return _sigmoid(-1.5 + 0.05 * f["dep_hour"].fill_null(12).to_numpy() - 0.1 * visib + 5 * precip)


def tailnum_model(f: pl.DataFrame) -> np.ndarray:
    """Keyed on the plane's tail number: an identifier it must not use."""
    tails = np.array([(sum(t.encode()) % 100) / 100 for t in f["tailnum"].fill_null("").to_list()])
    return tails * 0.1 + weather_model(f) * 0.9


def test_invariance_passes_for_a_model_blind_to_identifiers(spec, frame):
    assert spec.behavior.invariant == ["tailnum", "flight"]
    result = B.invariance_check(weather_model, frame, spec.behavior.invariant)
    assert result["passed"] and result["max_abs_change"] == 0.0 and result["rows"] == frame.height


def test_invariance_fails_for_a_model_keyed_on_tailnum_or_flight_number(spec, frame):
    result = B.invariance_check(tailnum_model, frame, spec.behavior.invariant)
    assert not result["passed"] and result["max_abs_change"] > result["eps"]
    by_flight = B.invariance_check(lambda f: weather_model(f) * 0.9 + 0.1 * (f["flight"].to_numpy() % 2), frame,
                                   ["flight"])
    assert not by_flight["passed"]


def test_directional_passes_when_bad_weather_raises_risk_and_fails_when_it_lowers_it(spec, frame):
    changes, allowed = spec.behavior.directional, spec.behavior.max_wrong_share
    good = B.directional_check(weather_model, frame, changes, allowed)
    assert good["passed"] and good["worst_wrong_way_share"] == 0.0
    assert good["changes"]["precip"]["mean_shift"] > 0 and good["changes"]["visib"]["mean_shift"] > 0
    inverted = B.directional_check(lambda f: 1 - weather_model(f), frame, changes, allowed)
    assert not inverted["passed"] and inverted["changes"]["visib"]["mean_shift"] < 0
    assert inverted["worst_wrong_way_share"] > 0.5


def test_directional_judges_the_share_of_rows_moving_the_wrong_way(spec, frame):
    """A few rows moving the wrong way (interactions) pass; many fail; the bound is max_wrong_share."""
    rain = [Directional(column="precip", add=0.05, fill_null=0.0, description="+0.05 in/h")]

    def flipped(share: float) -> np.ndarray:
        return (np.arange(frame.height) % 100) < share * 100

    def partly_inverted(share: float):
        def predict(f: pl.DataFrame) -> np.ndarray:
            p = weather_model(f)
            return np.where(flipped(share)[: f.height], 1 - p, p)
        return predict

    few = B.directional_check(partly_inverted(0.05), frame, rain, 0.10)
    assert few["passed"] and few["worst_wrong_way_share"] == pytest.approx(flipped(0.05).mean())
    many = B.directional_check(partly_inverted(0.30), frame, rain, 0.10)
    assert not many["passed"] and many["worst_wrong_way_share"] == pytest.approx(flipped(0.30).mean())
    assert B.directional_check(partly_inverted(0.30), frame, rain, 0.35)["passed"]
    # a move smaller than the numerical epsilon is not a move
    tiny = B.directional_check(lambda f: weather_model(f) - 1e-6 * f["precip"].fill_null(0).to_numpy(), frame,
                               rain, 0.0)
    assert tiny["passed"]


def test_a_downward_expectation_is_judged_the_other_way(frame):
    more_visibility = [Directional(column="visib", add=5.0, direction="down", description="+5 miles")]
    assert B.directional_check(weather_model, frame, more_visibility, 0.1)["passed"]
    assert not B.directional_check(lambda f: 1 - weather_model(f), frame, more_visibility, 0.1)["passed"]


def test_directional_needs_exactly_one_change():
    with pytest.raises(ValueError, match="exactly one of set_at_most, add"):
        Directional(column="visib", description="x")
    with pytest.raises(ValueError, match="exactly one of set_at_most, add"):
        Directional(column="visib", description="x", add=1.0, set_at_most=1.0)


def test_robustness_passes_for_smooth_models_and_fails_for_jumpy_ones(spec, frame):
    assert B.robustness_check(weather_model, frame, spec.behavior.robust)["passed"]

    def jumpy(f: pl.DataFrame) -> np.ndarray:  # flips on the tiniest change of temperature
        return ((f["temp"].fill_null(0).to_numpy() * 1000) % 2 < 1).astype(float)

    result = B.robustness_check(jumpy, frame, spec.behavior.robust)
    assert not result["passed"] and result["max_abs_change"] == 1.0


def test_edge_inputs_fail_when_unknowns_give_nan(spec, frame):
    cats, nums = spec.features.categorical, [*spec.features.numeric, *spec.history_columns]
    assert B.edge_inputs_check(weather_model, frame, cats, nums)["passed"]

    def breaks_on_unknown_carrier(f: pl.DataFrame) -> np.ndarray:
        return np.where(f["carrier"].to_numpy() == B.UNKNOWN_CATEGORY, np.nan, weather_model(f))

    result = B.edge_inputs_check(breaks_on_unknown_carrier, frame, cats, nums)
    assert not result["passed"] and not result["cases"]["unknown_categories"]["valid"]
    assert result["cases"]["unknown_categories"]["non_finite"] == frame.height
    assert result["cases"]["all_missing"]["valid"]
    out_of_range = B.edge_inputs_check(lambda f: weather_model(f) + 1.0, frame, cats, nums)
    assert not out_of_range["passed"]


def test_zero_rows_never_pass(spec, frame):
    empty = frame.head(0)
    cats, nums = spec.features.categorical, [*spec.features.numeric, *spec.history_columns]
    results = [B.invariance_check(weather_model, empty, spec.behavior.invariant),
               B.directional_check(weather_model, empty, spec.behavior.directional, 0.1),
               B.robustness_check(weather_model, empty, spec.behavior.robust),
               B.edge_inputs_check(weather_model, empty, cats, nums)]
    assert [r["passed"] for r in results] == [False] * 4
    assert all(r["rows"] == 0 and r["reason"] == "no rows to try it on" for r in results)


def test_checks_declared_follow_the_spec(spec):
    assert list(B.checks_declared(spec)) == ["invariance", "directional", "robustness", "edge_inputs"]
    bare = spec.model_copy(update={"behavior": spec.behavior.model_copy(update={"invariant": [], "robust": []})})
    assert list(B.checks_declared(bare)) == ["directional", "edge_inputs"]
    assert B.REFUSING <= set(B.CHECKS)


@pytest.mark.parametrize("family", ["xgboost", "logistic"])
def test_a_real_model_passes_every_check(spec, split, family, xgb_model, logistic_model):
    from ml_assets.core import families as FAM

    model = {"xgboost": xgb_model, "logistic": logistic_model}[family]
    results = B.run_behavior_checks(lambda f: FAM.predict(model, f), split.valid, spec)
    assert [r["check"] for r in results] == ["invariance", "directional", "robustness", "edge_inputs"]
    assert all(r["passed"] for r in results), [r for r in results if not r["passed"]]
