"""Small real data for the pure modules, built the way the graph builds it (no Dagster).

``labelled_days``: the features of 2013-01-01..01-10 under the shipped flights spec (no delay history), with the
label attached from the day's outcomes; ``history_labelled_days``: the same under ``history_spec`` (the flights
spec with its former delay-history block), each day joined with the history as of D-1-lag (what had landed by
the evening before D). ``split`` mirrors the
training set of 2013-01-10: train 01-01..01-06, validation 01-07..01-09 (the last days), holdout 01-10.
Models are trained once per session and shared (tests must not mutate them).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import polars as pl
import pytest

from ml_assets.core import features as F
from ml_assets.core import history as H
from ml_assets.core import landing as L
from ml_assets.core.dates import day_range
from ml_assets.core.spec import DATASET_ENV, OUTCOME_LAG_ENV, DatasetSpec, outcome_lag_days

FIRST = dt.date(2013, 1, 1)
DAYS = [FIRST + dt.timedelta(days=i) for i in range(10)]
HOLDOUT = DAYS[-1]
TRAIN_DAYS, VALID_DAYS = DAYS[:6], DAYS[6:9]


def history_as_of(spec: DatasetSpec, day: dt.date) -> dt.date:
    """The delay history a feature row of ``day`` may see: as of D-1-lag."""
    return day - dt.timedelta(days=1 + outcome_lag_days(spec))


def day_sources(spec: DatasetSpec, day: dt.date) -> dict[str, pl.DataFrame]:
    """What features read for ``day``: the events, the context sources and the reference tables."""
    tables = L.source_tables(spec)
    sources = {n: L.source_rows(spec, n, day) for n in spec.schedule_sources}
    sources.update({n: tables[r.table].select(list(r.columns)) for n, r in spec.reference.items()})
    return sources


def labelled_events(spec: DatasetSpec, days: list[dt.date],
                    outcomes: Callable[[dt.date], pl.DataFrame] | None = None) -> pl.DataFrame:
    """Event rows of ``days`` with ``date`` and the label (what ``delay_history`` summarizes)."""
    get = outcomes or (lambda d: L.source_rows(spec, spec.outcomes_name, d))
    if not days:
        return pl.DataFrame()
    events = pl.concat([L.source_rows(spec, spec.events_name, d) for d in days])
    realized = pl.concat([get(d) for d in days])
    return F.attach_label(spec, F.with_date(spec, events).collect(), realized)


def features_of(spec: DatasetSpec, day: dt.date,
                outcomes: Callable[[dt.date], pl.DataFrame] | None = None) -> pl.DataFrame:
    """The features of ``day`` as the graph builds them, every outcome read through ``outcomes(day)``."""
    history = None
    if spec.history is not None:  # the default flights spec has none: outcomes are then never read at all
        as_of = history_as_of(spec, day)
        known = day_range(FIRST, as_of) if as_of >= FIRST else []
        history = H.delay_history(spec, labelled_events(spec, known, outcomes), as_of) if known else None
    return F.build_features(spec, day_sources(spec, day), history)


@pytest.fixture(scope="session", autouse=True)
def _shipped_timeline():
    """These tests assume the shipped defaults (outcomes one day later): a developer's environment must not leak in."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(OUTCOME_LAG_ENV, raising=False)
        mp.delenv(DATASET_ENV, raising=False)
        yield


@dataclass(frozen=True)
class Split:
    train: pl.DataFrame
    valid: pl.DataFrame
    holdout: pl.DataFrame   # labelled rows of the holdout day
    awkward: pl.DataFrame   # holdout rows with unknown categories, missing numerics, everything missing


@pytest.fixture(scope="session")
def labelled_days(spec) -> Mapping[dt.date, pl.DataFrame]:
    return {d: F.attach_label(spec, features_of(spec, d), L.source_rows(spec, spec.outcomes_name, d)) for d in DAYS}


@pytest.fixture(scope="session")
def history_labelled_days(history_spec) -> Mapping[dt.date, pl.DataFrame]:
    """``labelled_days`` under ``history_spec``: with the delay-history rates as of D-1-lag."""
    spec = history_spec
    return {d: F.attach_label(spec, features_of(spec, d), L.source_rows(spec, spec.outcomes_name, d)) for d in DAYS}


@pytest.fixture(scope="session")
def split(spec, labelled_days) -> Split:
    def rows(days):
        return F.labelled_rows(pl.concat([labelled_days[d] for d in days]), spec)

    holdout = rows([HOLDOUT])
    head = holdout.head(40)
    cats, nums = spec.features.categorical, [*spec.features.numeric, *spec.history_columns]
    awkward = pl.concat([
        head.with_columns(pl.lit("ZZ-UNSEEN").alias(c) for c in cats),
        head.with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in nums[::2]),
        head.with_columns(*(pl.lit(None, dtype=pl.Float64).alias(c) for c in nums),
                          *(pl.lit(None, dtype=pl.String).alias(c) for c in cats)),
    ])
    return Split(rows(TRAIN_DAYS), rows(VALID_DAYS), holdout, awkward)


@pytest.fixture(scope="session")
def inputs(spec):
    from ml_assets.core.families import ModelInputs

    return ModelInputs(list(spec.features.categorical), [*spec.features.numeric, *spec.history_columns],
                       spec.label.name, spec.prediction)


XGB_SMALL = {"n_estimators": 60, "max_depth": 4, "early_stopping_rounds": 0}  # the flights recipe's one fit
MLP_SMALL = {"max_epochs": 4, "hidden": [16, 8]}


@pytest.fixture(scope="session")
def xgb_model(split, inputs):
    from ml_assets.core.families import xgboost as X

    return X.train(split.train, split.valid, inputs, params=XGB_SMALL, seed=7)


@pytest.fixture(scope="session")
def mlp_model(split, inputs):
    from ml_assets.core.families import mlp as M

    return M.train(split.train, split.valid, inputs, params=MLP_SMALL, seed=3)


@pytest.fixture(scope="session")
def logistic_model(split, inputs):
    from ml_assets.core.families import logistic as LR

    return LR.train(split.train, split.valid, inputs, seed=0)
