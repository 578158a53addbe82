"""The shared ONNX pieces and the parity proof: a changed graph must fail parity, never pass by accident."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from ml_assets.core import onnx_export as O
from ml_assets.core.families import logistic as LR
from ml_assets.core.families import mlp as M
from ml_assets.core.families import xgboost as X


def _perturbed(model_bytes: bytes, edit) -> bytes:
    model = onnx.load_from_string(model_bytes)
    edit(model)
    return model.SerializeToString()


def _node(model, op_type: str):
    (node,) = [n for n in model.graph.node if n.op_type == op_type]
    return node


def _initializer(model, name: str):
    (tensor,) = [t for t in model.graph.initializer if t.name == name]
    return tensor


def _shift_initializer(name: str, by: float):
    def edit(model):
        tensor = _initializer(model, name)
        array = onnx.numpy_helper.to_array(tensor) + np.float32(by)
        tensor.CopyFrom(onnx.numpy_helper.from_array(array, name))
    return edit


def test_parity_passes_within_tolerance_and_fails_otherwise():
    assert O.parity(np.array([0.1, 0.2]), np.array([0.1, 0.2 + 5e-6]))["passed"]
    assert not O.parity(np.array([0.1, 0.2]), np.array([0.1, 0.2 + 2e-5]))["passed"]
    nan = O.parity(np.array([0.1, 0.2]), np.array([0.1, np.nan]))
    assert not nan["passed"] and nan["max_abs_diff"] == np.inf
    shape = O.parity(np.array([0.1, 0.2]), np.array([0.1]))
    assert not shape["passed"] and "shape" in shape["reason"]
    nothing = O.parity(np.zeros(0), np.zeros(0))  # no rows compared is not evidence
    assert not nothing["passed"] and nothing["reason"] == "no rows to compare"


def test_a_changed_leaf_value_fails_parity(xgb_model, split):
    def shift_leaves(model):
        weights = next(a for a in _node(model, "TreeEnsembleRegressor").attribute if a.name == "target_weights")
        weights.floats[:] = [w + 0.01 for w in weights.floats]

    bad = _perturbed(X.export_onnx(xgb_model), shift_leaves)
    result = O.parity(X.predict(xgb_model, split.holdout), O.score_onnx(bad, split.holdout))
    assert not result["passed"] and result["max_abs_diff"] > 1e-3


def test_changed_thresholds_fail_parity(xgb_model, split):
    def move_thresholds(model):
        values = next(a for a in _node(model, "TreeEnsembleRegressor").attribute if a.name == "nodes_values")
        values.floats[:] = [v * 1.05 + 0.5 for v in values.floats]

    bad = _perturbed(X.export_onnx(xgb_model), move_thresholds)
    assert not O.parity(X.predict(xgb_model, split.holdout), O.score_onnx(bad, split.holdout))["passed"]


def test_a_changed_missing_value_direction_fails_parity(xgb_model, split):
    def flip_missing(model):
        missing = next(a for a in _node(model, "TreeEnsembleRegressor").attribute
                       if a.name == "nodes_missing_value_tracks_true")
        missing.ints[:] = [1 - v for v in missing.ints]

    bad = _perturbed(X.export_onnx(xgb_model), flip_missing)
    assert not O.parity(X.predict(xgb_model, split.awkward), O.score_onnx(bad, split.awkward))["passed"]


def test_a_changed_mlp_weight_fails_parity(mlp_model, split):
    last = len(mlp_model.spec["hidden"])
    bad = _perturbed(M.export_onnx(mlp_model), _shift_initializer(f"linear{last}_bias", 0.05))
    assert not O.parity(M.predict(mlp_model, split.holdout), O.score_onnx(bad, split.holdout))["passed"]


def test_changed_standardization_fails_parity(logistic_model, split):
    bad = _perturbed(LR.export_onnx(logistic_model), _shift_initializer("numeric_mean", 0.5))
    assert not O.parity(LR.predict(logistic_model, split.holdout), O.score_onnx(bad, split.holdout))["passed"]


def test_scoring_sessions_and_empty_frames(xgb_model, split):
    exported = X.export_onnx(xgb_model)
    session = O.onnx_session(exported)
    np.testing.assert_array_equal(O.score_session(session, split.holdout), O.score_onnx(exported, split.holdout))
    assert O.score_onnx(exported, split.holdout.head(0)).shape == (0,)
    feed = O.feed(split.awkward, session)
    assert feed["carrier"].dtype == object and feed["carrier"].shape == (split.awkward.height, 1)
    assert feed["temp"].dtype == np.float32 and np.isnan(feed["temp"]).any()  # missing: NaN
    assert "" in set(feed["carrier"].ravel())  # null category: the empty string, i.e. unknown


def test_built_models_pin_the_ir_version_and_pass_the_checker(xgb_model):
    model = onnx.load_from_string(X.export_onnx(xgb_model))
    assert model.ir_version == 10 and model.producer_name == O.PRODUCER
    assert {(o.domain, o.version) for o in model.opset_import} == {("", O.OPSET), ("ai.onnx.ml", O.ML_OPSET)}
    onnx.checker.check_model(model, full_check=True)


def test_string_to_index_maps_unknown_to_zero():
    from onnx import TensorProto, helper

    node = O.string_to_index("idx", "c", ["a", "b"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("c", TensorProto.STRING, ["N", 1])],
                              [helper.make_tensor_value_info("idx", TensorProto.INT64, ["N", 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", O.OPSET),
                                                    helper.make_opsetid("ai.onnx.ml", O.ML_OPSET)])
    model.ir_version = 10
    (out,) = O.onnx_session(model.SerializeToString()).run(None, {"c": np.array([["a"], ["b"], ["zz"], [""]],
                                                                                  dtype=object)})
    assert out.ravel().tolist() == [1, 2, 0, 0]


@pytest.mark.parametrize("threads", [1, 2])
def test_sessions_use_the_cpu_provider(xgb_model, threads):
    session = O.onnx_session(X.export_onnx(xgb_model), threads)
    assert session.get_providers() == ["CPUExecutionProvider"]
