"""The PyTorch MLP: deterministic, tensors-only persistence (torch.load weights_only), early stopping."""
from __future__ import annotations

import fractions
import io
import json

import numpy as np
import polars as pl
import pytest
import torch

from ml_assets.core.families import UNKNOWN_INDEX
from ml_assets.core.families import mlp as M
from ml_assets_tests.core.conftest import MLP_SMALL

TINY = {"max_epochs": 2, "hidden": [4]}


@pytest.fixture(scope="module")
def small_rows(split):
    return split.train.tail(1500), split.valid.tail(600)


def test_same_rows_and_seed_give_identical_state_dict_bytes(small_rows, inputs):
    train, valid = small_rows
    first = M.train(train, valid, inputs, params=TINY, seed=3)
    again = M.train(train, valid, inputs, params=TINY, seed=3)
    assert M.save(again) == M.save(first)
    other_seed = M.train(train, valid, inputs, params=TINY, seed=4)
    assert M.save(other_seed)[M.MODEL_FILE] != M.save(first)[M.MODEL_FILE]


def test_training_restores_the_callers_torch_settings(small_rows, inputs):
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    M.train(*small_rows, inputs, params={"max_epochs": 1, "hidden": [4]}, threads=1)
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic


def test_early_stopping_keeps_the_best_validation_epoch(mlp_model):
    losses = mlp_model.spec["training"]["validation_log_loss"]
    assert mlp_model.spec["training"]["best_epoch"] == int(np.argmin(losses))
    assert 1 <= len(losses) <= MLP_SMALL["max_epochs"]
    assert mlp_model.spec["validation"]["model"].startswith("early-stopped")


def test_persisted_as_tensors_plus_json_and_loaded_with_weights_only(mlp_model, split):
    files = M.save(mlp_model)
    assert set(files) == {M.MODEL_FILE, "model_spec.json"}
    state = torch.load(io.BytesIO(files[M.MODEL_FILE]), weights_only=True)  # no arbitrary objects
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert {"mean", "std"} <= set(state)  # standardization travels with the weights
    spec = json.loads(files["model_spec.json"])
    assert spec["hidden"] == MLP_SMALL["hidden"] and len(spec["means"]) == len(spec["numeric"]) == len(spec["stds"])
    loaded = M.load(files)
    np.testing.assert_array_equal(M.predict(loaded, split.holdout), M.predict(mlp_model, split.holdout))


def test_a_pickled_object_is_refused_on_load(mlp_model):
    buffer = io.BytesIO()
    torch.save({"evil": fractions.Fraction(1, 3)}, buffer)  # any object beyond tensors needs full unpickling
    files = {**M.save(mlp_model), M.MODEL_FILE: buffer.getvalue()}
    with pytest.raises(Exception, match="(?i)weights_only|unsupported global"):
        M.load(files)


def test_unknown_categories_map_to_index_zero_and_missing_numerics_are_handled(mlp_model, split):
    odd = split.holdout.head(10).with_columns(carrier=pl.lit("ZZ"), temp=pl.lit(None, dtype=pl.Float64))
    idx = M.encode_categorical(odd, mlp_model.spec["vocabularies"], mlp_model.spec["categorical"])
    assert idx.dtype == np.int64 and (idx[:, 0] == UNKNOWN_INDEX).all() and (idx[:, 1] > 0).all()
    numeric = M.numeric_matrix(odd, mlp_model.spec["numeric"])
    assert numeric.dtype == np.float32 and np.isnan(numeric[:, mlp_model.spec["numeric"].index("temp")]).all()
    assert np.isfinite(M.predict(mlp_model, odd)).all()


def test_standardization_uses_training_statistics_and_ignores_missing():
    numeric = np.array([[1.0, np.nan, 5.0], [3.0, np.nan, 5.0]], dtype=np.float32)
    mean, std = M.standardization(numeric)
    assert mean.tolist() == [2.0, 0.0, 5.0]
    assert std.tolist() == [1.0, 1.0, 1.0]  # all missing, or constant: std falls back to 1
    assert M.embedding_dim(3, 8) == 3 and M.embedding_dim(1000, 8) == 8
