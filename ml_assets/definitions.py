"""The one ``Definitions``: resources are chosen from the environment when it is built.

    ML_ASSETS_ENV=local (default)   storage under ML_ASSETS_HOME (./.ml_assets)
    ML_ASSETS_ENV=production        ML_ASSETS_HOME=s3://bucket/prefix; endpoints and secrets from the
                                    standard AWS_* variables, never from code
"""
from __future__ import annotations

import dagster as dg

from ml_assets import settings
from ml_assets.defs.data.assets import flight_features, planes, raw_flights, raw_weather
from ml_assets.defs.data.profile import DataQualitySettings, data_profile
from ml_assets.resources.executors import build_executor
from ml_assets.resources.storage import PolarsParquetIOManager, StorageRoot

ASSETS = [raw_flights, raw_weather, planes, flight_features, data_profile]


def build_resources(home: str | None = None, env: str | None = None) -> dict:
    root = home or settings.home()
    env = env or settings.environment()
    if env == "production" and "://" not in root:
        raise ValueError(f"ML_ASSETS_ENV=production needs an object-store ML_ASSETS_HOME (s3://...), got {root!r}")
    return {
        "storage": StorageRoot(root=root),
        "io_manager": PolarsParquetIOManager(root=root),
        "data_quality": DataQualitySettings(),
    }


def build_definitions(home: str | None = None, env: str | None = None) -> dg.Definitions:
    env = env or settings.environment()
    return dg.Definitions(assets=ASSETS, resources=build_resources(home, env), executor=build_executor(env))


defs = build_definitions()
