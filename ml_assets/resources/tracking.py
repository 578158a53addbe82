"""MLflow tracking, configured by URI: a local SQLite store by default, a tracking server in production.

What lands in MLflow:

- one run per candidate and day (``log_run``): params, metrics, the candidate's files, tags that point back to
  Dagster (``dagster_run_id``, ``dagster_run``: the callers pass them; a missing link is derived from the id) and
  the training set as a dataset input (context ``training``, digest = the asset's data version: its schema and
  profile, never its rows);
- one registered version per bundle (``register_bundle``): the bundle logged as an MLflow model in the
  candidate's run, loadable with ``mlflow.pyfunc.load_model("models:/<line>@champion")`` (see
  ``ml_assets/resources/mlflow_model.py`` for what it accepts and returns);
- the alias ``champion`` on exactly one line (``set_champion``).

The resource is called hundreds of times in a range run over a year: the client and the experiment id are
cached per process and tracking URI, runs are logged with the client (one batch for params and metrics, no
active-run state), and every registry write is looked up first, so a repeated call is a no-op. A store that
cannot be reached raises ``TrackingUnavailable``, one line naming the tracking URI.

mlflow is imported only when something is logged: Dagster loads definitions often and mlflow is slow to import.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import getpass
import hashlib
import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
from pydantic import Field

from ml_assets.settings import DEFAULT_MLFLOW_UI

CHAMPION_ALIAS = "champion"
MODEL_CODE = Path(__file__).with_name("mlflow_model.py")  # the pyfunc logged "as code" with every bundle
PROBE_TIMEOUT_S = 5.0  # first contact with a tracking server: fail fast instead of MLflow's minutes of retries
_LOCK = threading.Lock()
_CLIENTS: dict[tuple[int, str], Any] = {}           # (pid, tracking URI) -> MlflowClient
_EXPERIMENTS: dict[tuple[int, str, str], str] = {}  # (pid, tracking URI, experiment name) -> experiment id


class TrackingUnavailable(RuntimeError):
    """The MLflow store cannot be reached or opened; the message is one line and names the tracking URI."""


def redact(uri: str) -> str:
    """The URI without its password (``http://user:***@host``), fit for messages."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    if parts.password is None:
        return uri
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _first_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _is_connection_failure(exc: BaseException) -> bool:
    """A network failure (refused, timed out, DNS), directly or as MLflow's "API request ... failed"."""
    import requests

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError)):
            return True
        message = str(exc)
        if message.startswith("API request to") and "failed with exception" in message:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@contextlib.contextmanager
def _store_setup_lock(tracking_uri: str):
    """Serialize the first use of a SQLite store across processes.

    Two steps that open a fresh SQLite store at the same moment both run MLflow's schema migrations (seen:
    "duplicate column name: routing_strategy") and both try to create the experiment. A server store
    does its own locking, so only SQLite takes the file lock.
    """
    if not tracking_uri.startswith("sqlite:///"):
        yield
        return
    db = Path(tracking_uri[len("sqlite:///"):])
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The checkout's commit (asked once per process: a backfill logs hundreds of runs)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _param(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str) if isinstance(value, (dict, list, tuple)) else str(value)


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def training_input(frame, digest: str, name: str, source_tags: dict[str, str] | None = None):
    """The training set as an MLflow dataset input (context ``training``): name, the given digest (the
    asset's data version), the schema and the profile (rows, elements). The rows are not uploaded, nor hashed
    again: the cost does not grow with the frame. A polars frame stays polars (``mlflow.data.from_polars``)."""
    import mlflow.data
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    source = CodeDatasetSource(tags=dict(source_tags or {}))
    if hasattr(frame, "hash_rows"):  # polars
        import polars as pl

        # Only dtypes matter here. mlflow maps Date/Categorical/UInt to a "close" type with logging.warning() on
        # the ROOT logger, which installs a root handler in the whole process (Dagster's debug lines then print):
        # give it the exact types it maps silently.
        frame = frame.with_columns(pl.col(pl.Date).cast(pl.Datetime("us")),
                                   pl.col(pl.Categorical, pl.Enum).cast(pl.String),
                                   pl.col(pl.UInt8, pl.UInt16, pl.UInt32).cast(pl.Int64))
        ds = mlflow.data.from_polars(frame, source=source, name=name, digest=digest)
    else:
        ds = mlflow.data.from_pandas(frame, source=source, name=name, digest=digest)
    d = ds.to_dict()  # the schema is inferred here, from the dtypes only
    entity = Dataset(name=d["name"], digest=d["digest"], source_type=d["source_type"], source=d["source"],
                     schema=d.get("schema"), profile=d.get("profile"))
    return DatasetInput(dataset=entity, tags=[InputTag(key=MLFLOW_DATASET_CONTEXT, value="training")])


