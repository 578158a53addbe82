"""Semantic versions of bundles: what changed between the champion's line and its successor."""
import pytest

from ml_assets.core.semver import FIRST_VERSION, decide_version, format_version, next_version, parse_version

PREVIOUS = {
    "version": "1.3.2",
    "family": "xgboost",
    "params": {"max_depth": 6, "learning_rate": 0.1},
    "feature_code_version": "features-v1",
    "training_data_version": "data-aaa",
}


def candidate(**changes):
    c = {k: v for k, v in PREVIOUS.items() if k != "version"}
    return {**c, **changes}


def test_first_version_of_a_line():
    assert next_version(None, candidate()) == "1.0.0"
    assert decide_version(None, candidate()).bump == "new_line"


def test_other_family_starts_its_own_line():
    decision = decide_version(PREVIOUS, candidate(family="mlp", params={"hidden": [32]}))
    assert decision.version == "1.0.0" and decision.bump == "new_line"
    assert "family 'mlp' differs from 'xgboost': a new model line" in decision.reasons[0]


def test_changed_hyperparameters_bump_major():
    assert next_version(PREVIOUS, candidate(params={"max_depth": 8, "learning_rate": 0.1})) == "2.0.0"
    # An added or removed hyperparameter is a change too; the reason names it.
    decision = decide_version(PREVIOUS, candidate(params={"max_depth": 6}))
    assert decision.version == "2.0.0" and "learning_rate" in decision.reasons[0]


def test_changed_feature_code_bumps_major_even_with_new_data():
    assert next_version(PREVIOUS, candidate(feature_code_version="features-v2")) == "2.0.0"
    both = decide_version(PREVIOUS, candidate(feature_code_version="features-v2", training_data_version="data-bbb"))
    assert both.version == "2.0.0" and both.bump == "major"


def test_new_training_data_only_bumps_minor():
    decision = decide_version(PREVIOUS, candidate(training_data_version="data-bbb"))
    assert decision.version == "1.4.0" and decision.bump == "minor"


def test_nothing_changed_bumps_patch():
    decision = decide_version(PREVIOUS, candidate())
    assert decision.version == "1.3.3" and decision.bump == "patch"
    # Numerically equal parameters are unchanged (6 == 6.0 after a JSON round trip).
    assert next_version(PREVIOUS, candidate(params={"max_depth": 6.0, "learning_rate": 0.1})) == "1.3.3"


def test_versions_are_compared_numerically_not_as_strings():
    assert next_version({**PREVIOUS, "version": "9.9.9"}, candidate(training_data_version="x")) == "9.10.0"
    assert next_version({**PREVIOUS, "version": "9.9.9"}, candidate(params={})) == "10.0.0"


@pytest.mark.parametrize("bad", ["1.0", "v1.0.0", "01.0.0", "1.0.0-rc1", "", "a.b.c"])
def test_invalid_versions_are_refused(bad):
    with pytest.raises(ValueError, match="MAJOR.MINOR.PATCH"):
        parse_version(bad)
    with pytest.raises(ValueError):
        next_version({**PREVIOUS, "version": bad}, candidate())


def test_missing_keys_are_named():
    with pytest.raises(ValueError, match="training_data_version"):
        next_version(None, {"family": "xgboost", "params": {}, "feature_code_version": "f"})
    with pytest.raises(ValueError, match="previous lacks version"):
        next_version({k: v for k, v in PREVIOUS.items() if k != "version"}, candidate())


def test_model_line_names_come_from_the_spec(spec):
    """Each family is its own model line (its own registered name), so its versions start over."""
    assert spec.model_line("xgboost") == "flight_delay_xgboost"
    assert spec.model_line("mlp") == "flight_delay_mlp"
    with pytest.raises(ValueError, match="invalid model family"):
        next_version(None, candidate(family="XGBoost model"))


def test_format_and_parse_round_trip():
    assert FIRST_VERSION == "1.0.0"
    assert format_version(*parse_version("12.0.3")) == "12.0.3"
    assert parse_version("0.0.0") == (0, 0, 0)


def test_the_decision_says_why():
    decision = decide_version(PREVIOUS, candidate(params={"max_depth": 8, "learning_rate": 0.1},
                                                  feature_code_version="features-v2"))
    assert decision.reasons == ("hyperparameters changed: max_depth", "feature code features-v1 -> features-v2")
    assert decide_version(PREVIOUS, candidate(training_data_version="data-bbb")).reasons == (
        "training data data-aaa -> data-bbb",)
