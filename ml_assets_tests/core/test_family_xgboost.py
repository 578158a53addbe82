"""XGBoost: ordinal-coded categoricals, early stopping on the validation days, then the refit on the window."""
from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from ml_assets.core.families import canonical_order
from ml_assets.core.families import xgboost as X
from ml_assets_tests.core.conftest import XGB_SMALL


def test_same_rows_and_seed_give_identical_bytes_and_the_seed_matters(spec, xgb_model, split, inputs):
    again = X.train(split.train, split.valid, inputs, params=XGB_SMALL, seed=7)
    assert X.save(again) == X.save(xgb_model)
    other = X.train(split.train, split.valid, inputs, params=XGB_SMALL, seed=8)
    assert X.save(other)[X.MODEL_FILE] != X.save(xgb_model)[X.MODEL_FILE]  # subsampling follows the seed
    # the row order does not matter once rows are in canonical order (the training set's own order)
    key = spec.features.key
    shuffled = split.train.sample(fraction=1.0, shuffle=True, seed=5)
    a = X.train(canonical_order(shuffled, key), split.valid, inputs, params=XGB_SMALL, seed=7)
    b = X.train(canonical_order(split.train, key), split.valid, inputs, params=XGB_SMALL, seed=7)
    assert X.save(a) == X.save(b)


def test_without_early_stopping_one_fit_on_the_whole_window(xgb_model, split):
    spec = xgb_model.spec
    window = pl.concat([split.train, split.valid])
    assert spec["fit_rows"] == window.height and spec["n_trees"] == XGB_SMALL["n_estimators"]
    assert xgb_model.booster.num_boosted_rounds() == spec["n_trees"]
    assert spec["validation"]["model"].startswith("none: one fit")
    # the threshold flags the window's share of late flights (a rank rule: nothing held out)
    share = float(window["is_late"].cast(pl.Float64).mean())
    flagged = float((X.predict(xgb_model, window) >= spec["threshold"]).mean())
    assert abs(flagged - share) < 0.01
    assert sorted(spec["vocabularies"]["dest"]) == sorted(window["dest"].drop_nulls().unique().to_list())


def test_early_stopping_then_the_refit_on_the_window(split, inputs):
    params = {**XGB_SMALL, "n_estimators": 200, "early_stopping_rounds": 5}
    model = X.train(split.train, split.valid, inputs, params=params, seed=7)
    spec = model.spec
    assert spec["n_trees"] < params["n_estimators"]
    assert model.booster.num_boosted_rounds() == spec["n_trees"]  # the refit keeps the early-stopped count
    assert spec["fit_rows"] == split.train.height + split.valid.height
    assert spec["validation"]["model"].startswith("fitted on the train split")
    assert spec["validation"]["rows"] == split.valid.height and 0 < spec["threshold"] < 1


def test_without_validation_rows_all_trees_are_kept(split, inputs):
    params = {"n_estimators": 12, "max_depth": 3, "refit_on_window": False}
    model = X.train(split.train, split.valid.head(0), inputs, params=params, seed=0)
    assert model.spec["n_trees"] == model.booster.num_boosted_rounds() == 12
    assert model.spec["threshold"] == 0.5 and model.spec["validation"]["model"].startswith("none: no validation")
    assert model.spec["fit_rows"] == split.train.height


def test_categories_are_coded_in_order_of_their_late_rate(split):
    rows = split.train
    vocab = X.rate_ordered_vocabularies(rows, ["origin", "carrier"], "is_late")
    rates = rows.group_by("carrier").agg(pl.col("is_late").cast(pl.Float64).mean().alias("rate"),
                                         pl.len().alias("n"))
    overall = float(rows["is_late"].cast(pl.Float64).mean())
    shrunk = {r["carrier"]: (r["rate"] * r["n"] + overall * X.RATE_PRIOR) / (r["n"] + X.RATE_PRIOR)
              for r in rates.iter_rows(named=True)}
    assert vocab["carrier"] == sorted(shrunk, key=lambda c: (shrunk[c], c))
    assert sorted(vocab["origin"]) == ["EWR", "JFK", "LGA"]


