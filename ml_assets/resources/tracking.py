"""MLflow tracking, configured by URI: a local SQLite store by default, a tracking server in production.

mlflow is imported only when a run is logged: Dagster loads definitions often and mlflow is slow to import.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field


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

    def _client(self):
        if not self.tracking_uri:
            raise ValueError("no MLflow tracking URI configured: set MLFLOW_TRACKING_URI (e.g. http://mlflow:5000)")
        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        if mlflow.get_experiment_by_name(self.experiment) is None:
            mlflow.create_experiment(self.experiment, artifact_location=self.artifact_location)
        return mlflow

    def log_run(self, run_name: str, params: dict[str, Any], metrics: dict[str, float], tags: dict[str, str],
                artifacts: dict[str, bytes] | None = None) -> tuple[str, str]:
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
