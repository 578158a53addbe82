"""Model families in one place: a family is one module of this package plus one entry in ``FAMILIES``.

Each module defines ``FAMILY = Family(...)``: how to train (on a time-split window), predict, save and load in
open formats (no pickle), and export an ONNX graph over the raw feature columns whose answers match the native
model's (``core.onnx_export.parity``). The candidate assets, their checks, the evaluation inputs, the
automation and the model lines are derived from this registry; ``ML_ASSETS_FAMILIES`` picks the families that
are trained. Modules are imported only when a family is used: loading the Dagster definitions must not import
torch or xgboost.
"""
from __future__ import annotations

import importlib
import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

# name -> (module, the Dagster kind shown on its asset, one line for the UI)
FAMILIES: dict[str, tuple[str, str, str]] = {
    "xgboost": ("xgboost", "xgboost", "gradient-boosted trees over rate-ordered categorical codes (the dataset's "
                                     "recipe: its spec's models.xgboost)"),
    "mlp": ("mlp", "pytorch", "a PyTorch MLP: embeddings for categoricals, standardized numerics with missing flags"),
    "logistic": ("logistic", "scipy", "L2-regularized logistic regression: one weight per category level, "
                                      "standardized numerics with missing flags"),
}
# The families with a hyperparameter search space (``Family.tune_space``; a test keeps the two in step). Listed
# here so that building the graph needs no import of torch or xgboost.
TUNABLE = frozenset({"xgboost"})
SPEC_FILE = "model_spec.json"
UNKNOWN_INDEX = 0  # the embedding / weight index of an unknown or missing category


@dataclass(frozen=True)
class ModelInputs:
    """What a model reads (from the dataset spec) and what it predicts."""

    categorical: list[str]
    numeric: list[str]
    label: str
    output: str  # the ONNX output name, e.g. p_late
    # numeric column -> +1 / -1: the prediction may only rise / fall with it (the spec's directional expectations;
    # a family that can, xgboost, trains under them)
    monotone: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"categorical": self.categorical, "numeric": self.numeric, "label": self.label, "output": self.output,
                "monotone": dict(self.monotone)}


@dataclass(frozen=True)
class Family:
    name: str
    default_params: dict[str, Any]
    train: Callable[..., Any]          # (train, valid, inputs, params, seed) -> model with a .spec dict
    predict: Callable[[Any, pl.DataFrame], np.ndarray]
    save: Callable[[Any], dict[str, bytes]]
    load: Callable[[dict[str, bytes]], Any]
    export_onnx: Callable[[Any], bytes]
    tune_space: Callable[[Any], dict[str, Any]] | None = None  # optuna trial -> params, when tunable
    notes: dict[str, str] = field(default_factory=dict)


def names() -> list[str]:
    return list(FAMILIES)


def get(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; expected one of {', '.join(FAMILIES)}")
    return importlib.import_module(f"{__name__}.{FAMILIES[name][0]}").FAMILY


def code_version(name: str) -> str:
    """A hash of the family module's source (read, not imported: definitions load without torch/xgboost)."""
    import hashlib
    from pathlib import Path

    source = (Path(__file__).with_name(f"{FAMILIES[name][0]}.py")).read_bytes()
    return f"{name}-{hashlib.sha256(source).hexdigest()[:10]}"


def tunable(name: str) -> bool:
    return name in TUNABLE


def kind(name: str) -> str:
    return FAMILIES[name][1]


def describe(name: str) -> str:
    return FAMILIES[name][2]


def parse_selection(text: str | None) -> list[str]:
    """``ML_ASSETS_FAMILIES=xgboost,mlp`` -> the families trained (default: all), validated."""
    chosen = [t.strip() for t in (text or "").split(",") if t.strip()] or names()
    unknown = [c for c in chosen if c not in FAMILIES]
    if unknown:
        raise ValueError(f"ML_ASSETS_FAMILIES names unknown families {unknown}; expected some of {', '.join(FAMILIES)}")
    return list(dict.fromkeys(chosen))


def family_of(files: dict[str, bytes]) -> str:
    return json.loads(files[SPEC_FILE])["family"]


def load(files: dict[str, bytes]) -> Any:
    return get(family_of(files)).load(files)


def predict(model: Any, frame: pl.DataFrame) -> np.ndarray:
    return get(model.spec["family"]).predict(model, frame)


def canonical_order(frame: pl.DataFrame, key: Sequence[str]) -> pl.DataFrame:
    """Rows in a fixed order, so that a model does not depend on the order its rows arrived in."""
    return frame.sort(list(key), nulls_last=True, maintain_order=True)


def vocabularies(train: pl.DataFrame, categorical: Sequence[str]) -> dict[str, list[str]]:
    """Sorted distinct non-null values per categorical, from the training rows."""
    return {c: sorted(train.get_column(c).drop_nulls().unique().to_list()) for c in categorical}


def labels(frame: pl.DataFrame, label: str) -> np.ndarray:
    return frame.get_column(label).cast(pl.Float32).to_numpy()


# ---------------------------------------------------------------- encoders the families share


def encode_categorical(frame: pl.DataFrame, vocabularies_: dict[str, list[str]], columns: list[str]) -> np.ndarray:
    """[N, C] int64 embedding indices; unknown or null -> 0."""
    exprs = [pl.col(c).replace_strict({v: i + 1 for i, v in enumerate(vocabularies_[c])}, default=UNKNOWN_INDEX,
                                      return_dtype=pl.Int64).fill_null(UNKNOWN_INDEX).alias(c) for c in columns]
    return frame.select(exprs).to_numpy().astype(np.int64, copy=True).reshape(frame.height, len(columns))


def numeric_matrix(frame: pl.DataFrame, columns: list[str]) -> np.ndarray:
    """[N, K] float32, NaN where missing (the same float32 values the ONNX graph receives)."""
    return frame.select(pl.col(c).cast(pl.Float64) for c in columns).to_numpy().astype(np.float32)


def standardization(numeric: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean/std per column over the non-missing training values; degenerate columns -> (0, 1)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing column: handled just below
        mean = np.nanmean(numeric.astype(np.float64), axis=0)
        std = np.nanstd(numeric.astype(np.float64), axis=0)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)
