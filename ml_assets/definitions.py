"""The one ``Definitions``: resources are chosen from the environment when it is built.

    ML_ASSETS_ENV=local (default)   storage under ML_ASSETS_HOME (./.ml_assets), MLflow in a SQLite file there,
                                    multiprocess executor
    ML_ASSETS_ENV=production        ML_ASSETS_HOME=s3://bucket/prefix, MLFLOW_TRACKING_URI=http(s)://server,
                                    Celery executor; endpoints and secrets from the environment, never from code
"""
from __future__ import annotations

import os

import dagster as dg

from ml_assets import settings
from ml_assets.defs.automation import SCHEDULES, SENSORS, automated
from ml_assets.defs.data.assets import flight_features, planes, raw_flights, raw_weather
from ml_assets.defs.data.profile import DataQualitySettings, data_profile
from ml_assets.defs.deployment.bundle import PromotionSettings, deployment_bundle
from ml_assets.defs.deployment.champion import champion
from ml_assets.defs.deployment.predictions import batch_predictions, live_performance
from ml_assets.defs.deployment.sensors import retrain_on_degradation
from ml_assets.defs.models.candidates import torch_model, xgboost_model
from ml_assets.defs.models.evaluation import EvaluationSettings, model_evaluation, onnx_model
from ml_assets.defs.models.training_set import DEFAULT_WINDOW_DAYS, build_training_set
from ml_assets.resources.executors import build_executor
from ml_assets.resources.models import ModelFilesIOManager
from ml_assets.resources.storage import PolarsParquetIOManager, StorageRoot
from ml_assets.resources.tracking import MLflowTracking

DATA_ASSETS = [raw_flights, raw_weather, planes, flight_features, data_profile]
DEPLOYMENT_ASSETS = [deployment_bundle, champion, batch_predictions, live_performance]


@automated  # automation conditions, freshness policies and automation checks: defs/automation/conditions.py
def build_assets(window_days: int = DEFAULT_WINDOW_DAYS) -> list:
    return [*DATA_ASSETS, build_training_set(window_days), xgboost_model, torch_model, model_evaluation, onnx_model,
            *DEPLOYMENT_ASSETS]


ASSETS = build_assets()


def _tracking(root: str, env: str) -> MLflowTracking:
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri and env == "local" and "://" not in root:
        uri = f"sqlite:///{os.path.join(root, 'mlflow', 'mlflow.db')}"
    # Production without MLFLOW_TRACKING_URI: the data layer still runs; training says what is missing.
    artifacts = os.environ.get("ML_ASSETS_MLFLOW_ARTIFACTS") or (
        None if "://" in root else f"file://{os.path.join(root, 'mlflow', 'artifacts')}")
    return MLflowTracking(tracking_uri=uri, artifact_location=artifacts,
                          ui_url=os.environ.get("ML_ASSETS_MLFLOW_UI", "http://127.0.0.1:5000"))


def build_resources(home: str | None = None, env: str | None = None) -> dict:
    root = home or settings.home()
    env = env or settings.environment()
    if env == "production" and "://" not in root:
        raise ValueError(f"ML_ASSETS_ENV=production needs an object-store ML_ASSETS_HOME (s3://...), got {root!r}")
    return {
        "storage": StorageRoot(root=root),
        "io_manager": PolarsParquetIOManager(root=root),
        "model_io_manager": ModelFilesIOManager(root=root),
        "mlflow": _tracking(root, env),
        "data_quality": DataQualitySettings(),
        "evaluation_settings": EvaluationSettings(),
        "promotion_settings": PromotionSettings(),
    }


def build_definitions(home: str | None = None, env: str | None = None,
                      window_days: int | None = None) -> dg.Definitions:
    env = env or settings.environment()
    window = window_days or int(os.environ.get("ML_ASSETS_WINDOW_DAYS", DEFAULT_WINDOW_DAYS))
    return dg.Definitions(assets=build_assets(window), resources=build_resources(home, env),
                          executor=build_executor(env), sensors=[*SENSORS, retrain_on_degradation],
                          schedules=SCHEDULES)


defs = build_definitions()
