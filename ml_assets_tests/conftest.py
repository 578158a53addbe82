"""Shared fixtures: tiny real data, landed into a temp root, as the pipeline sees it."""
from __future__ import annotations

import datetime as dt
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

# The suite runs on two pytest-xdist workers (pyproject addopts). OpenMP threads that spin while they wait
# (libgomp's default) make two workers' xgboost/torch steps slow each other down many times over; passive
# waiting must be set before xgboost or torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import polars as pl
import pytest

from ml_assets.core.features import build_features
from ml_assets.core.landing import land_days, source_tables
from ml_assets.core.storage import make_path
from ml_assets_tests.processes import free_port

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


S3_BUCKET = "ml-assets"


@dataclass(frozen=True)
class S3:
    endpoint: str
    bucket: str
    env: dict[str, str]  # what a process needs to reach it

    def keys(self, prefix: str = "") -> set[str]:
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint)
        keys: set[str] = set()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys.update(o["Key"] for o in page.get("Contents", []))
        return keys


@pytest.fixture
def s3(monkeypatch) -> Iterator[S3]:
    """A real S3 HTTP endpoint on 127.0.0.1 (moto's server) with a bucket; AWS_* set in this process too."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    try:
        import boto3
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()  # no client cached against an earlier endpoint
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=S3_BUCKET)
        yield S3(endpoint=endpoint, bucket=S3_BUCKET, env=env)
    finally:
        server.stop()
