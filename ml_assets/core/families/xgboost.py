"""XGBoost: gradient-boosted trees over ordinal-coded categoricals and numerics.

Categoricals are ordinal codes fed as plain numbers, in the order of each category's (shrunk) positive rate on the
training rows, so one ``x < threshold`` split separates high-rate categories from low-rate ones (Fisher's
ordering: the best binary partition of a categorical for a convex loss is a cut of the rate-sorted levels). An
unknown category is *missing*, so it follows each split's learned default branch. Why not XGBoost's native
categorical splits: they become set-membership splits that ONNX TreeEnsemble (opset < 5) cannot express; with
codes every split is ``x < threshold``, which the ONNX graph replicates exactly.

Defaults: strongly regularized trees (depth 5, 600 rounds at eta 0.04, 30% of the columns per tree,
min_child_weight 50, lambda 10), chosen on a day-by-day replay of 2013 on days the earlier study had not used
(docs/features.md). ``recency_halflife_days`` weights a row by 0.5 ** (its age / half-life).

Training (``train``): by default one fit on the whole window; with early stopping, a train-split fit that the
validation days judge, then a refit on the window. Either way the saved model's ``spec["validation"]`` says which
model any validation figure belongs to.

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
from ml_assets.core.families import SPEC_FILE, Family, ModelInputs, labels

NAME = "xgboost"
MODEL_FILE = "model.ubj"
DEFAULT_PARAMS: dict[str, Any] = {  # generic; a dataset's spec (``models.xgboost``) sets its own recipe over these
    "n_estimators": 300,
    "max_depth": 6,
    "learning_rate": 0.08,
    "min_child_weight": 2.0,
    "subsample": 0.9,
    "colsample_bytree": 0.8,
    "reg_lambda": 2.0,
    "max_bin": 256,
    "early_stopping_rounds": 25,  # 0: all n_estimators, one fit on the whole window
    "recency_halflife_days": 0.0,  # 0: every day of the window weighs the same
    "refit_on_window": True,
}
RATE_PRIOR = 20.0  # rows: a category seen this often is ordered halfway between its own rate and the overall one


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


def rate_ordered_vocabularies(frame: pl.DataFrame, categorical: list[str], label: str) -> dict[str, list[str]]:
    """Per categorical, its non-null values ordered by shrunk positive rate on ``frame`` (ties: by value)."""
    y = pl.col(label).cast(pl.Float64)
    overall = float(frame.select(y.mean()).item() or 0.0)
    out = {}
    for c in categorical:
        rates = (frame.filter(pl.col(c).is_not_null()).group_by(c)
                 .agg(rate=(y.sum() + RATE_PRIOR * overall) / (pl.len() + RATE_PRIOR))
                 .sort(["rate", c]))
        out[c] = rates[c].to_list()
    return out


def recency_weights(frame: pl.DataFrame, halflife_days: float) -> np.ndarray | None:
    """0.5 ** (age in days / half-life), the newest day of ``frame`` weighing 1; None when off."""
    if not halflife_days or halflife_days <= 0:
        return None
    age = (frame["date"].max() - frame["date"]).dt.total_days().to_numpy()
    return np.power(0.5, age / float(halflife_days))


def _booster_params(p: dict[str, Any], spec: dict[str, Any], seed: int, nthread: int) -> dict[str, Any]:
    monotone = spec.get("monotone") or {}
    return {"objective": "binary:logistic", "eval_metric": "logloss", "tree_method": "hist",
            "max_depth": int(p["max_depth"]), "eta": float(p["learning_rate"]),
            "min_child_weight": float(p["min_child_weight"]), "subsample": float(p["subsample"]),
            "colsample_bytree": float(p["colsample_bytree"]), "lambda": float(p["reg_lambda"]),
            "max_bin": int(p["max_bin"]), "seed": int(seed), "nthread": int(nthread), "verbosity": 0,
            # the spec's directional expectations as constraints: worse weather never lowers the risk
            **({"monotone_constraints": tuple(int(monotone.get(c, 0)) for c in feature_order(spec))}
               if monotone else {})}


def _dmatrix(frame: pl.DataFrame, spec: dict[str, Any], with_label: bool, nthread: int,
             weight: np.ndarray | None = None) -> xgb.DMatrix:
    return xgb.DMatrix(design_matrix(frame, spec), label=labels(frame, spec["label"]) if with_label else None,
                       weight=weight, feature_names=feature_order(spec), missing=np.nan, nthread=nthread)


def _fit(rows: pl.DataFrame, inputs: ModelInputs, p: dict[str, Any], seed: int, nthread: int, rounds: int,
         valid: pl.DataFrame | None = None) -> XGBoostModel:
    spec: dict[str, Any] = {"family": NAME, **inputs.as_dict(), "params": p, "seed": seed, "fit_rows": rows.height,
                            "vocabularies": rate_ordered_vocabularies(rows, inputs.categorical, inputs.label)}
    weight = recency_weights(rows, float(p.get("recency_halflife_days") or 0.0))
    evals, stopping = [], None
    if valid is not None:
        evals, stopping = [(_dmatrix(valid, spec, True, nthread), "valid")], int(p["early_stopping_rounds"])
    booster = xgb.train(_booster_params(p, spec, seed, nthread), _dmatrix(rows, spec, True, nthread, weight),
                        num_boost_round=rounds, evals=evals, early_stopping_rounds=stopping, verbose_eval=False)
    if stopping is not None:
        booster = booster[: booster.best_iteration + 1]  # the saved model IS the ensemble that was scored
    booster.set_attr(best_iteration=None, best_score=None)
    spec["n_trees"] = booster.num_boosted_rounds()
    return XGBoostModel(booster, spec)


def share_threshold(p: np.ndarray, positive_share: float) -> float:
    """The score above which the window's share of positives is flagged: a rank rule, no held-out rows needed."""
    if p.size == 0 or not 0.0 < positive_share < 1.0:
        return 0.5
    return float(np.quantile(p, 1.0 - positive_share))


