"""Shared fixtures: tiny real data landed into a temp root as upstream delivers it, and a small materialized graph.

``pipeline`` lands 2013-01-01..01-10 and materializes the whole graph over it in one range run (the path a
single-run backfill takes), once per test session (the modules using it are one xdist work unit); tests that
only read the results use it and must not write into it (copy it with ``pipeline_copy`` to change things).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import urllib.request
from pathlib import Path
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import ml_assets  # noqa: F401  (sets OMP_WAIT_POLICY=PASSIVE before xgboost/torch load)

import dagster as dg
import polars as pl
import pytest

from ml_assets.core import landing as L
from ml_assets.core.spec import DatasetSpec, load_spec
from ml_assets.core.storage import make_path
from ml_assets_tests.processes import free_port


def _fast_test_environment() -> None:
    """Set for this process and every process a test starts (daemons, CLIs, Celery workers), unless already set.

    - Temp files on tmpfs when the machine has one: the Dagster instance commits every event to SQLite, and on
      this machine's disk a commit waits ~1.2 ms for the fsync (0.03 ms on /dev/shm).
    - The default dataset is the shipped flights spec with a 5x cheaper xgboost recipe (120 rounds at 5x the
      learning rate): tests check what the graph does with a model, not its quality (``make demo`` and the
      benches run the shipped recipe). Tests that load a spec by name still get the shipped one.
    """
    import json
    import tempfile

    # (a run holds up to ~0.5 GiB of temp files; containers often give /dev/shm only 64 MiB)
    if "TMPDIR" not in os.environ and os.access("/dev/shm", os.W_OK) and shutil.disk_usage("/dev/shm").free > 4 << 30:
        os.environ["TMPDIR"] = "/dev/shm"
        tempfile.tempdir = None  # recomputed from TMPDIR
    if "ML_ASSETS_DATASET" not in os.environ:
        from ml_assets.core.spec import read_yaml, spec_path

        raw = read_yaml(spec_path("nycflights13").read_text())
        recipe = raw["models"]["xgboost"]
        recipe.update(n_estimators=recipe["n_estimators"] // 5, learning_rate=recipe["learning_rate"] * 5)
        text = json.dumps(raw, indent=1)  # JSON is YAML
        path = Path(tempfile.gettempdir()) / f"ml_assets_tests_{hashlib.sha256(text.encode()).hexdigest()[:12]}.yaml"
        if not path.exists():  # written whole, then renamed: workers starting at once never read half a file
            partial = path.with_suffix(f".{os.getpid()}.part")
            partial.write_text(text)
            partial.replace(path)
        os.environ["ML_ASSETS_DATASET"] = str(path)


_fast_test_environment()

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

FIRST = dt.date(2013, 1, 1)
PIPELINE_DAYS = 10
FAST_FAMILIES = "xgboost,logistic"  # the slow MLP is covered by its own tests
# The pipeline searches on 2013-01-08 (searches are off by default): the graph's tuning path, on a small budget
SEARCHES = {"ML_ASSETS_TUNE_EVERY_DAYS": "7", "ML_ASSETS_TUNE_TRIALS": "3"}


# The delay-history block the flights spec shipped with before the ablation removed it (the history machinery is
# still a spec feature, e.g. the rain dataset's): tests of that machinery run the flights data through it.
HISTORY_BLOCK = {
    "derived": {"route": "origin || '-' || dest",
                "hour_band": "CASE WHEN sched_dep_time < 1200 THEN 'am' WHEN sched_dep_time < 1700 THEN 'pm' "
                             "ELSE 'eve' END"},
    "keys": {"route": ["route"], "carrier": ["carrier"], "origin": ["origin"], "dest": ["dest"],
             "flight": ["carrier", "flight"], "carrier_band": ["carrier", "hour_band"]},
    "windows": [7, 28],
    "prior_weight": 20,
}


def with_history(spec: DatasetSpec) -> DatasetSpec:
    """``spec`` with ``HISTORY_BLOCK`` (validated like a spec file)."""
    return DatasetSpec.model_validate({**spec.model_dump(), "history": HISTORY_BLOCK})


# Test modules that use the session ``pipeline``: one xdist work unit, so that 10-day pipeline is materialized once
# in a run rather than once per worker. xdist's own ``xdist_group`` marks cannot do this under pytest 9 (xdist 3.8
# writes the group into ``item._nodeid``, which pytest 9 no longer reads), so the controller groups by module path,
# and collection fails if a module using ``pipeline`` is missing here.
PIPELINE_MODULES = frozenset({
    "ml_assets_tests/resources/test_mlflow_models.py",
    "ml_assets_tests/serving/test_pipeline_serving.py",
    "ml_assets_tests/ui/test_webserver.py",
})


def _work_unit(nodeid: str) -> str:
    module = nodeid.split("::", 1)[0]
    return "pipeline" if module in PIPELINE_MODULES else module


def pytest_configure(config):
    config.addinivalue_line("markers", "cost(seconds): what the module takes alone on two idle cores (its tests and "
                                       "fixtures); the costliest work units are handed out first")


def pytest_collection_modifyitems(config, items):
    unlisted = {item.nodeid.split("::", 1)[0] for item in items if "pipeline" in item.fixturenames} - PIPELINE_MODULES
    if unlisted:
        raise pytest.UsageError(f"add {', '.join(sorted(unlisted))} to PIPELINE_MODULES in ml_assets_tests/conftest.py")
    # Longest first (xdist hands out work units in collection order): a long unit started last would leave the
    # other worker idle at the end of the run.
    costs: dict[str, float] = {}
    for module, item in {item.nodeid.split("::", 1)[0]: item for item in items}.items():
        mark = item.get_closest_marker("cost")
        costs[_work_unit(module)] = costs.get(_work_unit(module), 0.0) + (mark.args[0] if mark else 0.0)
    items.sort(key=lambda item: -costs[_work_unit(item.nodeid)])


def pytest_xdist_make_scheduler(config, log):
    """Work units are test modules (module fixtures are built once), with the ``PIPELINE_MODULES`` as one unit."""
    from xdist.scheduler import LoadScopeScheduling

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _work_unit(nodeid)

    return ByModule(config, log)


@pytest.fixture(autouse=True)
def _mlflow_tracking_uri_restored():
    """``mlflow.set_tracking_uri`` also exports MLFLOW_TRACKING_URI, which definitions built later read to choose
    their store: no test leaves it changed for the next one in its worker."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


