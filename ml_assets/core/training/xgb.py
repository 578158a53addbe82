"""XGBoost candidate: gradient-boosted trees over ordinal-coded categoricals, numerics and history rates.

Categoricals are ordinal codes (vocabulary from the training split, sorted; an unknown category is
*missing*, so it follows each split's learned default branch) fed as plain numbers with
``enable_categorical=False``. Why not XGBoost's native categorical splits: they become set-membership
splits that ONNX TreeEnsemble (opset < 5) cannot express; with codes every split is ``x < threshold``, which
the ONNX graph replicates exactly (see ``onnx_export``). The target information of high-cardinality
categories comes through the history rates instead.

Persistence is open formats only: the booster as UBJSON bytes plus a JSON spec (feature order,
vocabularies, history-rate encoding, threshold, parameters).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import xgboost as xgb

from ml_assets.core.evaluation import best_f1_threshold
from ml_assets.core.features import CATEGORICAL, LABEL, NUMERIC
from ml_assets.core.training.window import (
    RATE_COLUMNS,
    HistoryRates,
    add_out_of_day_rates,
    apply_history_rates,
    canonical_order,
    fit_history_rates,
)

FAMILY = "xgboost"
MODEL_FILE = "model.ubj"
SPEC_FILE = "model_spec.json"
DEFAULT_PARAMS: dict[str, Any] = {
    "n_estimators": 200,
    "max_depth": 6,
    "learning_rate": 0.1,
    "min_child_weight": 1.0,
    "subsample": 0.9,
    "colsample_bytree": 0.9,
    "reg_lambda": 1.0,
    "max_bin": 256,
    "early_stopping_rounds": 20,
    # After early stopping picks the number of trees, refit on the whole window: the validation days are the
    # most recent ones, the most telling about tomorrow, and leaving them out costs more than it saves.
    "refit_on_window": True,
}


@dataclass(frozen=True)
class XGBoostModel:
    booster: xgb.Booster
    spec: dict[str, Any]

    @property
    def feature_order(self) -> list[str]:
        return self.spec["feature_order"]

    @property
    def threshold(self) -> float:
        return self.spec["threshold"]

    @property
    def history_rates(self) -> HistoryRates | None:
        data = self.spec.get("history_rates")
        return HistoryRates.from_json(data) if data else None


def ordinal_vocabularies(train: pl.DataFrame) -> dict[str, list[str]]:
    """Sorted distinct non-null values per categorical: code i is ``vocabulary[i]``."""
    return {c: sorted(train.get_column(c).drop_nulls().unique().to_list()) for c in CATEGORICAL}


def feature_order(use_history_rates: bool) -> list[str]:
    return CATEGORICAL + NUMERIC + (RATE_COLUMNS if use_history_rates else [])


def design_matrix(frame_with_rates: pl.DataFrame, spec: dict[str, Any]) -> np.ndarray:
    """float32 matrix in ``feature_order``: codes for categoricals (NaN = unknown), NaN for missing numerics."""
    codes = [
        pl.col(c)
        .replace_strict({v: float(i) for i, v in enumerate(vocab)}, default=None, return_dtype=pl.Float64)
        .alias(c)
        for c, vocab in spec["vocabularies"].items()
    ]
    numeric = [pl.col(c).cast(pl.Float64) for c in spec["feature_order"] if c not in spec["vocabularies"]]
    matrix = frame_with_rates.select(*codes, *numeric).select(spec["feature_order"])
    # float64 -> float32 here, once: xgboost and onnxruntime then see the very same float32 values.
    return matrix.to_numpy().astype(np.float32)


def _with_rates(frame: pl.DataFrame, spec: dict[str, Any]) -> pl.DataFrame:
    rates = spec.get("history_rates")
    return apply_history_rates(frame, HistoryRates.from_json(rates)) if rates else frame


def _booster_params(params: dict[str, Any], seed: int, nthread: int) -> dict[str, Any]:
    return {
        "objective": "binary:logistic",
        "eval_metric": "logloss",
        "tree_method": "hist",
        "max_depth": int(params["max_depth"]),
        "eta": float(params["learning_rate"]),
        "min_child_weight": float(params["min_child_weight"]),
        "subsample": float(params["subsample"]),
        "colsample_bytree": float(params["colsample_bytree"]),
        "lambda": float(params["reg_lambda"]),
        "max_bin": int(params["max_bin"]),
        "seed": int(seed),
        "nthread": int(nthread),
        "verbosity": 0,
    }


def _labels(frame: pl.DataFrame) -> np.ndarray:
    return frame.get_column(LABEL).cast(pl.Float32).to_numpy()


def _dmatrix(x: np.ndarray, y: np.ndarray | None, names: list[str], nthread: int) -> xgb.DMatrix:
    return xgb.DMatrix(x, label=y, feature_names=names, missing=np.nan, nthread=nthread)


def train_xgboost(
    train: pl.DataFrame,
    valid: pl.DataFrame,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    nthread: int = 2,
    use_history_rates: bool = True,
) -> XGBoostModel:
    """Fit on ``train`` (labelled feature rows), early-stop on ``valid``; threshold = best F1 on ``valid``."""
    if train.height == 0:
        raise ValueError("no training rows: cannot fit a model")
    p = {**DEFAULT_PARAMS, **(params or {})}
    train, valid = canonical_order(train), canonical_order(valid)
    spec: dict[str, Any] = {
        "family": FAMILY,
        "feature_order": feature_order(use_history_rates),
        "vocabularies": ordinal_vocabularies(train),
        "history_rates": fit_history_rates(train).to_json() if use_history_rates else None,
        "params": p,
        "seed": seed,
    }
    train_rows = add_out_of_day_rates(train) if use_history_rates else train
    dtrain = _dmatrix(design_matrix(train_rows, spec), _labels(train), spec["feature_order"], nthread)
    evals, stopping = [], None
    if valid.height:
        dvalid = _dmatrix(design_matrix(_with_rates(valid, spec), spec), _labels(valid), spec["feature_order"], nthread)
        evals, stopping = [(dvalid, "valid")], int(p["early_stopping_rounds"])
    booster = xgb.train(
        _booster_params(p, seed, nthread),
        dtrain,
        num_boost_round=int(p["n_estimators"]),
        evals=evals,
        early_stopping_rounds=stopping,
        verbose_eval=False,
    )
    if stopping is not None:
        # Keep only the trees up to the best round: the saved model, its predictions and its ONNX form
        # are then one and the same ensemble (no iteration_range to remember).
        best = booster.best_iteration
        booster = booster[: best + 1]
        spec["best_iteration"] = best
    booster.set_attr(best_iteration=None, best_score=None)
    spec["n_trees"] = booster.num_boosted_rounds()
    model = XGBoostModel(booster=booster, spec=spec)
    # The threshold comes from predictions on days the model did not see, so it is chosen before any refit.
    spec["threshold"] = (
        best_f1_threshold(_labels(valid), predict_xgboost(model, valid)) if valid.height else 0.5
    )
    if p.get("refit_on_window") and valid.height:
        model = _refit(pl.concat([train, valid], how="vertical_relaxed"), spec, p, seed, nthread, use_history_rates)
    return model


def _refit(window: pl.DataFrame, spec: dict[str, Any], p: dict[str, Any], seed: int, nthread: int,
           use_history_rates: bool) -> XGBoostModel:
    """The same recipe and tree count on the whole window (vocabularies and history rates included)."""
    window = canonical_order(window)
    spec = {**spec, "vocabularies": ordinal_vocabularies(window),
            "history_rates": fit_history_rates(window).to_json() if use_history_rates else None}
    rows = add_out_of_day_rates(window) if use_history_rates else window
    dwindow = _dmatrix(design_matrix(rows, spec), _labels(window), spec["feature_order"], nthread)
    booster = xgb.train(_booster_params(p, seed, nthread), dwindow, num_boost_round=spec["n_trees"],
                        verbose_eval=False)
    return XGBoostModel(booster=booster, spec={**spec, "refit_rows": window.height})


def predict_xgboost(model: XGBoostModel, frame: pl.DataFrame, nthread: int = 2) -> np.ndarray:
    """p_late (float64) for each row of a feature frame (extra columns such as keys are ignored)."""
    if frame.height == 0:
        return np.zeros(0, dtype=np.float64)
    x = design_matrix(_with_rates(frame, model.spec), model.spec)
    dm = _dmatrix(x, None, model.feature_order, nthread=nthread)
    return model.booster.predict(dm).astype(np.float64)


def save_xgboost(model: XGBoostModel) -> dict[str, bytes]:
    """Open-format files: UBJSON booster + JSON spec."""
    return {
        MODEL_FILE: bytes(model.booster.save_raw("ubj")),
        SPEC_FILE: json.dumps(model.spec, sort_keys=True, indent=2).encode(),
    }


def load_xgboost(files: dict[str, bytes]) -> XGBoostModel:
    booster = xgb.Booster()
    booster.load_model(bytearray(files[MODEL_FILE]))
    return XGBoostModel(booster=booster, spec=json.loads(files[SPEC_FILE]))


def booster_json(model: XGBoostModel) -> dict[str, Any]:
    """The booster in xgboost's JSON schema (trees, base score): the source of the ONNX export."""
    return json.loads(bytes(model.booster.save_raw("json")))
