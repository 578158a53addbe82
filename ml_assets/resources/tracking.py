"""MLflow tracking, configured by URI: a local SQLite store by default, a tracking server in production.

mlflow is imported only when a run is logged: Dagster loads definitions often and mlflow is slow to import.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field


CHAMPION_ALIAS = "champion"
_READY: set[tuple[str, str]] = set()  # (tracking URI, experiment) this process has already set up


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


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class MLflowTracking(dg.ConfigurableResource):
    tracking_uri: str = Field("", description="sqlite:///path/mlflow.db locally, http(s)://server in production")
    artifact_location: str | None = Field(None, description="where new experiments keep artifacts")
    experiment: str = "ml_assets"
    ui_url: str = Field("http://127.0.0.1:5000", description="MLflow UI base URL, for links in Dagster")
    dagster_ui_url: str = Field("http://127.0.0.1:3000", description="Dagster UI base URL, for links from MLflow")

    def dagster_run_url(self, run_id: str) -> str:
        return f"{self.dagster_ui_url}/runs/{run_id}"

    def model_version_url(self, line: str, version: str | int) -> str:
        return f"{self.ui_url}/#/models/{line}/versions/{version}"

    def _client(self):
        if not self.tracking_uri:
            raise ValueError("no MLflow tracking URI configured: set MLFLOW_TRACKING_URI (e.g. http://mlflow:5000)")
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        if (self.tracking_uri, self.experiment) not in _READY:
            with _store_setup_lock(self.tracking_uri):
                if mlflow.get_experiment_by_name(self.experiment) is None:
                    mlflow.create_experiment(self.experiment, artifact_location=self.artifact_location)
            _READY.add((self.tracking_uri, self.experiment))
        return mlflow

    def log_run(self, run_name: str, params: dict[str, Any], metrics: dict[str, float], tags: dict[str, str],
                artifacts: dict[str, bytes] | None = None, dataset=None) -> tuple[str, str]:
        """Log one run; returns (run_id, link to it in the MLflow UI)."""
        mlflow = self._client()
        experiment = mlflow.get_experiment_by_name(self.experiment)
        with mlflow.start_run(run_name=run_name, experiment_id=experiment.experiment_id) as run:
            mlflow.log_params({k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in params.items()})
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and v == v})
            mlflow.set_tags({**tags, "git_commit": git_commit()})
            if artifacts:
                with tempfile.TemporaryDirectory() as tmp:
                    for name, data in artifacts.items():
                        (Path(tmp) / name).write_bytes(data)
                    mlflow.log_artifacts(tmp, artifact_path="model")
            run_id = run.info.run_id
        return run_id, f"{self.ui_url}/#/experiments/{experiment.experiment_id}/runs/{run_id}"

    def log_to_run(self, run_id: str, metrics: dict[str, float], artifacts: dict[str, bytes] | None = None) -> None:
        """Add evaluation results to an existing candidate run."""
        mlflow = self._client()
        with mlflow.start_run(run_id=run_id):
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and v == v})
            if artifacts:
                with tempfile.TemporaryDirectory() as tmp:
                    for name, data in artifacts.items():
                        (Path(tmp) / name).write_bytes(data)
                    mlflow.log_artifacts(tmp, artifact_path="evaluation")

    # ------------------------------------------------------------------ model registry

    def register_bundle(self, model_line: str, version: str, bundle, run_id: str, tags: dict[str, str]) -> str:
        """Log the bundle into the candidate's run and register it as a version of its model line.

        Registry versions are MLflow's own counters; the bundle's semantic version is the ``semver`` tag.
        Registering the same semantic version again returns the existing registry version."""
        mlflow = self._client()
        client = mlflow.MlflowClient()
        try:
            client.get_registered_model(model_line)
        except mlflow.exceptions.MlflowException:
            client.create_registered_model(model_line, description=f"model line {model_line}")
        existing = client.search_model_versions(f"name='{model_line}' and tag.semver='{version}'")
        if existing:
            return existing[0].version
        from upath import UPath

        folder = UPath(bundle.path)
        with tempfile.TemporaryDirectory() as tmp:
            for entry in folder.iterdir():
                (Path(tmp) / entry.name).write_bytes(entry.read_bytes())
            client.log_artifacts(run_id, tmp, artifact_path=f"bundle/{version}")
        source = f"{client.get_run(run_id).info.artifact_uri}/bundle/{version}"
        registered = client.create_model_version(model_line, source, run_id=run_id,
                                                 tags={**tags, "semver": version},
                                                 description=f"bundle {version}")
        return registered.version

    def set_champion(self, model_line: str, semver: str, other_lines: list[str]) -> str:
        """Point alias ``champion`` at ``semver`` of ``model_line``; no other line keeps the alias."""
        mlflow = self._client()
        client = mlflow.MlflowClient()
        found = client.search_model_versions(f"name='{model_line}' and tag.semver='{semver}'")
        if not found:
            raise LookupError(f"{model_line} {semver} is not registered in MLflow at {self.tracking_uri}")
        client.set_registered_model_alias(model_line, CHAMPION_ALIAS, found[0].version)
        for line in other_lines:
            if line != model_line:
                try:
                    client.delete_registered_model_alias(line, CHAMPION_ALIAS)
                except mlflow.exceptions.MlflowException:
                    pass  # that line never held the alias (or does not exist yet)
        return found[0].version

    def champion_alias(self, lines: list[str]) -> list[tuple[str, str, str]]:
        """(model line, registry version, semver) for every line whose alias ``champion`` is set."""
        mlflow = self._client()
        client = mlflow.MlflowClient()
        holders = []
        for line in lines:
            try:
                mv = client.get_model_version_by_alias(line, CHAMPION_ALIAS)
            except mlflow.exceptions.MlflowException:
                continue
            holders.append((line, mv.version, mv.tags.get("semver", "?")))
        return holders
