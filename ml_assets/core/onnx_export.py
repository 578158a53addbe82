"""Both model families as ONNX graphs over the RAW feature columns, built by hand (no converter package).

Graph contract (the deployment bundle relies on it):
- one input per column of ``FEATURES``: categoricals ``tensor(string) [N,1]``, numerics ``tensor(float) [N,1]``
  with NaN for missing;
- output ``p_late``: ``tensor(float) [N]``.
Categorical encoding (``ai.onnx.ml.LabelEncoder``, unknown -> default) and the history-rate lookups (also
LabelEncoders, unknown -> global rate) live inside the graph, so onnxruntime plus the file scores raw records.

XGBoost becomes ``ai.onnx.ml.TreeEnsembleRegressor`` (margin) + Sigmoid, from the booster's own JSON:
xgboost sends ``x < threshold`` left and missing to ``default_left``, which is BRANCH_LT with
``missing_value_tracks_true = default_left``. Thresholds and leaves are float32 in xgboost and in ONNX, and
both compare float32 inputs, so splits agree exactly. The MLP becomes Gather/Sub/Div/IsNaN/Where/Concat/
Gemm/Relu/Sigmoid from its state_dict (written out directly: deterministic bytes, no onnxscript needed).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import polars as pl
from onnx import TensorProto, helper, numpy_helper

from ml_assets.core.features import CATEGORICAL, FEATURES, NUMERIC
from ml_assets.core.training.mlp import MLPModel, numpy_weights
from ml_assets.core.training.window import RATE_KEYS, HistoryRates, rate_column
from ml_assets.core.training.xgb import XGBoostModel, booster_json

OUTPUT = "p_late"
OPSET = 17
ML_OPSET = 3
PARITY_TOLERANCE = 1e-5
PRODUCER = "ml_assets"


# ---------------------------------------------------------------- shared pieces


def _raw_inputs() -> list[onnx.ValueInfoProto]:
    strings = [helper.make_tensor_value_info(c, TensorProto.STRING, ["N", 1]) for c in CATEGORICAL]
    floats = [helper.make_tensor_value_info(c, TensorProto.FLOAT, ["N", 1]) for c in NUMERIC]
    return strings + floats


def _output() -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N"])


def _string_to_float(name: str, source: str, table: dict[str, float], default: float) -> onnx.NodeProto:
    keys = sorted(table)
    return helper.make_node(
        "LabelEncoder", [source], [name], domain="ai.onnx.ml", name=f"encode_{name}",
        keys_strings=keys, values_floats=[float(table[k]) for k in keys], default_float=float(default),
    )


def _history_rate_nodes(rates_json: dict | None) -> list[onnx.NodeProto]:
    """One lookup per rate key: category -> smoothed late rate, unknown -> global rate."""
    if not rates_json:
        return []
    rates = HistoryRates.from_json(rates_json)
    return [_string_to_float(rate_column(k), k, rates.tables[k], rates.default_for(k)) for k in RATE_KEYS]


def _probability_nodes(logit: str) -> list[onnx.NodeProto]:
    return [
        helper.make_node("Sigmoid", [logit], ["p_late_column"], name="sigmoid"),
        helper.make_node("Reshape", ["p_late_column", "flat_shape"], [OUTPUT], name="flatten_output"),
    ]


def _model(nodes, initializers, name: str, metadata: dict[str, str]) -> bytes:
    graph = helper.make_graph(
        nodes, name, _raw_inputs(), [_output()],
        initializer=[numpy_helper.from_array(np.array([-1], dtype=np.int64), "flat_shape"), *initializers],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", ML_OPSET)],
        producer_name=PRODUCER,
    )
    # onnxruntime 1.31 reads IR version 10 at most; pin it so a newer onnx default does not break loading.
    model.ir_version = 10
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


# ---------------------------------------------------------------- XGBoost


def _base_margin(learner: dict[str, Any]) -> float:
    """xgboost stores the intercept as a probability (``"[2.1E-1]"`` in 3.x); the trees add to its logit."""
    raw = str(learner["learner_model_param"]["base_score"]).strip("[]")
    base = float(np.float32(float(raw.split(",")[0])))
    return float(np.float32(-math.log(1.0 / base - 1.0)))


def tree_ensemble_attributes(model_json: dict[str, Any]) -> dict[str, Any]:
    """TreeEnsembleRegressor attributes from xgboost's JSON trees (numeric ``<`` splits only)."""
    learner = model_json["learner"]
    trees = learner["gradient_booster"]["model"]["trees"]
    a: dict[str, list] = {k: [] for k in (
        "nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values", "nodes_modes",
        "nodes_truenodeids", "nodes_falsenodeids", "nodes_missing_value_tracks_true",
        "target_treeids", "target_nodeids", "target_ids", "target_weights",
    )}
    for tree_id, tree in enumerate(trees):
        if any(int(t) != 0 for t in tree["split_type"]):
            raise ValueError("categorical splits are not supported: train with ordinal codes")
        for node, (left, right) in enumerate(zip(tree["left_children"], tree["right_children"])):
            is_leaf = left == -1
            a["nodes_treeids"].append(tree_id)
            a["nodes_nodeids"].append(node)
            a["nodes_featureids"].append(0 if is_leaf else int(tree["split_indices"][node]))
            a["nodes_values"].append(0.0 if is_leaf else float(tree["split_conditions"][node]))
            a["nodes_modes"].append("LEAF" if is_leaf else "BRANCH_LT")
            a["nodes_truenodeids"].append(0 if is_leaf else int(left))
            a["nodes_falsenodeids"].append(0 if is_leaf else int(right))
            a["nodes_missing_value_tracks_true"].append(0 if is_leaf else int(tree["default_left"][node]))
            if is_leaf:
                # For a leaf, split_conditions holds the leaf value (learning rate already applied).
                a["target_treeids"].append(tree_id)
                a["target_nodeids"].append(node)
                a["target_ids"].append(0)
                a["target_weights"].append(float(tree["split_conditions"][node]))
    return {**a, "n_targets": 1, "base_values": [_base_margin(learner)],
            "aggregate_function": "SUM", "post_transform": "NONE"}


