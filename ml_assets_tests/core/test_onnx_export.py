import datetime as dt

import numpy as np
import onnx
import polars as pl
import pytest

from ml_assets.core import onnx_export as O
from ml_assets.core.features import CATEGORICAL, FEATURES, NUMERIC, WEATHER_COLUMNS
from ml_assets.core.training import mlp as M
from ml_assets.core.training import xgb as X
from ml_assets.core.training.window import split_window

DAY = dt.date(2013, 1, 10)


@pytest.fixture(scope="module")
def data(january_features):
    train, valid = split_window(january_features, DAY)
    # Scored rows: the holdout day plus awkward rows (unknown categories, missing weather, all missing).
    holdout = january_features.filter(pl.col("date") >= DAY - dt.timedelta(days=2))
    odd = pl.concat([
        holdout.head(30).with_columns(carrier=pl.lit("ZZ"), route=pl.lit("NEW-ROUTE"), dest=pl.lit("NEW")),
        holdout.head(30).with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in WEATHER_COLUMNS),
        holdout.head(30).with_columns(
            *(pl.lit(None, dtype=pl.Float64).alias(c) for c in NUMERIC),
            *(pl.lit(None, dtype=pl.String).alias(c) for c in CATEGORICAL),
        ),
    ])
    return train, valid, pl.concat([holdout, odd])


@pytest.fixture(scope="module")
def xgb_models(data):
    train, valid, _ = data
    early_stopped = X.train_xgboost(train, valid, params={"n_estimators": 80}, seed=0)
    # No validation rows: no early stopping, so all 200 deep trees are exported.
    full = X.train_xgboost(train, valid.head(0), params={"max_depth": 8}, seed=0)
    return early_stopped, full


@pytest.fixture(scope="module")
def mlp_model(data):
    train, valid, _ = data
    return M.train_mlp(train, valid, params={"max_epochs": 3}, seed=0)


def _perturbed(model_bytes: bytes, node_op: str, edit) -> bytes:
    model = onnx.load_from_string(model_bytes)
    (node,) = [n for n in model.graph.node if n.op_type == node_op]
    edit(model, node)
    return model.SerializeToString()


def test_xgboost_parity_on_real_and_awkward_rows(xgb_models, data):
    scored = data[2]
    for model in xgb_models:
        result = O.parity(X.predict_xgboost(model, scored), O.score_onnx(O.export_onnx(model), scored))
        assert result["passed"], result
        assert result["rows"] == scored.height
    assert xgb_models[1].spec["n_trees"] == 200


def test_mlp_parity_on_real_and_awkward_rows(mlp_model, data):
    scored = data[2]
    result = O.parity(M.predict_mlp(mlp_model, scored), O.score_onnx(O.export_onnx(mlp_model), scored))
    assert result["passed"], result


def test_graph_takes_raw_named_columns_and_returns_p_late(xgb_models, mlp_model):
    for model in (xgb_models[0], mlp_model):
        graph = onnx.load_from_string(O.export_onnx(model)).graph
        inputs = {i.name: i.type.tensor_type.elem_type for i in graph.input}
        assert list(inputs) == FEATURES
        assert all(inputs[c] == onnx.TensorProto.STRING for c in CATEGORICAL)
        assert all(inputs[c] == onnx.TensorProto.FLOAT for c in NUMERIC)
        assert [o.name for o in graph.output] == ["p_late"]
        assert {n.op_type for n in graph.node} >= {"LabelEncoder"}  # encoding inside the graph


def test_export_is_deterministic(xgb_models, mlp_model):
    for model in (xgb_models[0], mlp_model):
        assert O.export_onnx(model) == O.export_onnx(model)


def test_a_changed_leaf_value_fails_parity(xgb_models, data):
    model, scored = xgb_models[0], data[2]
    good = O.export_onnx(model)

    def shift_leaves(_, node):
        weights = next(a for a in node.attribute if a.name == "target_weights")
        weights.floats[:] = [w + 0.01 for w in weights.floats]

    result = O.parity(X.predict_xgboost(model, scored), O.score_onnx(_perturbed(good, "TreeEnsembleRegressor", shift_leaves), scored))
    assert not result["passed"] and result["max_abs_diff"] > 1e-3


def test_a_changed_threshold_fails_parity(xgb_models, data):
    model, scored = xgb_models[1], data[2]

    def move_thresholds(_, node):
        values = next(a for a in node.attribute if a.name == "nodes_values")
        values.floats[:] = [v * 1.05 + 0.5 for v in values.floats]

    bad = _perturbed(O.export_onnx(model), "TreeEnsembleRegressor", move_thresholds)
    assert not O.parity(X.predict_xgboost(model, scored), O.score_onnx(bad, scored))["passed"]


def test_a_changed_weight_fails_parity(mlp_model, data):
    scored = data[2]

    def bump_output_bias(model, _):
        (bias,) = [t for t in model.graph.initializer if t.name == "linear2_bias"]
        array = onnx.numpy_helper.to_array(bias) + np.float32(0.05)
        bias.CopyFrom(onnx.numpy_helper.from_array(array, bias.name))

    bad = _perturbed(O.export_onnx(mlp_model), "Sigmoid", bump_output_bias)
    assert not O.parity(M.predict_mlp(mlp_model, scored), O.score_onnx(bad, scored))["passed"]


def test_parity_fails_on_nan_and_shape_mismatch():
    assert O.parity(np.array([0.1, 0.2]), np.array([0.1, 0.2 + 5e-6]))["passed"]
    assert not O.parity(np.array([0.1, 0.2]), np.array([0.1, 0.2 + 2e-5]))["passed"]
    assert not O.parity(np.array([0.1, 0.2]), np.array([0.1, np.nan]))["passed"]
    assert not O.parity(np.array([0.1, 0.2]), np.array([0.1]))["passed"]


def test_categorical_splits_are_refused():
    tree = {"split_type": [1, 0, 0], "left_children": [1, -1, -1], "right_children": [2, -1, -1]}
    model_json = {"learner": {"learner_model_param": {"base_score": "[5E-1]"},
                              "gradient_booster": {"model": {"trees": [tree]}}}}
    with pytest.raises(ValueError, match="categorical splits"):
        O.tree_ensemble_attributes(model_json)


def test_empty_frame_scores_to_empty(xgb_models, data):
    assert O.score_onnx(O.export_onnx(xgb_models[0]), data[2].head(0)).shape == (0,)
