"""Logistic regression: one weight per category level, standardized numerics with missing indicators, L2.

A deliberately simple, different family: a strong linear baseline that trains in a fraction of a second and that
a person can read (its weights are the model). Fitted by L-BFGS (scipy) on the mean log loss plus
``l2 / 2 * |w|^2`` (the intercept is not penalized); the L2 strength is chosen on the validation days from a
small grid, then the model is refit on the whole window with it. The validation metrics are those of the
train-split model at the chosen strength, on rows it never saw. Unknown categories get weight 0.

Persistence: a JSON spec holding every weight (no binary file at all). ONNX: a LabelEncoder + Gather per
categorical, the same standardization nodes as the MLP, one Gemm and a Sigmoid, all float32 as in ``predict``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from ml_assets.core import onnx_export as X
from ml_assets.core.evaluation import best_f1_threshold, classification_metrics, log_loss
from ml_assets.core.families import (SPEC_FILE, Family, ModelInputs, encode_categorical, labels, numeric_matrix,
                                     standardization, vocabularies)

NAME = "logistic"
DEFAULT_PARAMS: dict[str, Any] = {"l2_grid": [0.1, 0.01], "max_iter": 150, "refit_on_window": True}


@dataclass(frozen=True)
class LogisticModel:
    spec: dict[str, Any]


def _design(frame: pl.DataFrame, spec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(category indices [N,C], [standardized numerics | missing indicators] [N,2K]) in float32."""
    idx = encode_categorical(frame, spec["vocabularies"], spec["categorical"])
    num = numeric_matrix(frame, spec["numeric"])
    missing = np.isnan(num)
    mean, std = np.asarray(spec["means"], np.float32), np.asarray(spec["stds"], np.float32)
    z = np.where(missing, np.float32(0), (num - mean) / std).astype(np.float32)
    return idx, np.concatenate([z, missing.astype(np.float32)], axis=1)


def _unpack(theta: np.ndarray, sizes: list[int], n_dense: int):
    bias, offset, tables = theta[0], 1, []
    for size in sizes:
        tables.append(np.concatenate([[0.0], theta[offset: offset + size]]))  # index 0: unknown, weight 0
        offset += size
    return bias, tables, theta[offset: offset + n_dense]


def _fit(idx: np.ndarray, dense: np.ndarray, y: np.ndarray, sizes: list[int], l2: float, max_iter: int,
         weight: np.ndarray | None, start: np.ndarray | None = None) -> np.ndarray:
    from scipy.optimize import minimize

    n = y.size
    w = np.ones(n) if weight is None else weight / weight.mean()
    d64 = dense.astype(np.float64)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        bias, tables, beta = _unpack(theta, sizes, dense.shape[1])
        logit = bias + d64 @ beta + sum(t[idx[:, c]] for c, t in enumerate(tables))
        p = 1.0 / (1.0 + np.exp(-logit))
        eps = 1e-12
        loss = -np.mean(w * (y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)))
        r = w * (p - y) / n
        grads = [np.array([r.sum()])]
        for c, size in enumerate(sizes):
            grads.append(np.bincount(idx[:, c], weights=r, minlength=size + 1)[1:])
        grads.append(d64.T @ r)
        penalty = theta.copy()
        penalty[0] = 0.0
        return loss + 0.5 * l2 * float(penalty @ penalty), np.concatenate(grads) + l2 * penalty

    theta0 = np.zeros(1 + sum(sizes) + dense.shape[1]) if start is None else start
    return minimize(objective, theta0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter, "ftol": 1e-7}).x


def _spec_for(rows: pl.DataFrame, inputs: ModelInputs, p: dict[str, Any], seed: int) -> dict[str, Any]:
    mean, std = standardization(numeric_matrix(rows, inputs.numeric))
    return {"family": NAME, **inputs.as_dict(), "vocabularies": vocabularies(rows, inputs.categorical),
            "means": mean.tolist(), "stds": std.tolist(), "params": p, "seed": seed}


def _fitted(rows: pl.DataFrame, inputs: ModelInputs, p: dict[str, Any], seed: int, l2: float,
            weight: np.ndarray | None) -> LogisticModel:
    spec = _spec_for(rows, inputs, p, seed)
    idx, dense = _design(rows, spec)
    sizes = [len(spec["vocabularies"][c]) for c in spec["categorical"]]
    theta = _fit(idx, dense, labels(rows, inputs.label).astype(np.float64), sizes, l2, int(p["max_iter"]), weight)
    bias, tables, beta = _unpack(theta, sizes, dense.shape[1])
    spec.update({"l2": l2, "bias": float(bias), "dense_weights": [float(b) for b in beta],
                 "category_weights": {c: [float(v) for v in t] for c, t in zip(spec["categorical"], tables)}})
    return LogisticModel(spec)


