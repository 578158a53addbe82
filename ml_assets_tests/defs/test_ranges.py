"""A single-run backfill of the data layer stores and judges each day exactly as per-day runs do."""
import datetime as dt
import os

import dagster as dg
import polars as pl
import pytest

from ml_assets.core.landing import land_days
from ml_assets.core.storage import make_path
from ml_assets.definitions import DATA_ASSETS, build_resources
from ml_assets.resources.storage import PolarsParquetIOManager
from ml_assets_tests.conftest import FIRST

DAYS = ["2013-01-02", "2013-01-03"]
RANGE = {"dagster/asset_partition_range_start": DAYS[0], "dagster/asset_partition_range_end": DAYS[-1]}
DAILY = ["raw_flights", "raw_weather", "flight_features", "data_profile"]


def materialize(root, instance, **kwargs):
    resources = build_resources(str(root), "local")
    dg.materialize(DATA_ASSETS, instance=instance, resources=resources, selection=["planes"])
    return dg.materialize(DATA_ASSETS, instance=instance, resources=resources, selection=DAILY, **kwargs)


def per_partition(instance, asset):
    records = instance.fetch_materializations(dg.AssetKey(asset), limit=20).records
    return {r.partition_key: r.asset_materialization.metadata for r in records}


def test_a_range_run_equals_per_day_runs(tmp_path):
    roots = {name: make_path(str(tmp_path / name)) for name in ("daily", "range")}
    checks, stored = {}, {}
    for name, root in roots.items():
        land_days(root, FIRST, FIRST + dt.timedelta(days=2))
        with dg.instance_for_test() as instance:
            if name == "daily":
                results = [materialize(root, instance, partition_key=day) for day in DAYS]
            else:
                results = [materialize(root, instance, tags=RANGE)]
                assert len([r for r in instance.get_runs() if r.tags.get("dagster/asset_partition_range_start")]) == 1
            assert all(r.success for r in results)
            checks[name] = sorted((e.asset_key.to_user_string(), e.check_name, e.partition, e.passed)
                                  for r in results for e in r.get_asset_check_evaluations())
            stored[name] = {asset: per_partition(instance, asset) for asset in DAILY}
    assert checks["range"] == checks["daily"] and len(checks["daily"]) == 2 * 15  # per day, on its own partition
    for asset in DAILY:
        assert set(stored["range"][asset]) == set(DAYS)
        for day in DAYS:
            path = f"assets/{asset}/{day}.parquet"
            daily, ranged = (pl.read_parquet(os.fspath(roots[n] / path)) for n in ("daily", "range"))
            assert ranged.equals(daily), (asset, day)
            assert stored["range"][asset][day]["dagster/row_count"] == stored["daily"][asset][day]["dagster/row_count"]
    assert "drift_plot" in stored["range"]["data_profile"][DAYS[1]]  # each day keeps its own plots


def test_a_per_day_output_must_cover_exactly_the_run_s_days(tmp_path):
    partitions = dg.DailyPartitionsDefinition(start_date="2013-01-01", end_date="2013-01-10")

    @dg.asset(partitions_def=partitions, backfill_policy=dg.BackfillPolicy.single_run())
    def daily(context: dg.AssetExecutionContext):
        return {k: pl.DataFrame({"x": [1]}) for k in context.partition_keys[:-1]}  # one day short

    with pytest.raises(ValueError, match="must map each of the run's 2 partition"):
        dg.materialize([daily], resources={"io_manager": PolarsParquetIOManager(root=str(tmp_path))},
                       tags={"dagster/asset_partition_range_start": "2013-01-02",
                             "dagster/asset_partition_range_end": "2013-01-03"})
