"""The one ``Definitions``: the graph derived from the dataset spec, resources chosen from the environment,
both decided when it is built (never at import time of the modules it uses).

    ML_ASSETS_ENV=local (default)   storage under ML_ASSETS_HOME (./.ml_assets), MLflow in a SQLite file there,
                                    multiprocess executor
    ML_ASSETS_ENV=production        ML_ASSETS_HOME=s3://bucket/prefix, MLFLOW_TRACKING_URI=http(s)://server,
                                    Celery executor; endpoints and secrets from the environment, never from code
See ``ml_assets.settings`` for every setting.
"""
from __future__ import annotations

import os
import warnings

import dagster as dg

# Beta/preview APIs used on purpose, each documented where used (backfill policies, partitioned checks,
# partition mappings that allow days before the feed).
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

from ml_assets import settings as S
from ml_assets.defs.blueprint import Blueprint


def blueprint(s: S.Settings) -> Blueprint:
    from ml_assets.core.spec import load_spec

    return Blueprint(spec=load_spec(s.dataset), families=s.families, window_days=s.window_days,
                     sensor_interval=s.sensor_interval, tune_every_days=s.tune_every_days,
                     tune_trials=s.tune_trials, tune_seconds=s.tune_seconds)


def build_assets(bp: Blueprint) -> tuple[list, list, list]:
    """(assets with automation, sensors, schedules): the whole graph, derived from the blueprint."""
    from ml_assets.defs import automation, data, deployment, models, monitoring

    assets = [*data.build(bp), *models.build(bp), *deployment.build(bp), *monitoring.build(bp)]
    return automation.build(bp, assets)


def _tracking(s: S.Settings, dataset: str):
    from ml_assets.resources.tracking import MLflowTracking

    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri and s.env == "local" and "://" not in s.home:
        uri = f"sqlite:///{os.path.join(s.home, 'mlflow', 'mlflow.db')}"
    # Production without MLFLOW_TRACKING_URI: the data layer still runs; training says what is missing.
    artifacts = os.environ.get("ML_ASSETS_MLFLOW_ARTIFACTS") or (
        None if "://" in s.home else f"file://{os.path.join(s.home, 'mlflow', 'artifacts')}")
    return MLflowTracking(tracking_uri=uri, artifact_location=artifacts, experiment=f"ml_assets/{dataset}",
                          ui_url=s.mlflow_ui,
                          dagster_ui_url=os.environ.get("ML_ASSETS_DAGSTER_UI", "http://127.0.0.1:3000").rstrip("/"))


def build_resources(s: S.Settings, dataset: str) -> dict:
    from ml_assets.defs.data.profile import DataQualitySettings
    from ml_assets.defs.deployment.champion import PromotionSettings
    from ml_assets.defs.models.onnx import EvaluationSettings
    from ml_assets.defs.monitoring.live import MonitoringSettings
    from ml_assets.resources.storage import JsonIOManager, ModelFilesIOManager, PolarsParquetIOManager, StorageRoot

    if s.env == "production" and "://" not in s.home:
        raise S.SettingsError(f"ML_ASSETS_ENV=production needs an object-store ML_ASSETS_HOME (s3://...), "
                              f"got {s.home!r}")
    return {
        "storage": StorageRoot(root=s.home),
        "io_manager": PolarsParquetIOManager(root=s.home),
        "model_io_manager": ModelFilesIOManager(root=s.home),
        "json_io_manager": JsonIOManager(root=s.home),
        "mlflow": _tracking(s, dataset),
        "data_quality": DataQualitySettings(),
        "evaluation_settings": EvaluationSettings(),
        "promotion_settings": PromotionSettings(),
        "monitoring": MonitoringSettings(),
    }


def build_definitions(**overrides) -> dg.Definitions:
    """``overrides``: the keyword arguments of ``ml_assets.settings.load`` (home_, env, dataset, families, ...)."""
    from ml_assets.resources.executors import build_executor

    s = S.load(**overrides)
    bp = blueprint(s)
    assets, sensors, schedules = build_assets(bp)
    executor = build_executor(s.env, os.environ.get("ML_ASSETS_EXECUTOR", "multiprocess"))
    return dg.Definitions(assets=assets, resources=build_resources(s, bp.spec.name), executor=executor,
                          sensors=sensors, schedules=schedules)


defs = build_definitions()