def export_xgboost(model: XGBoostModel) -> bytes:
    spec = model.spec
    nodes = [
        # Ordinal code per category; an unknown category is NaN, i.e. missing, exactly as in training.
        _string_to_float(f"{c}__code", c, {v: float(i) for i, v in enumerate(vocab)}, math.nan)
        for c, vocab in spec["vocabularies"].items()
    ]
    nodes += _history_rate_nodes(spec.get("history_rates"))
    columns = [f"{c}__code" if c in spec["vocabularies"] else c for c in spec["feature_order"]]
    nodes.append(helper.make_node("Concat", columns, ["features"], axis=1, name="feature_matrix"))
    nodes.append(helper.make_node(
        "TreeEnsembleRegressor", ["features"], ["margin"], domain="ai.onnx.ml", name="trees",
        **tree_ensemble_attributes(booster_json(model)),
    ))
    nodes += _probability_nodes("margin")
    metadata = {"family": "xgboost", "feature_order": ",".join(spec["feature_order"]), "threshold": str(spec["threshold"])}
    return _model(nodes, [], "xgboost_p_late", metadata)


# ---------------------------------------------------------------- MLP


def _embedding_nodes(spec: dict[str, Any], weights: dict[str, np.ndarray]) -> tuple[list, list, list[str]]:
    nodes, initializers, outputs = [], [], []
    for i, c in enumerate(spec["categorical"]):
        vocab = spec["vocabularies"][c]
        nodes.append(helper.make_node(
            "LabelEncoder", [c], [f"{c}__index"], domain="ai.onnx.ml", name=f"encode_{c}",
            keys_strings=vocab, values_int64s=list(range(1, len(vocab) + 1)), default_int64=0,
        ))
        initializers.append(numpy_helper.from_array(weights[f"embeddings.{i}.weight"], f"{c}__embedding"))
        nodes.append(helper.make_node("Gather", [f"{c}__embedding", f"{c}__index"], [f"{c}__gathered"], axis=0))
        nodes.append(helper.make_node("Flatten", [f"{c}__gathered"], [f"{c}__embedded"], axis=1))
        outputs.append(f"{c}__embedded")
    return nodes, initializers, outputs


def _standardize_nodes(spec: dict[str, Any], weights: dict[str, np.ndarray]) -> tuple[list, list, list[str]]:
    """The same float32 steps as ``FlightMLP.forward``: (x - mean) / std, 0 where NaN, plus NaN indicators."""
    initializers = [
        numpy_helper.from_array(weights["mean"], "numeric_mean"),
        numpy_helper.from_array(weights["std"], "numeric_std"),
        numpy_helper.from_array(np.zeros(1, dtype=np.float32), "zero"),
    ]
    nodes = [
        helper.make_node("Concat", list(spec["numeric"]), ["numeric"], axis=1, name="numeric_matrix"),
        helper.make_node("IsNaN", ["numeric"], ["numeric_missing"]),
        helper.make_node("Sub", ["numeric", "numeric_mean"], ["numeric_centered"]),
        helper.make_node("Div", ["numeric_centered", "numeric_std"], ["numeric_scaled"]),
        helper.make_node("Where", ["numeric_missing", "zero", "numeric_scaled"], ["numeric_standardized"]),
        helper.make_node("Cast", ["numeric_missing"], ["numeric_indicator"], to=TensorProto.FLOAT),
    ]
    return nodes, initializers, ["numeric_standardized", "numeric_indicator"]


