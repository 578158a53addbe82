"""The shape of the graph, derived once from the dataset spec and the settings: keys, partitions, windows.

Asset keys carry the dataset's name (``flights/features``), so two datasets can live in one Dagster instance:
each is its own code location (``workspace.yaml`` entry with its ``ML_ASSETS_DATASET``), with its own keys.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cached_property

import dagster as dg

from ml_assets.core.spec import DatasetSpec, outcome_lag_days

# One name per asset of the model chain, declared once; families add one candidate each.
DATA = "data"
MODELS = "models"
DEPLOYMENT = "deployment"
MONITORING = "monitoring"
LANDING = "landing"


@dataclass(frozen=True)
class Blueprint:
    spec: DatasetSpec
    families: tuple[str, ...]
    window_days: int
    validation_days: int = 3
    min_training_days: int = 2  # one day for training, one to validate on
    monitoring_window: int = 7
    reference_window: int = 28
    owners: tuple[str, ...] = field(default=("team:ml-platform",))
    sensor_interval: int = 30  # seconds between sensor evaluations (ML_ASSETS_SENSOR_INTERVAL_SECONDS)
    tune_every_days: int = 0  # a hyperparameter search every N days (ML_ASSETS_TUNE_EVERY_DAYS; 0: never)
    tune_trials: int = 8
    tune_seconds: int = 60

    @cached_property
    def outcome_lag(self) -> int:
        return outcome_lag_days(self.spec)

    @cached_property
    def partitions(self) -> dg.DailyPartitionsDefinition:
        end = self.spec.last_day + dt.timedelta(days=1)  # exclusive; a live feed would drop the end
        return dg.DailyPartitionsDefinition(start_date=self.spec.first_day.isoformat(), end_date=end.isoformat())

    @property
    def first_model_day(self) -> str:
        return (self.spec.first_day + dt.timedelta(days=1)).isoformat()

    def key(self, name: str) -> dg.AssetKey:
        return dg.AssetKey([self.spec.name, name])

    def raw(self, source: str) -> dg.AssetKey:
        return self.key(f"raw_{source}")

    def landing(self, source: str) -> dg.AssetKey:
        return self.key(f"landing_{source}")

    def candidate(self, family: str) -> dg.AssetKey:
        return self.key(f"{family}_model")

    def params(self, family: str) -> dg.AssetKey:
        return self.key(f"{family}_params")

    @cached_property
    def tuned_families(self) -> tuple[str, ...]:
        """The families with a search space: each gets a ``<family>_params`` asset."""
        from ml_assets.core import families as FAM

        return tuple(f for f in self.families if FAM.tunable(f))

    def is_search_day(self, day: str) -> bool:
        """Every ``tune_every_days`` days from the feed's first day."""
        every = self.tune_every_days
        return every > 0 and (dt.date.fromisoformat(day) - self.spec.first_day).days % every == 0

    @property
    def prediction_offset(self) -> int:
        """Batch predictions for D use the champion decided on D-1-lag: the newest decision made before the
        evening of D-1, when D's schedule arrives (a decision on day X is made when X's outcomes land)."""
        return -(1 + self.outcome_lag)

    def tags(self, **extra: str) -> dict[str, str]:
        return {"dataset": self.spec.name, **extra}


def window(start_offset: int, end_offset: int) -> dg.TimeWindowPartitionMapping:
    return dg.TimeWindowPartitionMapping(start_offset=start_offset, end_offset=end_offset,
                                         allow_nonexistent_upstream_partitions=True)


def day_offset(key: str, days: int) -> str:
    return (dt.date.fromisoformat(key) + dt.timedelta(days=days)).isoformat()
