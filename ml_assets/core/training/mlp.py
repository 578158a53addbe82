"""PyTorch MLP candidate: an embedding per categorical, standardized numerics with missing indicators.

Inputs to the network are (categorical indices, raw numerics with NaN); standardization and NaN handling
happen *inside* ``forward`` with float32 buffers, so that the ONNX graph (``onnx_export``) performs the very
same float32 operations and parity is a matter of matmul summation order only.

Deterministic: seeded initialization and shuffling, ``torch.use_deterministic_algorithms`` and one intra-op
thread during training (both restored afterwards); the same rows and seed give identical state_dict bytes.
Persistence: the state_dict via ``torch.save`` (tensors only, loaded with ``weights_only=True``) and a
JSON spec (vocabularies, means, stds, layer sizes, history-rate encoding, threshold).
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import warnings
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import polars as pl
import torch
from torch import nn

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

FAMILY = "mlp"
MODEL_FILE = "model.pt"
SPEC_FILE = "model_spec.json"
UNKNOWN_INDEX = 0
DEFAULT_PARAMS: dict[str, Any] = {
    "hidden": [64, 32],
    "max_embedding_dim": 8,
    "learning_rate": 3e-3,
    "weight_decay": 1e-5,
    "batch_size": 512,
    "max_epochs": 30,
    "patience": 3,
}


class FlightMLP(nn.Module):
    """(categorical indices [N,C] int64, raw numerics [N,K] float32 with NaN) -> logit [N]."""

    def __init__(self, vocab_sizes: list[int], embedding_dims: list[int], n_numeric: int, hidden: list[int]):
        super().__init__()
        # +1 row per table: index 0 is the unknown category.
        self.embeddings = nn.ModuleList(nn.Embedding(n + 1, d) for n, d in zip(vocab_sizes, embedding_dims))
        self.register_buffer("mean", torch.zeros(n_numeric))
        self.register_buffer("std", torch.ones(n_numeric))
        sizes = [sum(embedding_dims) + 2 * n_numeric, *hidden, 1]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, categorical: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        embedded = [emb(categorical[:, i]) for i, emb in enumerate(self.embeddings)]
        missing = torch.isnan(numeric)
        standardized = torch.where(missing, torch.zeros_like(numeric), (numeric - self.mean) / self.std)
        x = torch.cat([*embedded, standardized, missing.to(numeric.dtype)], dim=1)
        for layer in self.linears[:-1]:
            x = torch.relu(layer(x))
        return self.linears[-1](x).squeeze(1)


@dataclass(frozen=True)
class MLPModel:
    module: FlightMLP
    spec: dict[str, Any]

    @property
    def threshold(self) -> float:
        return self.spec["threshold"]


def embedding_dim(vocab_size: int, max_dim: int) -> int:
    return int(min(max_dim, 1 + math.ceil(math.sqrt(vocab_size))))


def index_vocabularies(train: pl.DataFrame) -> dict[str, list[str]]:
    """Sorted distinct values per categorical: ``vocabulary[i]`` has embedding index i + 1."""
    return {c: sorted(train.get_column(c).drop_nulls().unique().to_list()) for c in CATEGORICAL}


def numeric_columns(use_history_rates: bool) -> list[str]:
    return NUMERIC + (RATE_COLUMNS if use_history_rates else [])


def encode_categorical(frame: pl.DataFrame, vocabularies: dict[str, list[str]], columns: list[str]) -> np.ndarray:
    """[N, C] int64 embedding indices in ``columns`` order; unknown or null -> 0."""
    exprs = [
        pl.col(c)
        .replace_strict({v: i + 1 for i, v in enumerate(vocabularies[c])}, default=UNKNOWN_INDEX, return_dtype=pl.Int64)
        .fill_null(UNKNOWN_INDEX)
        .alias(c)
        for c in columns
    ]
    return frame.select(exprs).to_numpy().astype(np.int64, copy=True).reshape(frame.height, len(columns))


def numeric_matrix(frame: pl.DataFrame, columns: list[str]) -> np.ndarray:
    """[N, K] float32, NaN where missing (the same float32 values the ONNX graph receives)."""
    return frame.select(pl.col(c).cast(pl.Float64) for c in columns).to_numpy().astype(np.float32)


def _standardization(numeric: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean/std per column over the non-missing training values; degenerate columns -> (0, 1)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing column: handled just below
        mean = np.nanmean(numeric.astype(np.float64), axis=0)
        std = np.nanstd(numeric.astype(np.float64), axis=0)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


@contextlib.contextmanager
def deterministic_torch(threads: int) -> Iterator[None]:
    """Deterministic kernels and a fixed thread count for the duration, restoring the caller's settings."""
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous_deterministic)
        torch.set_num_threads(previous_threads)


def _tensors(frame: pl.DataFrame, spec: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        torch.from_numpy(encode_categorical(frame, spec["vocabularies"], spec["categorical"])),
        torch.from_numpy(numeric_matrix(frame, spec["numeric"])),
    )


def _labels(frame: pl.DataFrame) -> torch.Tensor:
    return torch.from_numpy(frame.get_column(LABEL).cast(pl.Float32).to_numpy().copy())


def _with_rates(frame: pl.DataFrame, spec: dict[str, Any]) -> pl.DataFrame:
    rates = spec.get("history_rates")
    return apply_history_rates(frame, HistoryRates.from_json(rates)) if rates else frame