def bundle_signature(features: dict[str, Any]):
    """Inputs: one column per features.json input (string, or double for the float32 inputs: MLflow refuses
    to narrow the float64 columns every feature frame has, and the model casts to float32 itself, as
    ``Bundle.feed``); output: the probability, float32 ``[N]``."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema, TensorSpec

    inputs = Schema([ColSpec(DataType.string if i["dtype"] == "string" else DataType.double, i["name"])
                     for i in features["inputs"]])
    output = features["output"]
    return ModelSignature(inputs=inputs, outputs=Schema([TensorSpec(np.dtype(output.get("dtype") or "float32"),
                                                                    (-1,), output["name"])]))


def bundle_example(features: dict[str, Any], example=None, rows: int = 5):
    """A few feature rows as a pandas frame of the input columns: the first rows of ``example`` (real rows,
    polars or pandas) when it has any, else rows built from the vocabularies (categories in turn, numbers 0)."""
    import pandas as pd

    inputs = features["inputs"]
    if example is not None:
        frame = example.to_pandas() if hasattr(example, "to_pandas") else pd.DataFrame(example)
        missing = [i["name"] for i in inputs if i["name"] not in frame.columns]
        if missing:
            raise ValueError(f"the input example lacks the model's input columns {missing}")
        frame = frame[[i["name"] for i in inputs]].head(rows).reset_index(drop=True)
        if len(frame):
            for i in inputs:
                column = frame[i["name"]]
                frame[i["name"]] = (column.astype(object).where(column.notna(), None) if i["dtype"] == "string"
                                    else column.astype("float64"))
            return frame
    vocab = features.get("vocabularies") or {}
    made = {}
    for i in inputs:
        values = vocab.get(i["name"]) or [""]
        made[i["name"]] = [values[r % len(values)] for r in range(rows)] if i["dtype"] == "string" else [0.0] * rows
    return pd.DataFrame(made)


@contextlib.contextmanager
def _env(**values: str):
    """MLflow switches that are environment variables, for one call: no progress bar per copied bundle file
    (MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR), no "View run" lines on stdout nor the extra request that prints
    them at the end of every run on a server (MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT; Dagster links the run)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def save_bundle_model(tmp: Path, bundle, files: dict[str, bytes], model_line: str, semver: str, example=None,
                      mlflow_model=None) -> Path:
    """Write the bundle's MLflow model under ``tmp/model`` and return that folder: a pyfunc from code
    (``mlflow_model.py``) with the bundle files as its ``bundle`` artifact, the ``onnx`` flavor on the same
    model.onnx, signature and input example; it must load and score the example as ``bundle.score`` does."""
    import mlflow
    import numpy as np
    import onnx
    import polars as pl

    folder, path = tmp / "bundle", tmp / "model"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    input_example = bundle_example(bundle.features, example)
    with _env(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false"):
        mlflow.pyfunc.save_model(
            str(path), python_model=str(MODEL_CODE), artifacts={"bundle": str(folder)},
            signature=bundle_signature(bundle.features), input_example=input_example,
            pip_requirements=_requirements(), mlflow_model=mlflow_model,
            metadata={"model_line": model_line, "semver": semver, "output": bundle.output,
                      "threshold": bundle.threshold})
    model = mlflow.models.Model.load(str(path / "MLmodel")) if mlflow_model is None else mlflow_model
    saved = model.flavors["python_function"]["artifacts"]["bundle"]["path"]
    # The raw graph as well: mlflow.onnx.load_model(<uri>) returns the bundle's model.onnx.
    model.add_flavor("onnx", onnx_version=onnx.__version__, data=f"{saved}/model.onnx",
                     providers=["CPUExecutionProvider"], code=None)
    model.save(str(path / "MLmodel"))
    got = mlflow.pyfunc.load_model(str(path)).predict(input_example)
    want = bundle.score(pl.from_pandas(input_example))
    if got.shape != want.shape or not np.allclose(got, want, rtol=0, atol=1e-6):
        raise RuntimeError(f"the MLflow model of {bundle.path} scores differently from the bundle "
                           f"(max abs diff {float(np.max(np.abs(got - want), initial=0.0)):.3g})")
    return path


def _point_mlflow_at(uri: str) -> None:
    """mlflow's global tracking URI follows the store in use: MLflow resolves some references with a default
    client (registering ``models:/<model id>`` looks the logged model up that way). ``set_tracking_uri`` also
    exports MLFLOW_TRACKING_URI; that is undone, because definitions built later in the same process read the
    variable to choose their store (a test's copy of a home would otherwise log into the original's)."""
    import mlflow

    exported = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)  # a no-op when unchanged
    if exported is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = exported


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("mlflow", "onnxruntime", "numpy", "pandas")]


