"""Small real artifacts for the serving tests, without the pipeline: a hand-built logistic ONNX bundle over the
spec's model inputs (numpy + onnx only), champion states and bundle pointers as the graph stores them, and a
uvicorn process runner."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from upath import UPath

from ml_assets.core import bundle as B
from ml_assets.core import champion as C
from ml_assets.core import onnx_export as X
from ml_assets.core.features import feature_code_version
from ml_assets.core.spec import DatasetSpec
from ml_assets.core.storage import atomic_write_bytes
from ml_assets_tests.processes import free_port, stop_process_group, tail

REPO = Path(__file__).resolve().parents[2]


def tiny_model(spec: DatasetSpec, bias: float = -1.5, seed: int = 0) -> tuple[bytes, dict]:
    """(model.onnx, model spec) of a logistic model with fixed random weights over the spec's model inputs."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(seed)
    categorical = list(spec.features.categorical)
    numeric = [*spec.features.numeric, *spec.history_columns]
    vocabularies = {c: ["EWR", "JFK", "LGA", "UA", "AA", "B6", "DL"] for c in categorical}
    nodes, initializers, parts = [], [], []
    for c in categorical:
        table = rng.normal(0, 0.3, size=(len(vocabularies[c]) + 1, 1)).astype(np.float32)
        nodes.append(X.string_to_index(f"{c}__index", c, vocabularies[c]))
        initializers.append(numpy_helper.from_array(table, f"{c}__weight"))
        nodes.append(helper.make_node("Gather", [f"{c}__weight", f"{c}__index"], [f"{c}__gathered"], axis=0))
        nodes.append(helper.make_node("Flatten", [f"{c}__gathered"], [f"{c}__contribution"], axis=1))
        parts.append(f"{c}__contribution")
    means, stds = np.zeros(len(numeric), np.float32), np.full(len(numeric), 100.0, np.float32)
    num_nodes, num_init, num_out = X.standardize_nodes(numeric, means, stds)
    nodes += num_nodes
    initializers += num_init
    dense = rng.normal(0, 0.3, size=2 * len(numeric)).astype(np.float32)
    weights = np.concatenate([np.ones(len(parts), np.float32), dense])
    initializers += [numpy_helper.from_array(weights.reshape(-1, 1), "weights"),
                     numpy_helper.from_array(np.asarray([bias], np.float32), "bias")]
    nodes.append(helper.make_node("Concat", parts + num_out, ["design"], axis=1, name="design_matrix"))
    nodes.append(helper.make_node("Gemm", ["design", "weights", "bias"], ["logit"], name="linear"))
    nodes += X.probability_nodes("logit", spec.prediction)
    model = X.build_model(nodes, initializers, "tiny", categorical, numeric, spec.prediction, {"family": "tiny"})
    model_spec = {"family": "tiny", "output": spec.prediction, "categorical": categorical, "numeric": numeric,
                  "vocabularies": vocabularies, "threshold": 0.2, "label": spec.label.name}
    return model, model_spec


def tiny_bundle(root: UPath | str, spec: DatasetSpec, version: str = "1.0.0", bias: float = -1.5,
                family: str = "tiny") -> UPath:
    """A complete, verified bundle ``bundles/<prefix>_<family>/<version>`` under ``root``."""
    model, model_spec = tiny_model(spec, bias=bias, seed=int(bias * 1000) % 97)
    files = B.build_bundle_files(version, spec.model_line(family), model, model_spec,
                                 {"overall": {"roc_auc": 0.5}}, {"day": "2013-01-05"},
                                 spec.model_dump(mode="json"), {"rows": 0}, feature_code_version(spec))
    return B.write_bundle(UPath(str(root)) if not isinstance(root, UPath) else root, files)


def pointer(spec: DatasetSpec, version: str, family: str = "tiny", day: str = "2013-01-05") -> dict:
    line = spec.model_line(family)
    return {"model_line": line, "version": version, "bundle": f"bundles/{line}/{version}", "family": family,
            "day": day, "trained_through": day}


def write_record(root: UPath | str, spec: DatasetSpec, asset: str, day: str, value: dict | None,
                 refused: str | None = None) -> UPath:
    """A JSON day record as the graph's JSON IO manager stores it."""
    path = UPath(str(root)) / "assets" / spec.name / asset / f"{day}.json"
    record = {"refused": refused} if refused else {"value": value}
    atomic_write_bytes(path, json.dumps(record, indent=1, sort_keys=True, default=str).encode())
    return path


def promote(root, spec: DatasetSpec, day: str, previous: dict | None, target: dict, action: str = "promote"
            ) -> dict:
    """Write the champion state of ``day`` (``core.champion.next_state`` from ``previous``)."""
    previous = previous or C.empty_state()
    parent = previous.get("champion") if action == "rollback" else None
    state = C.next_state(previous, day, action=action, reason=f"test {action}", champion=target, parent=parent)
    write_record(root, spec, "champion", day, state)
    return state


class ServerProcess:
    """``python -m ml_assets.serving.app`` on a free loopback port, stopped with its process group."""

    def __init__(self, home: str, log_path: Path, *args: str, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ml_assets.serving.app", "--home", home, "--port", str(self.port), *args],
            cwd=str(REPO), stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{tail(self.log_path)}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code in (200, 503):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server not ready after {timeout} s:\n{tail(self.log_path)}")

    def stop(self) -> None:
        stop_process_group(self.proc)
        self._log.close()

    def __enter__(self) -> ServerProcess:
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def day_str(day: dt.date) -> str:
    return day.isoformat()
