"""ONNX graphs over the RAW feature columns, built by hand (no converter package), and proof of parity.

Graph contract (the deployment bundle relies on it):
- one input per model input column: categoricals ``tensor(string) [N,1]``, numerics ``tensor(float) [N,1]`` with
  NaN for missing;
- one output, named by the dataset's prediction (e.g. ``p_late``): ``tensor(float) [N]``.
Categorical encoding (``ai.onnx.ml.LabelEncoder``, unknown -> a default) lives inside the graph, so
onnxruntime plus the file scores feature rows. Each family builds its own graph from these pieces
(``core.families``); this module holds what they share.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import polars as pl
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
ML_OPSET = 3
PARITY_TOLERANCE = 1e-5
PRODUCER = "ml_assets"


def inputs(categorical: list[str], numeric: list[str]) -> list[onnx.ValueInfoProto]:
    strings = [helper.make_tensor_value_info(c, TensorProto.STRING, ["N", 1]) for c in categorical]
    floats = [helper.make_tensor_value_info(c, TensorProto.FLOAT, ["N", 1]) for c in numeric]
    return strings + floats


def string_to_float(name: str, source: str, table: dict[str, float], default: float) -> onnx.NodeProto:
    keys = sorted(table)
    return helper.make_node(
        "LabelEncoder", [source], [name], domain="ai.onnx.ml", name=f"encode_{name}",
        keys_strings=keys, values_floats=[float(table[k]) for k in keys], default_float=float(default))


def string_to_index(name: str, source: str, vocabulary: list[str]) -> onnx.NodeProto:
    """Category -> 1-based index into ``vocabulary``; unknown -> 0."""
    return helper.make_node(
        "LabelEncoder", [source], [name], domain="ai.onnx.ml", name=f"encode_{name}",
        keys_strings=list(vocabulary), values_int64s=list(range(1, len(vocabulary) + 1)), default_int64=0)


def standardize_nodes(numeric: list[str], mean: np.ndarray, std: np.ndarray) -> tuple[list, list, list[str]]:
    """(x - mean) / std, 0 where NaN, plus the NaN indicators: the same float32 steps as the native models."""
    initializers = [
        numpy_helper.from_array(mean.astype(np.float32), "numeric_mean"),
        numpy_helper.from_array(std.astype(np.float32), "numeric_std"),
        numpy_helper.from_array(np.zeros(1, dtype=np.float32), "zero"),
    ]
    nodes = [
        helper.make_node("Concat", list(numeric), ["numeric"], axis=1, name="numeric_matrix"),
        helper.make_node("IsNaN", ["numeric"], ["numeric_missing"]),
        helper.make_node("Sub", ["numeric", "numeric_mean"], ["numeric_centered"]),
        helper.make_node("Div", ["numeric_centered", "numeric_std"], ["numeric_scaled"]),
        helper.make_node("Where", ["numeric_missing", "zero", "numeric_scaled"], ["numeric_standardized"]),
        helper.make_node("Cast", ["numeric_missing"], ["numeric_indicator"], to=TensorProto.FLOAT),
    ]
    return nodes, initializers, ["numeric_standardized", "numeric_indicator"]


def probability_nodes(logit: str, output: str) -> list[onnx.NodeProto]:
    return [
        helper.make_node("Sigmoid", [logit], ["probability_column"], name="sigmoid"),
        helper.make_node("Reshape", ["probability_column", "flat_shape"], [output], name="flatten_output"),
    ]


def build_model(nodes, initializers, name: str, categorical: list[str], numeric: list[str], output: str,
                metadata: dict[str, str]) -> bytes:
    graph = helper.make_graph(
        nodes, name, inputs(categorical, numeric), [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N"])],
        initializer=[numpy_helper.from_array(np.array([-1], dtype=np.int64), "flat_shape"), *initializers])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", ML_OPSET)],
        producer_name=PRODUCER)
    # onnxruntime 1.31 reads IR version 10 at most; pin it so a newer onnx default does not break loading.
    model.ir_version = 10
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


# ---------------------------------------------------------------- scoring and parity


def onnx_session(model_bytes: bytes, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def feed(frame: pl.DataFrame, session: ort.InferenceSession) -> dict[str, np.ndarray]:
    """Inputs as the graph wants them: strings (null -> "", i.e. unknown) and float32 with NaN, as [N,1]."""
    out = {}
    for spec in session.get_inputs():
        column = frame.get_column(spec.name)
        if spec.type == "tensor(string)":
            values = column.cast(pl.String).fill_null("").to_numpy().astype(object)
        else:
            values = column.cast(pl.Float64).to_numpy().astype(np.float32)
        out[spec.name] = values.reshape(-1, 1)
    return out


def score_session(session: ort.InferenceSession, frame: pl.DataFrame) -> np.ndarray:
    if frame.height == 0:
        return np.zeros(0, dtype=np.float64)
    (p,) = session.run([session.get_outputs()[0].name], feed(frame, session))
    return np.asarray(p, dtype=np.float64).ravel()


def score_onnx(model_bytes: bytes, frame: pl.DataFrame) -> np.ndarray:
    """Probabilities from the ONNX graph for every row of a feature frame (float64 copy of the float32 output)."""
    return score_session(onnx_session(model_bytes), frame)


def parity(native_p: np.ndarray, onnx_p: np.ndarray, tol: float = PARITY_TOLERANCE) -> dict[str, Any]:
    """Max |native - onnx|; passes only when every row is within ``tol`` on at least one row.

    No rows is not evidence: zero rows is reported as not passed (nothing was compared)."""
    native = np.asarray(native_p, dtype=np.float64).ravel()
    exported = np.asarray(onnx_p, dtype=np.float64).ravel()
    if native.shape != exported.shape:
        return {"max_abs_diff": math.inf, "passed": False, "rows": int(native.size), "tolerance": tol,
                "reason": f"shape {native.shape} != {exported.shape}"}
    if native.size == 0:
        return {"max_abs_diff": math.nan, "passed": False, "rows": 0, "tolerance": tol,
                "reason": "no rows to compare"}
    diff = np.abs(native - exported)
    max_diff = float(diff.max()) if np.all(np.isfinite(diff)) else math.inf
    return {"max_abs_diff": max_diff, "passed": bool(max_diff <= tol), "rows": int(native.size), "tolerance": tol}
