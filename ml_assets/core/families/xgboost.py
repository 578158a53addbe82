"""XGBoost: gradient-boosted trees over ordinal-coded categoricals and numerics.

Categoricals are ordinal codes (vocabulary from the training rows, sorted; an unknown category is *missing*, so
it follows each split's learned default branch) fed as plain numbers. Why not XGBoost's native categorical
splits: they become set-membership splits that ONNX TreeEnsemble (opset < 5) cannot express; with codes every
split is ``x < threshold``, which the ONNX graph replicates exactly.

Training: early stopping on the validation days picks the tree count and the decision threshold; the validation
metrics are those of that early-stopped model, on rows it never saw. Then the same recipe is refit on the whole
window (the validation days are the most recent, the most telling about tomorrow). The refit model is the one
saved and exported; it has no out-of-sample validation score of its own, which ``spec["validation"]`` says.

Persistence: the booster as UBJSON bytes plus a JSON spec. ONNX: ``ai.onnx.ml.TreeEnsembleRegressor`` from the
booster's own JSON: xgboost sends ``x < threshold`` left and missing to ``default_left``, i.e. BRANCH_LT with
``missing_value_tracks_true = default_left``; thresholds, leaves and inputs are float32 on both sides.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import xgboost as xgb

from ml_assets.core import onnx_export as X
from ml_assets.core.evaluation import best_f1_threshold, classification_metrics
from ml_assets.core.families import SPEC_FILE, Family, ModelInputs, labels, vocabularies

NAME = "xgboost"
MODEL_FILE = "model.ubj"
DEFAULT_PARAMS: dict[str, Any] = {
    "n_estimators": 300,
    "max_depth": 6,
    "learning_rate": 0.08,
    "min_child_weight": 2.0,
    "subsample": 0.9,
    "colsample_bytree": 0.8,
    "reg_lambda": 2.0,
    "max_bin": 256,
    "early_stopping_rounds": 25,
    "refit_on_window": True,
}


@dataclass(frozen=True)
class XGBoostModel:
    booster: xgb.Booster
    spec: dict[str, Any]


def feature_order(spec: dict[str, Any]) -> list[str]:
    return [*spec["categorical"], *spec["numeric"]]


def design_matrix(frame: pl.DataFrame, spec: dict[str, Any]) -> np.ndarray:
    """float32 matrix: codes for categoricals (NaN = unknown), NaN for missing numerics."""
    codes = [pl.col(c).replace_strict({v: float(i) for i, v in enumerate(spec["vocabularies"][c])}, default=None,
                                      return_dtype=pl.Float64).alias(c) for c in spec["categorical"]]
    numeric = [pl.col(c).cast(pl.Float64) for c in spec["numeric"]]
    # float64 -> float32 here, once: xgboost and onnxruntime then see the very same float32 values.
    return frame.select(*codes, *numeric).to_numpy().astype(np.float32)


def _booster_params(p: dict[str, Any], seed: int, nthread: int) -> dict[str, Any]:
    return {"objective": "binary:logistic", "eval_metric": "logloss", "tree_method": "hist",
            "max_depth": int(p["max_depth"]), "eta": float(p["learning_rate"]),
            "min_child_weight": float(p["min_child_weight"]), "subsample": float(p["subsample"]),
            "colsample_bytree": float(p["colsample_bytree"]), "lambda": float(p["reg_lambda"]),
            "max_bin": int(p["max_bin"]), "seed": int(seed), "nthread": int(nthread), "verbosity": 0}


def _dmatrix(frame: pl.DataFrame, spec: dict[str, Any], with_label: bool, nthread: int,
             weight: np.ndarray | None = None) -> xgb.DMatrix:
    return xgb.DMatrix(design_matrix(frame, spec), label=labels(frame, spec["label"]) if with_label else None,
                       weight=weight, feature_names=feature_order(spec), missing=np.nan, nthread=nthread)


def train(train_rows: pl.DataFrame, valid_rows: pl.DataFrame, inputs: ModelInputs, params: dict | None = None,
          seed: int = 0, nthread: int = 2, weights: tuple[np.ndarray, np.ndarray] | None = None) -> XGBoostModel:
    """Fit on ``train_rows``, early-stop on ``valid_rows``; then (by default) refit on both with that tree count."""
    if train_rows.height == 0:
        raise ValueError("no training rows: cannot fit a model")
    p = {**DEFAULT_PARAMS, **(params or {})}
    spec: dict[str, Any] = {"family": NAME, **inputs.as_dict(), "vocabularies": vocabularies(train_rows, inputs.categorical),
                            "params": p, "seed": seed}
    w_train, w_valid = weights if weights is not None else (None, None)
    dtrain = _dmatrix(train_rows, spec, True, nthread, w_train)
    evals, stopping = [], None
    if valid_rows.height:
        evals, stopping = [(_dmatrix(valid_rows, spec, True, nthread), "valid")], int(p["early_stopping_rounds"])
    booster = xgb.train(_booster_params(p, seed, nthread), dtrain, num_boost_round=int(p["n_estimators"]),
                        evals=evals, early_stopping_rounds=stopping, verbose_eval=False)
    if stopping is not None:
        booster = booster[: booster.best_iteration + 1]  # the saved model IS the ensemble that was scored
    booster.set_attr(best_iteration=None, best_score=None)
    spec["n_trees"] = booster.num_boosted_rounds()
    model = XGBoostModel(booster, spec)
    if valid_rows.height:
        p_valid = predict(model, valid_rows, nthread)
        y_valid = labels(valid_rows, inputs.label)
        spec["threshold"] = best_f1_threshold(y_valid, p_valid)
        spec["validation"] = {"model": "early-stopped on the train split (before the refit)", "rows": valid_rows.height,
                              **classification_metrics(y_valid, p_valid, spec["threshold"])}
    else:
        spec["threshold"], spec["validation"] = 0.5, {"model": "none: no validation rows"}
    if p.get("refit_on_window") and valid_rows.height:
        window = pl.concat([train_rows, valid_rows], how="vertical_relaxed")
        refit_spec = {**spec, "vocabularies": vocabularies(window, inputs.categorical), "refit_rows": window.height}
        weight = np.concatenate([w_train, w_valid]) if weights is not None else None
        booster = xgb.train(_booster_params(p, seed, nthread), _dmatrix(window, refit_spec, True, nthread, weight),
                            num_boost_round=spec["n_trees"], verbose_eval=False)
        model = XGBoostModel(booster, refit_spec)
    return model


def predict(model: XGBoostModel, frame: pl.DataFrame, nthread: int = 2) -> np.ndarray:
    if frame.height == 0:
        return np.zeros(0, dtype=np.float64)
    return model.booster.predict(_dmatrix(frame, model.spec, False, nthread)).astype(np.float64)


def save(model: XGBoostModel) -> dict[str, bytes]:
    return {MODEL_FILE: bytes(model.booster.save_raw("ubj")),
            SPEC_FILE: json.dumps(model.spec, sort_keys=True, indent=1, default=float).encode()}


def load(files: dict[str, bytes]) -> XGBoostModel:
    booster = xgb.Booster()
    booster.load_model(bytearray(files[MODEL_FILE]))
    return XGBoostModel(booster, json.loads(files[SPEC_FILE]))


# ---------------------------------------------------------------- ONNX


def _base_margin(learner: dict[str, Any]) -> float:
    """xgboost stores the intercept as a probability (``"[2.1E-1]"`` in 3.x); the trees add to its logit."""
    raw = str(learner["learner_model_param"]["base_score"]).strip("[]")
    base = float(np.float32(float(raw.split(",")[0])))
    return float(np.float32(-math.log(1.0 / base - 1.0)))


def tree_ensemble_attributes(model_json: dict[str, Any]) -> dict[str, Any]:
    learner = model_json["learner"]
    a: dict[str, list] = {k: [] for k in (
        "nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values", "nodes_modes", "nodes_truenodeids",
        "nodes_falsenodeids", "nodes_missing_value_tracks_true", "target_treeids", "target_nodeids", "target_ids",
        "target_weights")}
    for tree_id, tree in enumerate(learner["gradient_booster"]["model"]["trees"]):
        if any(int(t) != 0 for t in tree["split_type"]):
            raise ValueError("categorical splits are not supported: train with ordinal codes")
        for node, (left, right) in enumerate(zip(tree["left_children"], tree["right_children"])):
            leaf = left == -1
            a["nodes_treeids"].append(tree_id)
            a["nodes_nodeids"].append(node)
            a["nodes_featureids"].append(0 if leaf else int(tree["split_indices"][node]))
            a["nodes_values"].append(0.0 if leaf else float(tree["split_conditions"][node]))
            a["nodes_modes"].append("LEAF" if leaf else "BRANCH_LT")
            a["nodes_truenodeids"].append(0 if leaf else int(left))
            a["nodes_falsenodeids"].append(0 if leaf else int(right))
            a["nodes_missing_value_tracks_true"].append(0 if leaf else int(tree["default_left"][node]))
            if leaf:  # a leaf's split_condition holds its value (learning rate applied)
                a["target_treeids"].append(tree_id)
                a["target_nodeids"].append(node)
                a["target_ids"].append(0)
                a["target_weights"].append(float(tree["split_conditions"][node]))
    return {**a, "n_targets": 1, "base_values": [_base_margin(learner)], "aggregate_function": "SUM",
            "post_transform": "NONE"}


def export_onnx(model: XGBoostModel) -> bytes:
    from onnx import helper

    spec = model.spec
    nodes = [X.string_to_float(f"{c}__code", c, {v: float(i) for i, v in enumerate(spec["vocabularies"][c])},
                               math.nan) for c in spec["categorical"]]
    columns = [*(f"{c}__code" for c in spec["categorical"]), *spec["numeric"]]
    nodes.append(helper.make_node("Concat", columns, ["features"], axis=1, name="feature_matrix"))
    nodes.append(helper.make_node("TreeEnsembleRegressor", ["features"], ["margin"], domain="ai.onnx.ml", name="trees",
                                  **tree_ensemble_attributes(json.loads(bytes(model.booster.save_raw("json"))))))
    nodes += X.probability_nodes("margin", spec["output"])
    return X.build_model(nodes, [], f"{NAME}_{spec['output']}", spec["categorical"], spec["numeric"], spec["output"],
                         {"family": NAME, "threshold": str(spec["threshold"])})


def tune_space(trial) -> dict[str, Any]:
    return {"max_depth": trial.suggest_int("max_depth", 3, 9),
            "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.3, log=True),
            "min_child_weight": trial.suggest_float("min_child_weight", 0.5, 20.0, log=True),
            "subsample": trial.suggest_float("subsample", 0.6, 1.0),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0),
            "reg_lambda": trial.suggest_float("reg_lambda", 0.1, 20.0, log=True)}


FAMILY = Family(name=NAME, default_params=DEFAULT_PARAMS, train=train, predict=predict,
                save=save, load=load, export_onnx=export_onnx, tune_space=tune_space)
