"""Settings, read from the environment when ``Definitions`` are built (never at import time), validated once.

    ML_ASSETS_HOME              storage root: a folder (default ./.ml_assets) or s3://bucket/prefix
    ML_ASSETS_ENV               local (default) | production
    ML_ASSETS_DATASET           a shipped spec name (nycflights13, rain) or a spec file path
    ML_ASSETS_FAMILIES          families to train, e.g. xgboost,mlp (default: every registered family)
    ML_ASSETS_WINDOW_DAYS       training window in days (default 56)
    ML_ASSETS_TUNE_EVERY_DAYS   days between hyperparameter searches of a tunable family (default 0: never;
                                the flights replay measured adopted searches worse out of sample, bench/RESULTS.md)
    ML_ASSETS_TUNE_TRIALS       optuna trials per search (default 8)
    ML_ASSETS_TUNE_SECONDS      time budget per search in seconds (default 60)
    ML_ASSETS_OUTCOME_LAG_DAYS  days after the event day on which outcomes land (default: the spec's)
    MLFLOW_TRACKING_URI         MLflow store (default: SQLite under $ML_ASSETS_HOME/mlflow)
    ML_ASSETS_MLFLOW_UI         MLflow UI base URL for links in Dagster (default http://127.0.0.1:5000)
    ML_ASSETS_DAGSTER_UI        Dagster UI base URL for links from MLflow (default http://127.0.0.1:3000)
    ML_ASSETS_SENSOR_INTERVAL_SECONDS  seconds between sensor evaluations (default 30)
    ML_ASSETS_EXECUTOR          local runs: multiprocess (default: steps in parallel) | in_process
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = "./.ml_assets"
DEFAULT_WINDOW_DAYS = 56
DEFAULT_MLFLOW_UI = "http://127.0.0.1:5000"


class SettingsError(ValueError):
    """A setting that cannot be used: names the variable and the value."""


def home() -> str:
    """The storage root: a local folder or a URL such as ``s3://bucket/prefix``."""
    root = os.environ.get("ML_ASSETS_HOME", DEFAULT_HOME)
    if "://" in root:
        if not root.startswith(("s3://", "file://", "memory://")):
            raise SettingsError(f"ML_ASSETS_HOME={root!r}: expected a folder or s3://bucket/prefix")
        return root.rstrip("/")
    return str(Path(root).expanduser().resolve())


def environment() -> str:
    env = os.environ.get("ML_ASSETS_ENV", "local")
    if env not in ("local", "production"):
        raise SettingsError(f"ML_ASSETS_ENV must be 'local' or 'production', got {env!r}")
    return env


def _int(name: str, default: int, low: int, high: int) -> int:
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise SettingsError(f"{name}={value} is outside {low}..{high}")
    return value


@dataclass(frozen=True)
class Settings:
    home: str
    env: str
    dataset: str
    families: tuple[str, ...]
    window_days: int
    mlflow_ui: str
    sensor_interval: int
    tune_every_days: int = 7
    tune_trials: int = 8
    tune_seconds: int = 60


def load(home_: str | None = None, env: str | None = None, dataset: str | None = None,
         families: str | list[str] | None = None, window_days: int | None = None) -> Settings:
    from ml_assets.core import families as F
    from ml_assets.core.spec import spec_path

    try:
        chosen = F.parse_selection(",".join(families) if isinstance(families, list) else
                                   families if families is not None else os.environ.get("ML_ASSETS_FAMILIES"))
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    return Settings(home=home_ or home(), env=env or environment(),
                    dataset=str(spec_path(dataset)), families=tuple(chosen),
                    window_days=window_days or _int("ML_ASSETS_WINDOW_DAYS", DEFAULT_WINDOW_DAYS, 1, 365),
                    mlflow_ui=os.environ.get("ML_ASSETS_MLFLOW_UI", DEFAULT_MLFLOW_UI).rstrip("/"),
                    sensor_interval=_int("ML_ASSETS_SENSOR_INTERVAL_SECONDS", 30, 1, 86400),
                    tune_every_days=_int("ML_ASSETS_TUNE_EVERY_DAYS", 0, 0, 365),
                    tune_trials=_int("ML_ASSETS_TUNE_TRIALS", 8, 0, 1000),
                    tune_seconds=_int("ML_ASSETS_TUNE_SECONDS", 60, 1, 86400))