class MLflowTracking(dg.ConfigurableResource):
    tracking_uri: str = Field("", description="sqlite:///path/mlflow.db locally, http(s)://server in production")
    artifact_location: str | None = Field(None, description="where new experiments keep artifacts")
    experiment: str = "ml_assets"
    ui_url: str = Field(DEFAULT_MLFLOW_UI, description="MLflow UI base URL, for links in Dagster "
                                                       "(ML_ASSETS_MLFLOW_UI, read in ml_assets.settings)")
    dagster_ui_url: str = Field("http://127.0.0.1:3000", description="Dagster UI base URL, for links from MLflow")

    # ------------------------------------------------------------------ links

    def _ui(self) -> str:
        return self.ui_url.rstrip("/")

    def dagster_run_url(self, run_id: str) -> str:
        return f"{self.dagster_ui_url.rstrip('/')}/runs/{run_id}"

    def run_url(self, run_id: str, experiment_id: str | None = None) -> str:
        """The run in the MLflow UI (the UI's direct route when the experiment is not known)."""
        if experiment_id is None:
            return f"{self._ui()}/#/runs/{run_id}"
        return f"{self._ui()}/#/experiments/{experiment_id}/runs/{run_id}"

    def model_version_url(self, line: str, version: str | int) -> str:
        return f"{self._ui()}/#/models/{line}/versions/{version}"

    # ------------------------------------------------------------------ store

    @contextlib.contextmanager
    def _reachable(self, doing: str):
        """Turn a network failure into one line naming the tracking URI."""
        try:
            yield
        except TrackingUnavailable:
            raise
        except Exception as exc:
            if _is_connection_failure(exc):
                raise TrackingUnavailable(f"MLflow tracking at {redact(self.tracking_uri)} is unreachable "
                                          f"({doing}): {_first_line(exc)}") from None
            raise

    def _probe(self) -> None:
        """A tracking server answers at all (its /health), within PROBE_TIMEOUT_S."""
        if not self.tracking_uri.startswith(("http://", "https://")):
            return
        import requests

        try:
            requests.get(f"{self.tracking_uri.rstrip('/')}/health", timeout=PROBE_TIMEOUT_S)
        except requests.exceptions.RequestException as exc:
            raise TrackingUnavailable(f"MLflow tracking at {redact(self.tracking_uri)} is unreachable: "
                                      f"{type(exc).__name__}: {_first_line(exc)}") from None

    def _setup(self) -> tuple[Any, str]:
        """(client, experiment id), created once per process and store; the experiment is created if needed."""
        if not self.tracking_uri:
            raise ValueError("no MLflow tracking URI configured: set MLFLOW_TRACKING_URI (e.g. http://mlflow:5000)")
        import mlflow
        from mlflow.exceptions import MlflowException

        pid, uri = os.getpid(), self.tracking_uri
        _point_mlflow_at(uri)
        with _LOCK:
            experiment_id = _EXPERIMENTS.get((pid, uri, self.experiment))
            if experiment_id is not None:
                return _CLIENTS[(pid, uri)], experiment_id

        self._probe()
        try:
            with self._reachable("opening the store"), _store_setup_lock(uri):
                client = _CLIENTS.get((pid, uri)) or mlflow.MlflowClient(tracking_uri=uri)
                experiment = client.get_experiment_by_name(self.experiment)
                if experiment is None:
                    try:
                        experiment_id = client.create_experiment(self.experiment,
                                                                 artifact_location=self.artifact_location)
                    except MlflowException as exc:
                        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                            raise
                        experiment_id = client.get_experiment_by_name(self.experiment).experiment_id
                elif experiment.lifecycle_stage != "active":
                    raise ValueError(f"MLflow experiment {self.experiment!r} at {redact(uri)} is deleted: "
                                     "restore it or choose another experiment")
                else:
                    experiment_id = experiment.experiment_id
                client.search_registered_models(max_results=1)  # the registry's tables exist too (SQLite)
        except (TrackingUnavailable, ValueError):
            raise
        except Exception as exc:
            raise TrackingUnavailable(f"cannot open the MLflow store {redact(uri)}: {_first_line(exc)}") from exc
        with _LOCK:
            _CLIENTS[(pid, uri)] = client
            _EXPERIMENTS[(pid, uri, self.experiment)] = experiment_id
        return client, experiment_id

    def _client(self):
        return self._setup()[0]

    # ------------------------------------------------------------------ runs

    def run_tags(self, tags: dict[str, Any]) -> dict[str, str]:
        """The caller's tags (they win), the git commit, who and what ran it; ``dagster_run`` (the link) is
        derived from ``dagster_run_id`` when only the id is given."""
        out = {"git_commit": git_commit(), "mlflow.source.type": "JOB", "mlflow.source.name": "ml_assets (dagster)"}
        with contextlib.suppress(Exception):
            out["mlflow.user"] = getpass.getuser()
        out.update({k: str(v) for k, v in tags.items() if v is not None})
        if out.get("dagster_run_id") and not out.get("dagster_run"):
            out["dagster_run"] = self.dagster_run_url(out["dagster_run_id"])
        return out

    @staticmethod
    def _log_values(client, run_id: str, params: dict[str, Any], metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        params_ = [Param(k, _param(v)) for k, v in params.items()]
        metrics_ = [Metric(k, float(v), now, 0) for k, v in metrics.items() if v is not None and v == v]
        for chunk in _chunks(params_, 100):
            client.log_batch(run_id, params=chunk)
        for chunk in _chunks(metrics_, 1000):
            client.log_batch(run_id, metrics=chunk)

    @staticmethod
    def _log_files(client, run_id: str, files: dict[str, bytes], artifact_path: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in files.items():
                (Path(tmp) / name).write_bytes(data)
            client.log_artifacts(run_id, tmp, artifact_path=artifact_path)

    def log_run(self, run_name: str, params: dict[str, Any], metrics: dict[str, float], tags: dict[str, str],
                artifacts: dict[str, bytes] | None = None, dataset=None) -> tuple[str, str]:
        """Log one finished run; returns (run_id, link to it in the MLflow UI).

        ``dataset``: ``(frame, digest, name)``, the training set, logged as a dataset input (see
        ``training_input``). ``artifacts`` go under ``model/``."""
        client, experiment_id = self._setup()
        run_tags = self.run_tags(tags)
        with self._reachable(f"logging run {run_name}"):
            run_id = client.create_run(experiment_id, run_name=run_name, tags=run_tags).info.run_id
            try:
                self._log_values(client, run_id, params, metrics)
                if dataset is not None:
                    frame, digest, name = dataset
                    source = {k: run_tags[k] for k in ("dagster_run_id", "dagster_run") if k in run_tags}
                    client.log_inputs(run_id, datasets=[training_input(frame, str(digest), name, source)])
                if artifacts:
                    self._log_files(client, run_id, artifacts, "model")
            except BaseException:
                with contextlib.suppress(Exception), _env(MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT="true"):
                    client.set_terminated(run_id, "FAILED")
                raise
            with _env(MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT="true"):
                client.set_terminated(run_id, "FINISHED")
        return run_id, self.run_url(run_id, experiment_id)

    def log_to_run(self, run_id: str, metrics: dict[str, float], artifacts: dict[str, bytes] | None = None) -> None:
        """Add evaluation results to an existing candidate run (under ``evaluation/``)."""
        client = self._client()
        with self._reachable(f"logging to run {run_id}"):
            self._log_values(client, run_id, {}, metrics)
            if artifacts:
                self._log_files(client, run_id, artifacts, "evaluation")

    # ------------------------------------------------------------------ model registry

    @staticmethod
    def _versions(client, model_line: str, semver: str) -> list:
        return list(client.search_model_versions(f"name='{model_line}' and tag.semver='{semver}'"))

    @staticmethod
    def _ensure_line(client, model_line: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            client.get_registered_model(model_line)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            try:
                client.create_registered_model(model_line, description=f"model line {model_line}: deployment "
                                               "bundles (ml_assets); alias champion = the serving version")
            except MlflowException as again:
                if again.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise

    def _log_bundle_model(self, client, experiment_id: str, run_id: str, model_line: str, semver: str, bundle,
                          files: dict[str, bytes], tags: dict[str, str], example) -> str:
        """Log the bundle as an MLflow model in the candidate's run (reusing a READY one logged before for the
        same run, line, version and MANIFEST); returns its model id."""
        from mlflow.entities import LoggedModelOutput
        from mlflow.models import Model

        found = client.search_logged_models(
            experiment_ids=[experiment_id],
            filter_string=f"source_run_id = '{run_id}' AND tags.model_line = '{model_line}' AND "
                          f"tags.semver = '{semver}' AND tags.manifest_sha256 = '{tags['manifest_sha256']}'")
        ready = [m for m in found if str(getattr(m.status, "name", m.status)).upper().endswith("READY")]
        if ready:
            return ready[0].model_id
        model = client.create_logged_model(
            experiment_id, name=f"bundle-{semver.replace('.', '-')}", source_run_id=run_id, model_type="onnx-bundle",
            tags={"model_line": model_line, "semver": semver, "manifest_sha256": tags["manifest_sha256"],
                  "family": str(bundle.family), "day": tags.get("day", "")})
        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = save_bundle_model(Path(tmp), bundle, files, model_line, semver, example,
                                         Model(artifact_path=model.artifact_location, run_id=run_id,
                                               model_uuid=model.model_id, model_id=model.model_id))
                client.log_model_artifacts(model.model_id, str(path))
            client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=0)])
        except BaseException:
            with contextlib.suppress(Exception):
                client.finalize_logged_model(model.model_id, "FAILED")
            raise
        client.finalize_logged_model(model.model_id, "READY")
        return model.model_id

    def register_bundle(self, model_line: str, version: str, bundle, run_id: str, tags: dict[str, str],
                        example=None) -> str:
        """Log the bundle into the candidate's run as an MLflow model and register it as a version of its line.

        The model is a pyfunc logged from code (``mlflow_model.py``) with the bundle's files as its artifacts,
        plus the ``onnx`` flavor pointing at model.onnx; signature from features.json, input example from
        ``example`` (a few real feature rows; rows from the vocabularies otherwise); checked to score like the
        bundle before it is registered. Registry versions are MLflow's own counters; the version's tags carry
        ``semver``, ``bundle``, ``manifest_sha256`` and ``day`` (the given tags win). Registering the same
        semantic version again returns the existing registry version without logging anything.

        Using a registered version::

            model = mlflow.pyfunc.load_model(f"models:/{line}@champion")  # or models:/{line}/{version}
            p = model.predict(features.to_pandas())  # a pandas DataFrame with the feature columns
            # p: numpy float32 [N], the probability; equal to Bundle.score(features) (float32 precision)

        Categorical columns as strings (None = unknown), numeric ones as floats (NaN = missing); extra
        columns are ignored. ``mlflow.onnx.load_model`` on the same URI gives the bare ONNX graph, whose
        inputs are ``[N,1]`` tensors (``Bundle.feed``)."""
        from upath import UPath

        from ml_assets.core.bundle import MANIFEST_FILE, verify_files

        client, experiment_id = self._setup()
        with self._reachable(f"registering {model_line} {version}"):
            self._ensure_line(client, model_line)
            existing = self._versions(client, model_line, version)
            if existing:
                return existing[0].version
            folder = UPath(bundle.path)
            files = {entry.name: entry.read_bytes() for entry in folder.iterdir() if entry.is_file()}
            verify_files(files, str(folder))
            version_tags = {"semver": version, "bundle": str(bundle.path),
                            "manifest_sha256": hashlib.sha256(files[MANIFEST_FILE]).hexdigest(),
                            "day": str(bundle.lineage.get("day", "")), "model_line": model_line,
                            **{k: str(v) for k, v in tags.items()}}
            version_tags["semver"] = version
            model_id = self._log_bundle_model(client, experiment_id, run_id, model_line, version, bundle, files,
                                              version_tags, example)
            registered = client.create_model_version(
                model_line, f"models:/{model_id}", run_id=run_id, tags=version_tags, run_link=self.run_url(run_id),
                description=f"bundle {version} of {model_line} ({bundle.family}), day {version_tags['day']}",
                model_id=model_id)
            return registered.version

    def set_champion(self, model_line: str, semver: str, other_lines: list[str]) -> str:
        """Point alias ``champion`` at ``semver`` of ``model_line``; no other line keeps the alias."""
        from mlflow.exceptions import MlflowException

        client = self._client()
        with self._reachable(f"setting the champion {model_line} {semver}"):
            found = self._versions(client, model_line, semver)
            if not found:
                raise LookupError(f"{model_line} {semver} is not registered in MLflow at {redact(self.tracking_uri)}")
            version = found[0].version
            try:
                current = client.get_model_version_by_alias(model_line, CHAMPION_ALIAS).version
            except MlflowException as exc:
                if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                    raise
                current = None
            if str(current) != str(version):
                client.set_registered_model_alias(model_line, CHAMPION_ALIAS, version)
            for line in other_lines:
                if line == model_line:
                    continue
                try:
                    client.delete_registered_model_alias(line, CHAMPION_ALIAS)
                except MlflowException as exc:
                    if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                        raise  # else: that line never held the alias, or does not exist yet
            return version

    def champion_alias(self, lines: list[str]) -> list[tuple[str, str, str]]:
        """(model line, registry version, semver) for every line whose alias ``champion`` is set."""
        from mlflow.exceptions import MlflowException

        client = self._client()
        holders = []
        with self._reachable("reading the champion alias"):
            for line in lines:
                try:
                    mv = client.get_model_version_by_alias(line, CHAMPION_ALIAS)
                except MlflowException as exc:
                    if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                        continue
                    raise
                holders.append((line, mv.version, mv.tags.get("semver", "?")))
        return holders
