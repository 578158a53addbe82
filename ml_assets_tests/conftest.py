"""Shared fixtures: tiny real data, landed into a temp root, as the pipeline sees it."""
from __future__ import annotations

import datetime as dt
import os
import warnings

# The suite runs on two pytest-xdist workers (pyproject addopts). OpenMP threads that spin while they wait
# (libgomp's default) make two workers' xgboost/torch steps slow each other down many times over; passive
# waiting must be set before xgboost or torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import polars as pl
import pytest

from ml_assets.core.features import build_features
from ml_assets.core.landing import land_days, source_tables
from ml_assets.core.storage import make_path

warnings.filterwarnings("ignore", message=".*is currently in beta.*")

FIRST = dt.date(2013, 1, 1)


@pytest.fixture(scope="session")
def tables() -> dict[str, pl.DataFrame]:
    return source_tables()


@pytest.fixture(scope="session")
def january_features(tables) -> pl.DataFrame:
    """Real features for 2013-01-01..01-10 (built straight from the package, for unit tests)."""
    f = tables["flights"].filter((pl.col("month") == 1) & (pl.col("day") <= 10))
    return build_features(f, tables["weather"], tables["planes"])


@pytest.fixture
def root(tmp_path):
    return make_path(str(tmp_path / "home"))


@pytest.fixture
def landed(root):
    """Three real days (2013-01-01..03) in a temp landing zone."""
    land_days(root, FIRST, FIRST + dt.timedelta(days=2))
    return root