def test_recency_weights_halve_every_halflife(split):
    assert X.recency_weights(split.train, 0) is None
    w = X.recency_weights(split.train, 2.0)
    days = split.train["date"]
    newest, oldest = days == days.max(), days == days.min()
    gap = (days.max() - days.min()).days
    assert np.allclose(w[newest.to_numpy()], 1.0)
    assert np.allclose(w[oldest.to_numpy()], 0.5 ** (gap / 2.0))


def test_saved_as_ubjson_plus_a_json_spec(xgb_model):
    files = X.save(xgb_model)
    assert set(files) == {X.MODEL_FILE, "model_spec.json"}
    assert files[X.MODEL_FILE][:1] == b"{"  # a UBJSON object
    spec = json.loads(files["model_spec.json"])
    assert X.feature_order(spec)[:4] == ["carrier", "origin", "dest", "route"]
    assert spec["params"]["max_depth"] == XGB_SMALL["max_depth"] and spec["seed"] == 7


def test_unknown_categories_are_missing_codes(xgb_model, split):
    odd = split.holdout.head(20).with_columns(carrier=pl.lit("ZZ"), route=pl.lit("XXX-YYY"), dest=pl.lit("YYY"))
    x = X.design_matrix(odd, xgb_model.spec)
    order = X.feature_order(xgb_model.spec)
    assert x.dtype == np.float32 and x.shape == (20, len(order))
    for column in ("carrier", "route", "dest"):
        assert np.isnan(x[:, order.index(column)]).all()
    assert not np.isnan(x[:, order.index("origin")]).any()
    assert x[0, order.index("origin")] == xgb_model.spec["vocabularies"]["origin"].index(odd["origin"][0])


def test_categorical_splits_are_refused_in_the_onnx_export():
    tree = {"split_type": [1, 0, 0], "left_children": [1, -1, -1], "right_children": [2, -1, -1]}
    model_json = {"learner": {"learner_model_param": {"base_score": "[5E-1]"},
                              "gradient_booster": {"model": {"trees": [tree]}}}}
    with pytest.raises(ValueError, match="categorical splits"):
        X.tree_ensemble_attributes(model_json)


def test_the_intercept_is_the_logit_of_the_base_score():
    learner = {"learner_model_param": {"base_score": "[2.5E-1]"}}
    assert X._base_margin(learner) == pytest.approx(np.log(0.25 / 0.75), abs=1e-6)


def test_tune_space_stays_in_its_bounds():
    import optuna
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    params = X.tune_space(trial)
    assert set(params) <= set(X.DEFAULT_PARAMS) and 3 <= params["max_depth"] <= 9


def test_the_specs_directional_expectations_are_monotone_constraints(spec, split):
    """flights: lower visibility and more rain never lower p_late, on every row (the behavior check then holds)."""
    from ml_assets.core import behavior
    from ml_assets.core.families import ModelInputs

    assert spec.monotone_inputs["visib"] == -1 and spec.monotone_inputs["wx_day_visib_min"] == -1
    assert spec.monotone_inputs["precip"] == 1 and spec.monotone_inputs["wx_day_precip"] == 1
    inputs = ModelInputs(list(spec.features.categorical), list(spec.features.numeric), "is_late", "p_late",
                         spec.monotone_inputs)
    model = X.train(split.train, split.valid, inputs, params=XGB_SMALL, seed=7)
    assert model.spec["monotone"] == spec.monotone_inputs
    check = behavior.directional_check(lambda f: X.predict(model, f), split.holdout, spec.behavior.directional, 0.0)
    assert check["passed"] and check["worst_wrong_way_share"] == 0.0
    clearer = split.holdout.with_columns(pl.col("visib") + 5.0)
    assert (X.predict(model, clearer) <= X.predict(model, split.holdout) + 1e-7).all()
    assert X.load(X.save(model)).spec["monotone"] == spec.monotone_inputs
