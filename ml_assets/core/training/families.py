"""One interface over the model families, so the wiring never branches on the family.

Imports are lazy: loading the Dagster definitions must not import torch or xgboost.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import polars as pl

FAMILIES = ("xgboost", "mlp")
SPEC_FILE = "model_spec.json"


def _module(family: str):
    if family == "xgboost":
        from ml_assets.core.training import xgb

        return xgb.train_xgboost, xgb.save_xgboost, xgb.load_xgboost, xgb.predict_xgboost
    if family == "mlp":
        from ml_assets.core.training import mlp

        return mlp.train_mlp, mlp.save_mlp, mlp.load_mlp, mlp.predict_mlp
    raise ValueError(f"unknown model family {family!r}; expected one of {FAMILIES}")


def train(family: str, train_rows: pl.DataFrame, valid_rows: pl.DataFrame, params: dict[str, Any] | None,
          seed: int = 0) -> Any:
    return _module(family)[0](train_rows, valid_rows, params=params, seed=seed)


def save(model: Any) -> dict[str, bytes]:
    return _module(model.spec["family"])[1](model)


def family_of(files: dict[str, bytes]) -> str:
    return json.loads(files[SPEC_FILE])["family"]


def load(files: dict[str, bytes]) -> Any:
    return _module(family_of(files))[2](files)


def predict(model: Any, frame: pl.DataFrame) -> np.ndarray:
    return _module(model.spec["family"])[3](model, frame)