def build_module(spec: dict[str, Any]) -> FlightMLP:
    return FlightMLP(
        vocab_sizes=[len(spec["vocabularies"][c]) for c in spec["categorical"]],
        embedding_dims=[spec["embedding_dims"][c] for c in spec["categorical"]],
        n_numeric=len(spec["numeric"]),
        hidden=list(spec["hidden"]),
    )


def _validation_loss(module: FlightMLP, cat: torch.Tensor, num: torch.Tensor, y: torch.Tensor) -> float:
    module.eval()
    with torch.no_grad():
        return float(nn.functional.binary_cross_entropy_with_logits(module(cat, num), y))


def _fit(module: FlightMLP, train: tuple, valid: tuple | None, p: dict[str, Any], seed: int) -> dict[str, Any]:
    """Mini-batch Adam with early stopping on validation log loss; leaves the best weights in ``module``."""
    cat, num, y = train
    optimizer = torch.optim.Adam(module.parameters(), lr=p["learning_rate"], weight_decay=p["weight_decay"])
    shuffler = torch.Generator().manual_seed(seed)
    best_loss, best_state, best_epoch, stale = math.inf, copy.deepcopy(module.state_dict()), 0, 0
    history = []
    for epoch in range(int(p["max_epochs"])):
        module.train()
        order = torch.randperm(y.shape[0], generator=shuffler)
        for start in range(0, y.shape[0], int(p["batch_size"])):
            batch = order[start : start + int(p["batch_size"])]
            optimizer.zero_grad()
            loss = nn.functional.binary_cross_entropy_with_logits(module(cat[batch], num[batch]), y[batch])
            loss.backward()
            optimizer.step()
        if valid is None:
            best_state, best_epoch = copy.deepcopy(module.state_dict()), epoch
            continue
        loss_now = _validation_loss(module, *valid)
        history.append(loss_now)
        if loss_now < best_loss:
            best_loss, best_state, best_epoch, stale = loss_now, copy.deepcopy(module.state_dict()), epoch, 0
        else:
            stale += 1
            if stale >= int(p["patience"]):
                break
    module.load_state_dict(best_state)
    module.eval()
    return {"best_epoch": best_epoch, "validation_log_loss": history}


def train_mlp(
    train: pl.DataFrame,
    valid: pl.DataFrame,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    threads: int = 1,
    use_history_rates: bool = True,
) -> MLPModel:
    """Fit on ``train`` (labelled feature rows), early-stop on ``valid``; threshold = best F1 on ``valid``."""
    if train.height == 0:
        raise ValueError("no training rows: cannot fit a model")
    p = {**DEFAULT_PARAMS, **(params or {})}
    train, valid = canonical_order(train), canonical_order(valid)
    vocabularies = index_vocabularies(train)
    spec: dict[str, Any] = {
        "family": FAMILY,
        "categorical": list(CATEGORICAL),
        "numeric": numeric_columns(use_history_rates),
        "vocabularies": vocabularies,
        "embedding_dims": {c: embedding_dim(len(v), int(p["max_embedding_dim"])) for c, v in vocabularies.items()},
        "hidden": [int(h) for h in p["hidden"]],
        "history_rates": fit_history_rates(train).to_json() if use_history_rates else None,
        "params": p,
        "seed": seed,
    }
    train_rows = add_out_of_day_rates(train) if use_history_rates else train
    train_tensors = (*_tensors(train_rows, spec), _labels(train))
    mean, std = _standardization(train_tensors[1].numpy())
    spec["means"], spec["stds"] = mean.tolist(), std.tolist()
    valid_tensors = (*_tensors(_with_rates(valid, spec), spec), _labels(valid)) if valid.height else None
    with deterministic_torch(threads):
        torch.manual_seed(seed)
        module = build_module(spec)
        module.mean.copy_(torch.from_numpy(mean))
        module.std.copy_(torch.from_numpy(std))
        spec["training"] = _fit(module, train_tensors, valid_tensors, p, seed)
    model = MLPModel(module=module, spec=spec)
    spec["threshold"] = best_f1_threshold(_labels(valid).numpy(), predict_mlp(model, valid)) if valid.height else 0.5
    return model


def predict_mlp(model: MLPModel, frame: pl.DataFrame) -> np.ndarray:
    """p_late (float64) for each row of a feature frame (extra columns such as keys are ignored)."""
    if frame.height == 0:
        return np.zeros(0, dtype=np.float64)
    cat, num = _tensors(_with_rates(frame, model.spec), model.spec)
    model.module.eval()
    with torch.no_grad():
        return torch.sigmoid(model.module(cat, num)).numpy().astype(np.float64)


def state_dict_bytes(module: FlightMLP) -> bytes:
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return buffer.getvalue()


def save_mlp(model: MLPModel) -> dict[str, bytes]:
    return {
        MODEL_FILE: state_dict_bytes(model.module),
        SPEC_FILE: json.dumps(model.spec, sort_keys=True, indent=2).encode(),
    }


def load_mlp(files: dict[str, bytes]) -> MLPModel:
    spec = json.loads(files[SPEC_FILE])
    module = build_module(spec)
    module.load_state_dict(torch.load(io.BytesIO(files[MODEL_FILE]), weights_only=True))
    module.eval()
    return MLPModel(module=module, spec=spec)


def numpy_weights(model: MLPModel) -> dict[str, np.ndarray]:
    """float32 arrays by state_dict key: what the ONNX export embeds."""
    return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.module.state_dict().items()}