@pytest.fixture(scope="session")
def spec():
    return load_spec("nycflights13")


@pytest.fixture(scope="session")
def history_spec(spec) -> DatasetSpec:
    """The flights spec with a delay-history block (``HISTORY_BLOCK``)."""
    return with_history(spec)


@pytest.fixture(scope="session")
def tables(spec) -> dict[str, pl.DataFrame]:
    return L.source_tables(spec)


@pytest.fixture
def root(tmp_path):
    return make_path(str(tmp_path / "home"))


@pytest.fixture
def landed(root, spec):
    """Three real days (2013-01-01..03) fully landed in a temp landing zone."""
    L.land_days(root, spec, FIRST, FIRST + dt.timedelta(days=2))
    return root


@dataclass(frozen=True)
class Pipeline:
    home: str           # ML_ASSETS_HOME
    dagster_home: str   # the instance folder
    first: dt.date
    last: dt.date

    @property
    def root(self):
        return make_path(self.home)

    def instance(self) -> dg.DagsterInstance:
        from dagster._core.instance.ref import InstanceRef

        return dg.DagsterInstance.from_ref(InstanceRef.from_dir(self.dagster_home))


def materialize_range(defs: dg.Definitions, instance: dg.DagsterInstance, first: str, last: str,
                      selection: set[dg.AssetKey] | None = None) -> dg.ExecuteInProcessResult:
    """Report the landed files, store the reference tables, then every daily asset over first..last in ONE run."""
    from ml_assets.definitions import blueprint
    from ml_assets.defs.automation.sensors import landing_events, unreported_deliveries
    from ml_assets import settings

    bp = blueprint(settings.load())
    for event in landing_events(bp, unreported_deliveries(bp, instance, make_path(settings.home()))):
        instance.report_runless_asset_event(event)
    graph = defs.resolve_asset_graph()
    job = defs.resolve_implicit_global_asset_job_def()
    materializable = {k for k in graph.get_all_asset_keys() if graph.get(k).is_materializable}
    refs = {k for k in materializable if not graph.get(k).is_partitioned}
    if refs:
        job.get_subset(asset_selection=refs).execute_in_process(instance=instance)
    daily = selection or (materializable - refs)
    return job.get_subset(asset_selection=daily).execute_in_process(
        instance=instance, tags={"dagster/asset_partition_range_start": first,
                                 "dagster/asset_partition_range_end": last})


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory) -> Iterator[Pipeline]:
    base = tmp_path_factory.mktemp("pipeline")
    home, dagster_home = str(base / "home"), str(base / "dagster")
    os.makedirs(dagster_home)
    saved = {k: os.environ.get(k) for k in ("ML_ASSETS_HOME", "ML_ASSETS_FAMILIES", "DAGSTER_HOME",
                                            "MLFLOW_TRACKING_URI", *SEARCHES)}
    os.environ.update(ML_ASSETS_HOME=home, ML_ASSETS_FAMILIES=FAST_FAMILIES, DAGSTER_HOME=dagster_home, **SEARCHES)
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # the home's own store, whatever ran before in this worker
    try:
        from ml_assets.definitions import build_definitions

        spec = load_spec("nycflights13")
        last = FIRST + dt.timedelta(days=PIPELINE_DAYS - 1)
        L.land_days(make_path(home), spec, FIRST, last)
        with Pipeline(home, dagster_home, FIRST, last).instance() as instance:
            result = materialize_range(build_definitions(), instance, FIRST.isoformat(), last.isoformat())
            assert result.success
        yield Pipeline(home, dagster_home, FIRST, last)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _repoint_mlflow_store(folder: Path, old: str, new: str) -> None:
    """The copied MLflow SQLite store records absolute artifact locations: point them into the copy, so a test
    that trains on the copy never writes into the shared pipeline's home."""
    import sqlite3

    for db in folder.glob("*.db"):
        with sqlite3.connect(db) as con:
            for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
                for _, column, kind, *_ in con.execute(f"PRAGMA table_info('{table}')").fetchall():
                    if "CHAR" in kind.upper() or "TEXT" in kind.upper():
                        con.execute(f'UPDATE "{table}" SET "{column}" = REPLACE("{column}", ?, ?) '
                                    f'WHERE instr("{column}", ?) > 0', (old, new, old))


@pytest.fixture
def pipeline_copy(pipeline, tmp_path, monkeypatch) -> Pipeline:
    """A private copy of the materialized pipeline (home and instance), with the environment pointing at it."""
    home, dagster_home = str(tmp_path / "home"), str(tmp_path / "dagster")
    shutil.copytree(pipeline.home, home)
    shutil.copytree(pipeline.dagster_home, dagster_home)
    _repoint_mlflow_store(Path(home) / "mlflow", pipeline.home, home)
    monkeypatch.setenv("ML_ASSETS_HOME", home)
    monkeypatch.setenv("DAGSTER_HOME", dagster_home)
    monkeypatch.setenv("ML_ASSETS_FAMILIES", FAST_FAMILIES)
    for k, v in SEARCHES.items():
        monkeypatch.setenv(k, v)
    return Pipeline(home, dagster_home, pipeline.first, pipeline.last)


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
        # moto keeps its buckets in this process, not in the server: an earlier test's objects would still be there
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10)
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=S3_BUCKET)
        yield S3(endpoint=endpoint, bucket=S3_BUCKET, env=env)
    finally:
        server.stop()