def train(train_rows: pl.DataFrame, valid_rows: pl.DataFrame, inputs: ModelInputs, params: dict | None = None,
          seed: int = 0, nthread: int = 2) -> XGBoostModel:
    """Two recipes.

    One fit (``early_stopping_rounds`` 0 with ``refit_on_window``, as the flights spec trains): ONE fit on the whole window (train and validation days) with
    all ``n_estimators``: the validation days would only pick a threshold, not worth a second fit. The threshold
    flags the window's positive share; there is no validation metric (the out-of-sample figures are the holdout
    evaluation's, in model_evaluation), which ``spec["validation"]`` says.

    Split (``early_stopping_rounds`` > 0, the generic default, or ``refit_on_window`` off, as tuning trials run):
    fit on the train split,
    early-stopped on the validation days when asked; the threshold (best F1) and the validation metrics come from
    that model, on rows it never saw; then, with ``refit_on_window``, the same recipe is refit on the whole window.
    """
    if train_rows.height == 0:
        raise ValueError("no training rows: cannot fit a model")
    p = {**DEFAULT_PARAMS, **(params or {})}
    rounds, stopping = int(p["n_estimators"]), int(p["early_stopping_rounds"])
    window = pl.concat([train_rows, valid_rows], how="vertical_relaxed") if valid_rows.height else train_rows
    if p.get("refit_on_window") and stopping <= 0:
        model = _fit(window, inputs, p, seed, nthread, rounds)
        share = float(labels(window, inputs.label).mean())
        model.spec["threshold"] = share_threshold(predict(model, window, nthread), share)
        model.spec["validation"] = {"model": "none: one fit on the whole window; out-of-sample figures are the "
                                             "holdout evaluation's"}
        return model
    model = _fit(train_rows, inputs, p, seed, nthread, rounds,
                 valid_rows if valid_rows.height and stopping > 0 else None)
    spec = model.spec
    if valid_rows.height:
        p_valid = predict(model, valid_rows, nthread)
        y_valid = labels(valid_rows, inputs.label)
        spec["threshold"] = best_f1_threshold(y_valid, p_valid)
        spec["validation"] = {"model": "fitted on the train split (before any refit)", "rows": valid_rows.height,
                              **classification_metrics(y_valid, p_valid, spec["threshold"])}
    else:
        spec["threshold"], spec["validation"] = 0.5, {"model": "none: no validation rows"}
    if p.get("refit_on_window") and valid_rows.height:
        refit = _fit(window, inputs, p, seed, nthread, spec["n_trees"])
        refit.spec.update(threshold=spec["threshold"], validation=spec["validation"])
        model = refit
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
    return {"max_depth": trial.suggest_int("max_depth", 3, 7),
            "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.1, log=True),
            "min_child_weight": trial.suggest_float("min_child_weight", 5.0, 200.0, log=True),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.2, 0.8),
            "reg_lambda": trial.suggest_float("reg_lambda", 1.0, 50.0, log=True),
            "recency_halflife_days": trial.suggest_categorical("recency_halflife_days", [0.0, 14.0, 28.0, 56.0])}


FAMILY = Family(name=NAME, default_params=DEFAULT_PARAMS, train=train, predict=predict,
                save=save, load=load, export_onnx=export_onnx, tune_space=tune_space)
