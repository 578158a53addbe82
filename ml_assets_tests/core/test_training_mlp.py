import datetime as dt
import io
import json

import numpy as np
import polars as pl
import pytest
import torch

from ml_assets.core.evaluation import roc_auc
from ml_assets.core.features import LABEL
from ml_assets.core.training import mlp as M
from ml_assets.core.training.window import split_window

DAY = dt.date(2013, 1, 10)
SMALL = {"max_epochs": 4, "hidden": [16, 8]}


@pytest.fixture(scope="module")
def splits(january_features):
    train, valid = split_window(january_features, DAY)
    return train, valid, january_features.filter(pl.col("date") == DAY)


@pytest.fixture(scope="module")
def model(splits):
    return M.train_mlp(splits[0], splits[1], params=SMALL, seed=3)


def test_predicts_a_probability_per_row_with_real_signal(model, splits):
    holdout = splits[2]
    p = M.predict_mlp(model, holdout)
    assert p.shape == (holdout.height,) and np.all((p >= 0) & (p <= 1))
    labelled = holdout[LABEL].is_not_null().to_numpy()
    assert roc_auc(holdout[LABEL].to_numpy()[labelled].astype(float), p[labelled]) > 0.55


def test_same_rows_and_seed_give_identical_state_dict_bytes(model, splits):
    shuffled = splits[0].sample(fraction=1.0, shuffle=True, seed=5)
    again = M.train_mlp(shuffled, splits[1], params=SMALL, seed=3)
    assert M.save_mlp(again) == M.save_mlp(model)
    other_seed = M.train_mlp(splits[0], splits[1], params=SMALL, seed=4)
    assert M.state_dict_bytes(other_seed.module) != M.state_dict_bytes(model.module)


def test_training_restores_the_callers_torch_settings(splits):
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    M.train_mlp(splits[0].tail(500), splits[1].tail(200), params={"max_epochs": 1, "hidden": [4]})
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic


def test_early_stopping_keeps_the_best_validation_epoch(model):
    losses = model.spec["training"]["validation_log_loss"]
    assert model.spec["training"]["best_epoch"] == int(np.argmin(losses))
    assert len(losses) <= SMALL["max_epochs"]


def test_persisted_as_tensors_plus_json_and_reloads_identically(model, splits):
    files = M.save_mlp(model)
    state = torch.load(io.BytesIO(files[M.MODEL_FILE]), weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    spec = json.loads(files[M.SPEC_FILE])
    assert spec["hidden"] == [16, 8] and len(spec["means"]) == len(spec["numeric"]) == len(spec["stds"])
    assert spec["vocabularies"]["origin"] == ["EWR", "JFK", "LGA"]
    loaded = M.load_mlp(files)
    assert np.array_equal(M.predict_mlp(loaded, splits[2]), M.predict_mlp(model, splits[2]))


def test_unknown_categories_map_to_index_zero_and_missing_numerics_are_handled(model, splits):
    odd = splits[2].head(10).with_columns(carrier=pl.lit("ZZ"), temp=pl.lit(None, dtype=pl.Float64))
    idx = M.encode_categorical(odd, model.spec["vocabularies"], model.spec["categorical"])
    assert (idx[:, 0] == M.UNKNOWN_INDEX).all() and (idx[:, 1] > 0).all()
    assert np.isfinite(M.predict_mlp(model, odd)).all()


def test_standardization_uses_training_statistics_and_ignores_missing():
    numeric = np.array([[1.0, np.nan, 5.0], [3.0, np.nan, 5.0]], dtype=np.float32)
    mean, std = M._standardization(numeric)
    assert mean.tolist() == [2.0, 0.0, 5.0]
    assert std.tolist() == [1.0, 1.0, 1.0]  # column 3 is constant: std falls back to 1
