import datetime as dt

import numpy as np
import polars as pl
import pytest

from ml_assets.core import behavior as B
from ml_assets.core.training import xgb as X
from ml_assets.core.training.window import split_window

DAY = dt.date(2013, 1, 10)


@pytest.fixture(scope="module")
def frame(january_features):
    return january_features.filter(pl.col("date") == DAY)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def weather_model(f: pl.DataFrame) -> np.ndarray:
    """Later departures, worse visibility and rain raise p_late; identifiers are ignored."""
    visib = f["visib"].fill_null(10.0).to_numpy()
    precip = f["precip"].fill_null(0.0).to_numpy()
    return _sigmoid(-1.5 + 0.05 * f["dep_hour"].fill_null(12).to_numpy() - 0.1 * visib + 5 * precip)


def tailnum_model(f: pl.DataFrame) -> np.ndarray:
    """Keyed on the plane's tail number: an identifier it must not use."""
    return np.array([(sum(t.encode()) % 100) / 100 for t in f["tailnum"].fill_null("").to_list()]) * 0.1 + weather_model(f) * 0.9


def test_invariance_passes_for_a_model_blind_to_identifiers(frame):
    result = B.invariance_check(weather_model, frame)
    assert result["passed"] and result["max_abs_change"] == 0.0


def test_invariance_fails_for_a_model_keyed_on_tailnum(frame):
    result = B.invariance_check(tailnum_model, frame)
    assert not result["passed"] and result["max_abs_change"] > result["eps"]


def test_invariance_fails_for_a_model_keyed_on_flight_number(frame):
    result = B.invariance_check(lambda f: weather_model(f) * 0.9 + 0.1 * (f["flight"].to_numpy() % 2), frame)
    assert not result["passed"]


def test_directional_passes_when_bad_weather_raises_risk_and_fails_when_it_lowers_it(frame):
    good = B.directional_check(weather_model, frame)
    assert good["passed"] and good["mean_shift"]["more_precipitation"] > 0
    inverted = B.directional_check(lambda f: 1 - weather_model(f), frame)
    assert not inverted["passed"] and inverted["mean_shift"]["lower_visibility"] < 0


def test_robustness_passes_for_smooth_models_and_fails_for_jumpy_ones(frame):
    assert B.robustness_check(weather_model, frame)["passed"]

    def jumpy(f: pl.DataFrame) -> np.ndarray:  # flips on the tiniest change of temperature
        return ((f["temp"].fill_null(0).to_numpy() * 1000) % 2 < 1).astype(float)

    result = B.robustness_check(jumpy, frame)
    assert not result["passed"] and result["max_abs_change"] == 1.0


def test_edge_inputs_fail_when_unknowns_give_nan(frame):
    assert B.edge_inputs_check(weather_model, frame)["passed"]

    def breaks_on_unknown_carrier(f: pl.DataFrame) -> np.ndarray:
        p = weather_model(f)
        return np.where(f["carrier"].to_numpy() == B.UNKNOWN_CATEGORY, np.nan, p)

    result = B.edge_inputs_check(breaks_on_unknown_carrier, frame)
    assert not result["passed"] and not result["cases"]["unknown_categories"]["valid"]
    assert result["cases"]["unknown_categories"]["non_finite"] == frame.height
    assert result["cases"]["missing_weather"]["valid"]


def test_a_real_xgboost_model_passes_every_check(january_features, frame):
    train, valid = split_window(january_features, DAY)
    model = X.train_xgboost(train, valid, params={"n_estimators": 40}, seed=0)
    results = B.run_behavior_checks(lambda f: X.predict_xgboost(model, f), frame)
    assert [r["check"] for r in results] == ["invariance", "directional", "robustness", "edge_inputs"]
    assert all(r["passed"] for r in results), [r for r in results if not r["passed"]]
