import datetime as dt
import json

import numpy as np
import polars as pl
import pytest

from ml_assets.core.evaluation import roc_auc
from ml_assets.core.features import LABEL
from ml_assets.core.training import xgb as X
from ml_assets.core.training.tuning import tune_xgboost
from ml_assets.core.training.window import split_window

DAY = dt.date(2013, 1, 10)
SMALL = {"n_estimators": 60}


@pytest.fixture(scope="module")
def splits(january_features):
    train, valid = split_window(january_features, DAY)
    holdout = january_features.filter(pl.col("date") == DAY)
    return train, valid, holdout


@pytest.fixture(scope="module")
def model(splits):
    train, valid, _ = splits
    return X.train_xgboost(train, valid, params=SMALL, seed=7)


def test_predicts_a_probability_per_row_with_real_signal(model, splits):
    holdout = splits[2]
    p = X.predict_xgboost(model, holdout)
    assert p.shape == (holdout.height,) and p.dtype == np.float64
    assert np.all((p >= 0) & (p <= 1))
    labelled = holdout[LABEL].is_not_null().to_numpy()
    assert roc_auc(holdout[LABEL].to_numpy()[labelled].astype(float), p[labelled]) > 0.55  # random scores: 0.50 +- 0.02 on ~900 rows


def test_same_rows_and_seed_give_identical_bytes_whatever_the_row_order(model, splits):
    train, valid, _ = splits
    shuffled = train.sample(fraction=1.0, shuffle=True, seed=3)
    again = X.train_xgboost(shuffled, valid, params=SMALL, seed=7)
    assert X.save_xgboost(again) == X.save_xgboost(model)


def test_seed_matters(model, splits):
    train, valid, _ = splits
    other = X.train_xgboost(train, valid, params=SMALL, seed=8)
    assert X.save_xgboost(other)[X.MODEL_FILE] != X.save_xgboost(model)[X.MODEL_FILE]


def test_early_stopping_keeps_only_the_best_trees(model):
    assert model.spec["n_trees"] == model.spec["best_iteration"] + 1 <= SMALL["n_estimators"]
    assert model.booster.num_boosted_rounds() == model.spec["n_trees"]


def test_saved_in_open_formats_and_reloads_to_the_same_predictions(model, splits):
    files = X.save_xgboost(model)
    assert set(files) == {X.MODEL_FILE, X.SPEC_FILE}
    assert files[X.MODEL_FILE][:1] == b"{"  # UBJSON object
    spec = json.loads(files[X.SPEC_FILE])
    assert spec["feature_order"][:4] == ["carrier", "origin", "dest", "route"]
    assert "JFK" in spec["vocabularies"]["origin"] and spec["history_rates"]["tables"]["route"]
    assert 0 < spec["threshold"] < 1
    loaded = X.load_xgboost(files)
    holdout = splits[2]
    assert np.array_equal(X.predict_xgboost(loaded, holdout), X.predict_xgboost(model, holdout))


def test_unknown_categories_are_missing_not_errors(model, splits):
    odd = splits[2].head(20).with_columns(carrier=pl.lit("ZZ"), route=pl.lit("XXX-YYY"), dest=pl.lit("YYY"))
    x = X.design_matrix(odd.with_columns(carrier_late_rate=0.2, route_late_rate=0.2, origin_late_rate=0.2),
                        model.spec)
    assert np.isnan(x[:, model.feature_order.index("carrier")]).all()
    assert np.isfinite(X.predict_xgboost(model, odd)).all()


def test_history_rates_can_be_switched_off(splits):
    train, valid, holdout = splits
    plain = X.train_xgboost(train, valid, params=SMALL, use_history_rates=False)
    assert "route_late_rate" not in plain.feature_order and plain.spec["history_rates"] is None
    assert X.predict_xgboost(plain, holdout).shape == (holdout.height,)


def test_no_training_rows_is_an_error(splits):
    with pytest.raises(ValueError, match="no training rows"):
        X.train_xgboost(splits[0].head(0), splits[1])


def test_tuning_is_off_by_default_and_seeded_when_on(splits):
    train, valid, _ = splits
    assert tune_xgboost(train, valid) == X.DEFAULT_PARAMS
    small_train = train.tail(3000)
    first = tune_xgboost(small_train, valid, n_trials=3, seed=1)
    assert first == tune_xgboost(small_train, valid, n_trials=3, seed=1)
    assert 3 <= first["max_depth"] <= 9 and set(first) == set(X.DEFAULT_PARAMS)