def train(train_rows: pl.DataFrame, valid_rows: pl.DataFrame, inputs: ModelInputs, params: dict | None = None,
          seed: int = 0, weights: tuple[np.ndarray, np.ndarray] | None = None, **_: Any) -> LogisticModel:
    if train_rows.height == 0:
        raise ValueError("no training rows: cannot fit a model")
    p = {**DEFAULT_PARAMS, **(params or {})}
    w_train, w_valid = weights if weights is not None else (None, None)
    if not valid_rows.height:
        model = _fitted(train_rows, inputs, p, seed, float(p["l2_grid"][0]), w_train)
        model.spec.update(threshold=0.5, validation={"model": "none: no validation rows"})
        return model
    y_valid = labels(valid_rows, inputs.label)
    scored = []
    for l2 in p["l2_grid"]:
        candidate = _fitted(train_rows, inputs, p, seed, float(l2), w_train)
        scored.append((log_loss(y_valid, predict(candidate, valid_rows)), float(l2), candidate))
    _, l2, best = min(scored, key=lambda t: (t[0], -t[1]))
    p_valid = predict(best, valid_rows)
    threshold = best_f1_threshold(y_valid, p_valid)
    validation = {"model": f"train-split fit at the chosen l2={l2} (before the refit)", "rows": valid_rows.height,
                  **classification_metrics(y_valid, p_valid, threshold)}
    if p.get("refit_on_window"):
        window = pl.concat([train_rows, valid_rows], how="vertical_relaxed")
        weight = np.concatenate([w_train, w_valid]) if weights is not None else None
        best = _fitted(window, inputs, p, seed, l2, weight)
    best.spec.update(threshold=threshold, validation=validation)
    return best


def _logit(model: LogisticModel, frame: pl.DataFrame) -> np.ndarray:
    spec = model.spec
    idx, dense = _design(frame, spec)
    logit = np.float32(spec["bias"]) + dense @ np.asarray(spec["dense_weights"], np.float32)
    for c, name in enumerate(spec["categorical"]):
        logit = logit + np.asarray(spec["category_weights"][name], np.float32)[idx[:, c]]
    return logit.astype(np.float32)


def predict(model: LogisticModel, frame: pl.DataFrame) -> np.ndarray:
    if frame.height == 0:
        return np.zeros(0, dtype=np.float64)
    return (1.0 / (1.0 + np.exp(-_logit(model, frame).astype(np.float64)))).astype(np.float64)


def save(model: LogisticModel) -> dict[str, bytes]:
    return {SPEC_FILE: json.dumps(model.spec, sort_keys=True, indent=1).encode()}


def load(files: dict[str, bytes]) -> LogisticModel:
    return LogisticModel(json.loads(files[SPEC_FILE]))


def export_onnx(model: LogisticModel) -> bytes:
    from onnx import helper, numpy_helper

    spec = model.spec
    nodes, initializers, parts = [], [], []
    for c in spec["categorical"]:
        table = np.asarray(spec["category_weights"][c], np.float32).reshape(-1, 1)
        nodes.append(X.string_to_index(f"{c}__index", c, spec["vocabularies"][c]))
        initializers.append(numpy_helper.from_array(table, f"{c}__weight"))
        nodes.append(helper.make_node("Gather", [f"{c}__weight", f"{c}__index"], [f"{c}__gathered"], axis=0))
        nodes.append(helper.make_node("Flatten", [f"{c}__gathered"], [f"{c}__contribution"], axis=1))
        parts.append(f"{c}__contribution")
    num_nodes, num_init, num_out = X.standardize_nodes(spec["numeric"], np.asarray(spec["means"], np.float32),
                                                       np.asarray(spec["stds"], np.float32))
    nodes += num_nodes
    initializers += num_init
    # categorical contributions enter with weight 1, then the dense weights: one Gemm adds everything up
    weights = np.concatenate([np.ones(len(parts), np.float32), np.asarray(spec["dense_weights"], np.float32)])
    initializers += [numpy_helper.from_array(weights.reshape(-1, 1), "weights"),
                     numpy_helper.from_array(np.asarray([spec["bias"]], np.float32), "bias")]
    nodes.append(helper.make_node("Concat", parts + num_out, ["design"], axis=1, name="design_matrix"))
    nodes.append(helper.make_node("Gemm", ["design", "weights", "bias"], ["logit"], name="linear"))
    nodes += X.probability_nodes("logit", spec["output"])
    return X.build_model(nodes, initializers, f"{NAME}_{spec['output']}", spec["categorical"], spec["numeric"],
                         spec["output"], {"family": NAME, "threshold": str(spec["threshold"])})


FAMILY = Family(name=NAME, default_params=DEFAULT_PARAMS, train=train, predict=predict,
                save=save, load=load, export_onnx=export_onnx)
