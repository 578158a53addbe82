"""The MLflow model of a deployment bundle: a pyfunc that scores a pandas DataFrame of feature columns.

This file is logged *as code* with every registered bundle ("models from code": ``mlflow.pyfunc.log_model(
python_model=<this file>)``), so nothing is pickled and a user needs only mlflow, numpy, pandas and onnxruntime
to load a version, not ml_assets::

    model = mlflow.pyfunc.load_model("models:/flight_delay_xgboost@champion")
    p = model.predict(features)  # pandas DataFrame, one column per features.json input (extra columns ignored)
    # -> numpy float32 array [N]: the probability (features.json "output"), the same as Bundle.score

Input: categorical columns as strings (None/NaN = unknown, like an unseen category), numeric columns as floats
(NaN = missing); MLflow checks them against the signature first (strings; doubles, which float32 columns also
satisfy). The feed is ``Bundle.feed``'s: strings ``[N,1]`` with nulls as "", float32 ``[N,1]``. The bundle's
files (model.onnx, features.json, metrics.json, lineage.json, dataset.json, model_card.md, data_card.md,
MANIFEST) are the model's artifacts, checked against the MANIFEST when the model loads.

Keep this file self-contained: it is executed on its own when a model is loaded.
"""
import hashlib
import json
import os
from typing import Any

import mlflow
import numpy as np
import pandas as pd

BUNDLE_ARTIFACT = "bundle"  # the artifact (a folder) holding the bundle's files
MODEL_FILE = "model.onnx"
FEATURES_FILE = "features.json"
MANIFEST_FILE = "MANIFEST"
_ONNX_DTYPES = {"tensor(string)": "string", "tensor(float)": "float32", "tensor(double)": "float64",
                "tensor(int64)": "int64"}


def verified_files(folder: str) -> dict[str, bytes]:
    """The bundle files of ``folder``, each checked against the MANIFEST (a missing, changed or unlisted file
    raises ``ValueError`` naming it)."""
    present = {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))
               if os.path.isfile(os.path.join(folder, name))}
    if MANIFEST_FILE not in present:
        raise ValueError(f"{folder}: no {MANIFEST_FILE} (not a complete bundle)")
    listed = {}
    for line in present[MANIFEST_FILE].decode().splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    for name, digest in listed.items():
        if name not in present:
            raise ValueError(f"{folder}/{name} is listed in {MANIFEST_FILE} but missing")
        if hashlib.sha256(present[name]).hexdigest() != digest:
            raise ValueError(f"{folder}/{name} does not match its {MANIFEST_FILE} digest")
    extra = sorted(set(present) - set(listed) - {MANIFEST_FILE})
    if extra:
        raise ValueError(f"{folder}/{extra[0]} is not listed in {MANIFEST_FILE}")
    return present


def feed(frame: pd.DataFrame, inputs: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """``Bundle.feed`` for pandas: strings (null -> "" = unknown) and float32 with NaN, each ``[N,1]``."""
    out = {}
    for spec in inputs:
        if spec["name"] not in frame.columns:
            raise KeyError(f"input column {spec['name']!r} is missing (the model needs {[i['name'] for i in inputs]})")
        column = frame[spec["name"]]
        if spec["dtype"] == "string":
            values = column.astype("string").fillna("").to_numpy(dtype=object)
        else:
            values = pd.to_numeric(column, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
            values = values.astype(np.dtype(spec["dtype"]))
        out[spec["name"]] = values.reshape(-1, 1)
    return out


def _as_pandas(model_input: Any) -> pd.DataFrame:
    if isinstance(model_input, pd.DataFrame):
        return model_input
    if hasattr(model_input, "to_pandas"):  # a polars DataFrame, when called without pyfunc's schema check
        return model_input.to_pandas()
    if isinstance(model_input, dict):
        return pd.DataFrame({k: np.asarray(v).reshape(-1) for k, v in model_input.items()})
    raise TypeError(f"expected a DataFrame of feature columns, got {type(model_input).__name__}")


class BundleModel(mlflow.pyfunc.PythonModel):
    """Scores with the bundle's model.onnx in onnxruntime (one thread, CPU), exactly as ``Bundle.score``."""

    def load_context(self, context) -> None:
        import onnxruntime as ort

        files = verified_files(context.artifacts[BUNDLE_ARTIFACT])
        self.features = json.loads(files[FEATURES_FILE])
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(files[MODEL_FILE], options, providers=["CPUExecutionProvider"])
        actual = [(i.name, _ONNX_DTYPES.get(i.type, i.type)) for i in self.session.get_inputs()]
        declared = [(i["name"], i["dtype"]) for i in self.features["inputs"]]
        if actual != declared:
            raise ValueError(f"{MODEL_FILE} inputs {actual} differ from {FEATURES_FILE} {declared}")
        self.output = self.features["output"]["name"]

    def predict(self, context, model_input: pd.DataFrame, params=None):  # a frame hint: MLflow checks the signature
        frame = _as_pandas(model_input)
        if len(frame) == 0:
            return np.zeros(0, dtype=np.float32)
        (p,) = self.session.run([self.output], feed(frame, self.features["inputs"]))
        return np.asarray(p, dtype=np.float32).reshape(-1)


mlflow.models.set_model(BundleModel())
