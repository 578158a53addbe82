"""PyTorch MLP: an embedding per categorical, standardized numerics with missing indicators.

Inputs to the network are (categorical indices, raw numerics with NaN); standardization and NaN handling happen
*inside* ``forward`` with float32 buffers, so that the ONNX graph performs the very same float32 operations and
parity is a matter of matmul summation order only.

Deterministic: seeded initialization and shuffling, ``torch.use_deterministic_algorithms`` and one intra-op
thread during training (restored afterwards); the same rows and seed give identical state_dict bytes.
Persistence: the state_dict via ``torch.save`` (tensors only, loaded with ``weights_only=True``) and a JSON spec.
The validation metrics are those of the early-stopped weights on the validation days (never trained on).
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

from ml_assets.core import onnx_export as X
from ml_assets.core.evaluation import best_f1_threshold, classification_metrics
from ml_assets.core.families import (SPEC_FILE, Family, ModelInputs, encode_categorical, labels, numeric_matrix,
                                     standardization, vocabularies)

NAME = "mlp"
MODEL_FILE = "model.pt"
DEFAULT_PARAMS: dict[str, Any] = {"hidden": [64, 32], "max_embedding_dim": 8, "learning_rate": 3e-3,
                                  "weight_decay": 1e-5, "batch_size": 512, "max_epochs": 30, "patience": 3}


class TabularMLP(nn.Module):
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
    module: TabularMLP
    spec: dict[str, Any]


def embedding_dim(vocab_size: int, max_dim: int) -> int:
    return int(min(max_dim, 1 + math.ceil(math.sqrt(vocab_size))))


@contextlib.contextmanager
def deterministic_torch(threads: int) -> Iterator[None]:
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
    return (torch.from_numpy(encode_categorical(frame, spec["vocabularies"], spec["categorical"])),
            torch.from_numpy(numeric_matrix(frame, spec["numeric"])))


def _targets(frame: pl.DataFrame, label: str) -> torch.Tensor:
    return torch.from_numpy(labels(frame, label).copy())


def build_module(spec: dict[str, Any]) -> TabularMLP:
    return TabularMLP(vocab_sizes=[len(spec["vocabularies"][c]) for c in spec["categorical"]],
                      embedding_dims=[spec["embedding_dims"][c] for c in spec["categorical"]],
                      n_numeric=len(spec["numeric"]), hidden=list(spec["hidden"]))


def _validation_loss(module: TabularMLP, cat: torch.Tensor, num: torch.Tensor, y: torch.Tensor) -> float:
    module.eval()
    with torch.no_grad():
        return float(nn.functional.binary_cross_entropy_with_logits(module(cat, num), y))


def _fit(module: TabularMLP, train: tuple, valid: tuple | None, p: dict[str, Any], seed: int) -> dict[str, Any]:
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
            batch = order[start: start + int(p["batch_size"])]
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


def train(train_rows: pl.DataFrame, valid_rows: pl.DataFrame, inputs: ModelInputs, params: dict | None = None,
          seed: int = 0, threads: int = 1, weights=None) -> MLPModel:
    """Fit on ``train_rows``, early-stop on ``valid_rows``; threshold = best F1 on ``valid_rows``."""
    if train_rows.height == 0:
        raise ValueError("no training rows: cannot fit a model")
    p = {**DEFAULT_PARAMS, **(params or {})}
    vocab = vocabularies(train_rows, inputs.categorical)
    spec: dict[str, Any] = {"family": NAME, **inputs.as_dict(), "vocabularies": vocab,
                            "embedding_dims": {c: embedding_dim(len(v), int(p["max_embedding_dim"])) for c, v in vocab.items()},
                            "hidden": [int(h) for h in p["hidden"]], "params": p, "seed": seed}
    train_tensors = (*_tensors(train_rows, spec), _targets(train_rows, inputs.label))
    mean, std = standardization(train_tensors[1].numpy())
    spec["means"], spec["stds"] = mean.tolist(), std.tolist()
    valid_tensors = (*_tensors(valid_rows, spec), _targets(valid_rows, inputs.label)) if valid_rows.height else None
    with deterministic_torch(threads):
        torch.manual_seed(seed)
        module = build_module(spec)
        module.mean.copy_(torch.from_numpy(mean))
        module.std.copy_(torch.from_numpy(std))
        spec["training"] = _fit(module, train_tensors, valid_tensors, p, seed)
    model = MLPModel(module=module, spec=spec)
    if valid_rows.height:
        y, pv = labels(valid_rows, inputs.label), predict(model, valid_rows)
        spec["threshold"] = best_f1_threshold(y, pv)
        spec["validation"] = {"model": "early-stopped weights (the saved model)", "rows": valid_rows.height,
                              **classification_metrics(y, pv, spec["threshold"])}
    else:
        spec["threshold"], spec["validation"] = 0.5, {"model": "none: no validation rows"}
    return model


def predict(model: MLPModel, frame: pl.DataFrame) -> np.ndarray:
    if frame.height == 0:
        return np.zeros(0, dtype=np.float64)
    cat, num = _tensors(frame, model.spec)
    model.module.eval()
    with torch.no_grad():
        return torch.sigmoid(model.module(cat, num)).numpy().astype(np.float64)


def save(model: MLPModel) -> dict[str, bytes]:
    buffer = io.BytesIO()
    torch.save(model.module.state_dict(), buffer)
    return {MODEL_FILE: buffer.getvalue(),
            SPEC_FILE: json.dumps(model.spec, sort_keys=True, indent=1, default=float).encode()}


def load(files: dict[str, bytes]) -> MLPModel:
    spec = json.loads(files[SPEC_FILE])
    module = build_module(spec)
    module.load_state_dict(torch.load(io.BytesIO(files[MODEL_FILE]), weights_only=True))
    module.eval()
    return MLPModel(module=module, spec=spec)


def export_onnx(model: MLPModel) -> bytes:
    from onnx import helper, numpy_helper

    spec = model.spec
    weights = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.module.state_dict().items()}
    nodes, initializers, parts = [], [], []
    for i, c in enumerate(spec["categorical"]):
        nodes.append(X.string_to_index(f"{c}__index", c, spec["vocabularies"][c]))
        initializers.append(numpy_helper.from_array(weights[f"embeddings.{i}.weight"], f"{c}__embedding"))
        nodes.append(helper.make_node("Gather", [f"{c}__embedding", f"{c}__index"], [f"{c}__gathered"], axis=0))
        nodes.append(helper.make_node("Flatten", [f"{c}__gathered"], [f"{c}__embedded"], axis=1))
        parts.append(f"{c}__embedded")
    num_nodes, num_init, num_out = X.standardize_nodes(spec["numeric"], weights["mean"], weights["std"])
    nodes += num_nodes
    initializers += num_init
    nodes.append(helper.make_node("Concat", parts + num_out, ["hidden_input"], axis=1, name="network_input"))
    x, layers = "hidden_input", len(spec["hidden"]) + 1
    for k in range(layers):
        initializers += [numpy_helper.from_array(weights[f"linears.{k}.weight"], f"linear{k}_weight"),
                         numpy_helper.from_array(weights[f"linears.{k}.bias"], f"linear{k}_bias")]
        nodes.append(helper.make_node("Gemm", [x, f"linear{k}_weight", f"linear{k}_bias"], [f"linear{k}"], transB=1))
        x = f"linear{k}"
        if k < layers - 1:
            nodes.append(helper.make_node("Relu", [x], [f"relu{k}"]))
            x = f"relu{k}"
    nodes += X.probability_nodes(x, spec["output"])
    return X.build_model(nodes, initializers, f"{NAME}_{spec['output']}", spec["categorical"], spec["numeric"],
                         spec["output"], {"family": NAME, "threshold": str(spec["threshold"])})


FAMILY = Family(name=NAME, default_params=DEFAULT_PARAMS, train=train, predict=predict,
                save=save, load=load, export_onnx=export_onnx)
