"""The parquet IO manager: atomic per-partition files, ranges, and the same keys on S3 (moto server)."""
import datetime as dt
import os

import dagster as dg
import polars as pl
import pytest

from ml_assets.core.landing import land_days, latest_file
from ml_assets.core.storage import make_path, write_parquet
from ml_assets.definitions import DATA_ASSETS as ASSETS, build_resources
from ml_assets.resources.storage import PolarsParquetIOManager

partitions = dg.DailyPartitionsDefinition(start_date="2013-01-01", end_date="2013-01-10")


def range_tags(start: str, end: str) -> dict[str, str]:
    """One run over a partition range (what a single-run backfill launches)."""
    return {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}


def frame_for(days):
    return pl.DataFrame({"date": [d for d in days for _ in range(2)], "x": list(range(2 * len(days)))})


def test_range_output_is_split_one_file_per_day_and_read_back_as_one_frame(tmp_path):
    days = [dt.date(2013, 1, d) for d in (2, 3, 4)]

    @dg.asset(partitions_def=partitions, backfill_policy=dg.BackfillPolicy.single_run())
    def daily(context: dg.AssetExecutionContext) -> pl.DataFrame:
        return frame_for(days)

    @dg.asset(partitions_def=partitions, ins={"daily": dg.AssetIn(partition_mapping=dg.TimeWindowPartitionMapping(
        start_offset=-3, end_offset=0, allow_nonexistent_upstream_partitions=True))})
    def window(daily: pl.DataFrame) -> pl.DataFrame:
        return daily

    io = PolarsParquetIOManager(root=str(tmp_path))
    result = dg.materialize([daily], tags=range_tags("2013-01-02", "2013-01-04"),
                            resources={"io_manager": io})
    assert result.success
    stored = sorted(os.listdir(tmp_path / "assets" / "daily"))
    assert stored == ["2013-01-02.parquet", "2013-01-03.parquet", "2013-01-04.parquet"]
    assert pl.read_parquet(tmp_path / "assets" / "daily" / "2013-01-03.parquet")["x"].to_list() == [2, 3]
    # window of 01-01..01-04: 01-01 was never stored and is skipped, the rest load as one frame
    loaded = dg.materialize([daily, window], partition_key="2013-01-04", selection=[window],
                            resources={"io_manager": io})
    assert loaded.output_for_node("window").height == 6
    assert not [p for p in os.listdir(tmp_path / "assets" / "daily") if p.endswith(".tmp")]


def test_range_output_with_rows_outside_the_range_is_refused(tmp_path):
    @dg.asset(partitions_def=partitions)
    def daily() -> pl.DataFrame:
        return frame_for([dt.date(2013, 1, 2), dt.date(2013, 1, 9)])

    result = dg.materialize([daily], tags=range_tags("2013-01-02", "2013-01-03"),
                            resources={"io_manager": PolarsParquetIOManager(root=str(tmp_path))},
                            raise_on_error=False)
    assert not result.success
    assert "fall outside partitions" in str(result.get_step_failure_events()[0].event_specific_data.error)


def test_atomic_write_keeps_the_previous_version_on_failure(tmp_path, monkeypatch):
    path = make_path(str(tmp_path)) / "a.parquet"
    write_parquet(path, pl.DataFrame({"x": [1]}))

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", explode)
    with pytest.raises(OSError):
        write_parquet(path, pl.DataFrame({"x": [2]}))
    assert pl.read_parquet(tmp_path / "a.parquet")["x"].to_list() == [1]
    assert os.listdir(tmp_path) == ["a.parquet"]  # no temp file left behind


def test_the_data_layer_runs_on_s3_with_the_same_keys(s3):
    import boto3

    root, endpoint = f"s3://{s3.bucket}/prod", s3.endpoint
    land_days(make_path(root), dt.date(2013, 1, 1), dt.date(2013, 1, 2))
    result = dg.materialize(ASSETS, partition_key="2013-01-02", resources=build_resources(root, "production"))
    assert result.success
    keys = {o["Key"] for o in boto3.client("s3", endpoint_url=endpoint)
            .list_objects_v2(Bucket="ml-assets")["Contents"]}
    assert {"prod/landing/flights/date=2013-01-02/v0001.parquet", "prod/assets/raw_flights/2013-01-02.parquet",
            "prod/assets/flight_features/2013-01-02.parquet", "prod/assets/data_profile/2013-01-02.parquet",
            "prod/assets/planes.parquet"} <= keys
    assert latest_file(make_path(root), "flights", "2013-01-02").name == "v0001.parquet"