def _dense_nodes(n_layers: int, weights: dict[str, np.ndarray], source: str) -> tuple[list, list, str]:
    nodes, initializers, x = [], [], source
    for k in range(n_layers):
        initializers += [
            numpy_helper.from_array(weights[f"linears.{k}.weight"], f"linear{k}_weight"),
            numpy_helper.from_array(weights[f"linears.{k}.bias"], f"linear{k}_bias"),
        ]
        out = f"linear{k}"
        nodes.append(helper.make_node("Gemm", [x, f"linear{k}_weight", f"linear{k}_bias"], [out], transB=1))
        if k < n_layers - 1:
            nodes.append(helper.make_node("Relu", [out], [f"relu{k}"]))
            out = f"relu{k}"
        x = out
    return nodes, initializers, x


def export_mlp(model: MLPModel) -> bytes:
    spec, weights = model.spec, numpy_weights(model)
    nodes = _history_rate_nodes(spec.get("history_rates"))
    emb_nodes, emb_init, emb_out = _embedding_nodes(spec, weights)
    num_nodes, num_init, num_out = _standardize_nodes(spec, weights)
    nodes += emb_nodes + num_nodes
    nodes.append(helper.make_node("Concat", emb_out + num_out, ["hidden_input"], axis=1, name="network_input"))
    dense_nodes, dense_init, logit = _dense_nodes(len(spec["hidden"]) + 1, weights, "hidden_input")
    nodes += dense_nodes + _probability_nodes(logit)
    metadata = {"family": "mlp", "threshold": str(spec["threshold"])}
    return _model(nodes, emb_init + num_init + dense_init, "mlp_p_late", metadata)


def export_onnx(model: XGBoostModel | MLPModel) -> bytes:
    """ONNX bytes for either family (deterministic: same model -> same bytes)."""
    if isinstance(model, XGBoostModel):
        return export_xgboost(model)
    if isinstance(model, MLPModel):
        return export_mlp(model)
    raise TypeError(f"no ONNX export for {type(model).__name__}")


# ---------------------------------------------------------------- scoring and parity


def onnx_session(model_bytes: bytes, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def onnx_inputs(frame: pl.DataFrame, input_names: list[str] | None = None) -> dict[str, np.ndarray]:
    """Feed dict from a feature frame: strings (null -> "", i.e. unknown) and float32 with NaN, as [N,1]."""
    feed = {}
    for name in input_names or FEATURES:
        column = frame.get_column(name)
        if name in CATEGORICAL:
            values = column.cast(pl.String).fill_null("").to_numpy().astype(object)
        else:
            values = column.cast(pl.Float64).to_numpy().astype(np.float32)
        feed[name] = values.reshape(-1, 1)
    return feed


def score_session(session: ort.InferenceSession, frame: pl.DataFrame) -> np.ndarray:
    if frame.height == 0:
        return np.zeros(0, dtype=np.float64)
    names = [i.name for i in session.get_inputs()]
    (p,) = session.run([OUTPUT], onnx_inputs(frame, names))
    return np.asarray(p, dtype=np.float64).ravel()


def score_onnx(model_bytes: bytes, frame: pl.DataFrame) -> np.ndarray:
    """p_late from the ONNX graph for every row of a feature frame (float64 copy of the float32 output)."""
    return score_session(onnx_session(model_bytes), frame)


def parity(native_p: np.ndarray, onnx_p: np.ndarray, tol: float = PARITY_TOLERANCE) -> dict[str, Any]:
    """Max |native - onnx|; passes only when every row is within ``tol`` (NaN or shape mismatch fails)."""
    native = np.asarray(native_p, dtype=np.float64).ravel()
    exported = np.asarray(onnx_p, dtype=np.float64).ravel()
    if native.shape != exported.shape:
        return {"max_abs_diff": math.inf, "passed": False, "rows": int(native.size), "tolerance": tol,
                "reason": f"shape {native.shape} != {exported.shape}"}
    diff = np.abs(native - exported)
    max_diff = float(diff.max()) if diff.size else 0.0
    if diff.size and not np.all(np.isfinite(diff)):
        max_diff = math.inf
    return {"max_abs_diff": max_diff, "passed": bool(max_diff <= tol), "rows": int(native.size), "tolerance": tol}
