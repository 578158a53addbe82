"""Logistic regression: weights in JSON only, L2 chosen on the validation days, then refit on the window."""
from __future__ import annotations

import json

import numpy as np
import polars as pl

from ml_assets.core.families import logistic as LR


def test_same_rows_and_seed_give_identical_weights(logistic_model, split, inputs):
    again = LR.train(split.train, split.valid, inputs, seed=0)
    assert LR.save(again) == LR.save(logistic_model)


def test_the_model_is_one_json_file_of_weights(logistic_model):
    files = LR.save(logistic_model)
    assert set(files) == {"model_spec.json"}  # no binary file at all
    spec = json.loads(files["model_spec.json"])
    assert len(spec["dense_weights"]) == 2 * len(spec["numeric"])  # standardized values + missing indicators
    for column in spec["categorical"]:
        weights = spec["category_weights"][column]
        assert len(weights) == len(spec["vocabularies"][column]) + 1 and weights[0] == 0.0  # index 0: unknown
    assert np.isfinite(spec["bias"]) and np.isfinite(spec["dense_weights"]).all()


def test_l2_is_chosen_from_the_grid_on_validation_then_refit_on_the_window(logistic_model, split):
    spec = logistic_model.spec
    assert spec["l2"] in spec["params"]["l2_grid"]
    assert spec["validation"]["model"] == f"train-split fit at the chosen l2={spec['l2']} (before the refit)"
    window = pl.concat([split.train, split.valid])
    assert spec["vocabularies"]["dest"] == sorted(window["dest"].drop_nulls().unique().to_list())


def test_without_validation_rows_the_first_strength_is_used(split, inputs):
    model = LR.train(split.train.head(800), split.valid.head(0), inputs, params={"max_iter": 20})
    assert model.spec["l2"] == LR.DEFAULT_PARAMS["l2_grid"][0] and model.spec["threshold"] == 0.5


def test_an_unknown_category_contributes_nothing(logistic_model, split):
    spec = logistic_model.spec
    rows = split.holdout.head(30)
    known = LR._logit(logistic_model, rows)
    odd = LR._logit(logistic_model, rows.with_columns(carrier=pl.lit("ZZ")))
    idx = LR.encode_categorical(rows, spec["vocabularies"], ["carrier"])[:, 0]
    carrier_weight = np.asarray(spec["category_weights"]["carrier"], np.float32)[idx]
    np.testing.assert_allclose(known - odd, carrier_weight, atol=1e-5)


def test_the_fit_lowers_the_training_loss(logistic_model, split):
    from ml_assets.core.evaluation import log_loss

    y = split.train[logistic_model.spec["label"]].cast(pl.Float64).to_numpy()
    fitted = log_loss(y, LR.predict(logistic_model, split.train))
    base_rate = np.full(y.size, y.mean())
    assert fitted < log_loss(y, base_rate)
