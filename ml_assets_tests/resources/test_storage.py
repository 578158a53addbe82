"""The IO managers of ``ml_assets/resources/storage.py`` through Dagster: parquet frames, JSON records and model
files, one file (folder) per day under the asset key's path; refused days stored as data and loaded as
``Refused``; a range output written one file per day and loaded as ``Days``; atomic writes; the same keys on
a local folder and on S3 (moto's server); partition keys validated before they become paths."""
import json
import os

import dagster as dg
import polars as pl
import pytest

from ml_assets.core.dates import InvalidPartitionKey
from ml_assets.defs.days import Days, Refused, RefusedValue
from ml_assets.resources import storage as ST
from ml_assets.resources.storage import (
    REFUSED_KEY, IncompleteModelError, JsonIOManager, ModelFilesIOManager, PolarsParquetIOManager, StorageRoot)

partitions = dg.DailyPartitionsDefinition(start_date="2013-01-01", end_date="2013-01-11")
DAYS = ["2013-01-02", "2013-01-03", "2013-01-04"]
PREFIX = "flights"


def range_tags(start: str, end: str) -> dict[str, str]:
    """One run over a partition range (what a single-run backfill and the ``--partition-range`` CLI launch)."""
    return {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}


def frame_for(day: str) -> pl.DataFrame:
    n = int(day[-2:])
    return pl.DataFrame({"date": [day] * n, "x": list(range(n))})


def _graph(io_key: str, value_for):
    """A daily asset writing ``value_for(day)`` per day (any range), and a consumer of the window D-3..D (as Days)."""

    @dg.asset(key_prefix=PREFIX, partitions_def=partitions, io_manager_key=io_key,
              backfill_policy=dg.BackfillPolicy.single_run())
    def daily(context: dg.AssetExecutionContext):
        keys = context.partition_keys
        return value_for(keys[0]) if len(keys) == 1 else {day: value_for(day) for day in keys}

    seen = {}

    last_days = dg.TimeWindowPartitionMapping(start_offset=-3, end_offset=0, allow_nonexistent_upstream_partitions=True)

    @dg.asset(key_prefix=PREFIX, partitions_def=partitions, io_manager_key="json_io_manager",
              ins={"daily": dg.AssetIn(key=daily.key, input_manager_key=io_key, partition_mapping=last_days)})
    def window(daily):
        seen["daily"] = daily
        return {"days": len(daily)}

    return daily, window, seen


def _resources(root: str) -> dict:
    return {"io_manager": PolarsParquetIOManager(root=root), "json_io_manager": JsonIOManager(root=root),
            "model_io_manager": ModelFilesIOManager(root=root)}


# ------------------------------------------------------------------------------------------- parquet frames


def test_a_range_output_is_written_one_file_per_day_and_loaded_as_days(tmp_path):
    root = str(tmp_path)
    daily, window, seen = _graph("io_manager", frame_for)
    result = dg.materialize([daily], tags=range_tags(DAYS[0], DAYS[-1]), resources=_resources(root))
    assert result.success
    folder = tmp_path / "assets" / PREFIX / "daily"
    assert sorted(os.listdir(folder)) == [f"{d}.parquet" for d in DAYS]  # nothing else: no temp files
    assert pl.read_parquet(folder / "2013-01-03.parquet").equals(frame_for("2013-01-03"))
    assert len(result.get_step_success_events()) == 1  # one step for the whole range
    meta = result.asset_materializations_for_node("flights__daily")[0].metadata
    assert meta["partitions_written"].value == 3 and meta["path"].value.endswith("daily/2013-01-04.parquet")

    # the window 01-01..01-04 of 01-04: 01-01 was never stored, so it is missing, not an empty day
    assert dg.materialize([daily, window], partition_key="2013-01-04", selection=[window],
                          resources=_resources(root)).success
    days = seen["daily"]
    assert isinstance(days, Days) and list(days) == DAYS and days.missing == ["2013-01-01"]
    assert days.asset == "flights/daily"
    assert days["2013-01-02"].equals(frame_for("2013-01-02"))
    assert isinstance(days.day("2013-01-01"), Refused) and "not stored" in days.day("2013-01-01").reason


def test_a_range_input_reads_each_day_when_used_and_keeps_only_a_bounded_cache(tmp_path):
    """A year of training sets never sits in memory whole: days are read on first use, the most recently used
    kept up to the cache's size; membership, iteration and ``missing`` read nothing."""
    reads = []

    def read(location):
        reads.append(location)
        return pl.DataFrame({"x": list(range(1000))})  # 8000 bytes

    size = pl.DataFrame({"x": list(range(1000))}).estimated_size()
    stored = ST.StoredDays(read, {d: f"at/{d}" for d in DAYS}, cache_bytes=2 * size)
    days = Days(stored, asset="flights/daily", missing=["2013-01-01"])
    assert list(days) == DAYS and len(days) == 3 and "2013-01-03" in days and "2013-01-01" not in days
    assert reads == []
    days["2013-01-02"], days["2013-01-03"], days["2013-01-02"]
    assert reads == ["at/2013-01-02", "at/2013-01-03"]  # the second use of 01-02 is the cached one
    days["2013-01-04"]  # over the cache's size: the least recently used (01-03) is dropped
    days["2013-01-02"]
    assert reads[-1] == "at/2013-01-04"
    days["2013-01-03"]
    assert reads[-1] == "at/2013-01-03" and len(reads) == 4
    assert set(days.usable()) == set(DAYS) and days.refused() == {}


def test_a_one_day_step_writes_its_value_and_reads_back_as_days(tmp_path):
    daily, window, seen = _graph("io_manager", frame_for)
    assert dg.materialize([daily], partition_key="2013-01-05", resources=_resources(str(tmp_path))).success
    assert dg.materialize([daily, window], partition_key="2013-01-05", selection=[window],
                          resources=_resources(str(tmp_path))).success
    assert list(seen["daily"]) == ["2013-01-05"] and seen["daily"].missing == ["2013-01-02", "2013-01-03",
                                                                                "2013-01-04"]


def test_a_range_output_must_map_every_day_of_the_run(tmp_path):
    @dg.asset(key_prefix=PREFIX, partitions_def=partitions, backfill_policy=dg.BackfillPolicy.single_run())
    def daily(context: dg.AssetExecutionContext):
        return {"2013-01-02": frame_for("2013-01-02"), "2013-01-09": frame_for("2013-01-09")}  # not 01-03

    result = dg.materialize([daily], tags=range_tags("2013-01-02", "2013-01-03"), resources=_resources(str(tmp_path)),
                            raise_on_error=False)
    assert not result.success
    error = str(result.get_step_failure_events()[0].event_specific_data.error)
    assert "a range output must map each of the run's 2 partitions" in error
    assert not (tmp_path / "assets").exists()  # nothing of the range written


def test_refused_days_are_stored_with_their_reason_and_load_as_refused(tmp_path):
    """A refused day (no value) and a refused raw day (the data as landed, plus the reason): one atomic write
    each, the reason in the parquet key-value metadata; consumers receive ``Refused`` either way."""
    landed = frame_for("2013-01-03")

    def value(day):
        return {"2013-01-02": frame_for(day), "2013-01-03": RefusedValue(landed, "raw 2013-01-03: refused by contract"),
                "2013-01-04": Refused("upstream raw 2013-01-04: no rows")}[day]

    daily, window, seen = _graph("io_manager", value)
    root = str(tmp_path)
    assert dg.materialize([daily], tags=range_tags(DAYS[0], DAYS[-1]), resources=_resources(root)).success
    folder = tmp_path / "assets" / PREFIX / "daily"
    kept = pl.read_parquet(folder / "2013-01-03.parquet")  # the data as landed is kept, for a person to look at
    assert kept.equals(landed)
    assert pl.read_parquet_metadata(folder / "2013-01-03.parquet")[REFUSED_KEY] == "raw 2013-01-03: refused by contract"
    assert pl.read_parquet(folder / "2013-01-04.parquet").height == 0
    assert REFUSED_KEY not in pl.read_parquet_metadata(folder / "2013-01-02.parquet")

    assert dg.materialize([daily, window], partition_key="2013-01-04", selection=[window],
                          resources=_resources(root)).success
    days = seen["daily"]
    assert days.refused() == {"2013-01-03": "raw 2013-01-03: refused by contract",
                              "2013-01-04": "upstream raw 2013-01-04: no rows"}
    assert list(days.usable()) == ["2013-01-02"]


def test_an_unpartitioned_frame_is_one_file_beside_the_daily_folders(tmp_path):
    @dg.asset(key_prefix=PREFIX)
    def planes() -> pl.DataFrame:
        return pl.DataFrame({"tailnum": ["N1", "N2"], "seats": [100, 200]})

    @dg.asset(key_prefix=PREFIX, io_manager_key="json_io_manager")
    def uses(planes: pl.DataFrame) -> int:
        return planes.height

    root = str(tmp_path)
    result = dg.materialize([planes, uses], resources=_resources(root))
    assert result.success and result.output_for_node("flights__uses") == 2
    assert (tmp_path / "assets" / PREFIX / "planes.parquet").exists()
    io = PolarsParquetIOManager(root=root)
    missing = io.location(dg.AssetKey([PREFIX, "nothing"]), None)
    with pytest.raises(FileNotFoundError, match="no stored flights/nothing"):
        io.load_input(dg.build_input_context(asset_key=dg.AssetKey([PREFIX, "nothing"])))
    assert str(missing).endswith("assets/flights/nothing.parquet")


def test_the_parquet_store_refuses_what_is_not_a_frame(tmp_path):
    io = PolarsParquetIOManager(root=str(tmp_path))
    with pytest.raises(TypeError, match="expected a polars DataFrame, got dict"):
        io.write(io.location(dg.AssetKey(["a"]), "2013-01-02"), {"x": 1}, None)


# ------------------------------------------------------------------------------------------- JSON records


def test_json_records_per_day_with_refusals(tmp_path):
    def value(day):
        return Refused("no candidate") if day == "2013-01-03" else {"day": day, "champion": {"version": "1.0.0"}}

    daily, window, seen = _graph("json_io_manager", value)
    root = str(tmp_path)
    assert dg.materialize([daily], tags=range_tags(DAYS[0], DAYS[-1]), resources=_resources(root)).success
    folder = tmp_path / "assets" / PREFIX / "daily"
    assert sorted(os.listdir(folder)) == [f"{d}.json" for d in DAYS]
    assert json.loads((folder / "2013-01-03.json").read_text()) == {"refused": "no candidate"}
    assert json.loads((folder / "2013-01-02.json").read_text())["value"]["champion"] == {"version": "1.0.0"}
    assert dg.materialize([daily, window], partition_key="2013-01-04", selection=[window],
                          resources=_resources(root)).success
    days = seen["daily"]
    assert days["2013-01-04"] == {"day": "2013-01-04", "champion": {"version": "1.0.0"}}
    assert days["2013-01-03"] == Refused("no candidate")


# ------------------------------------------------------------------------------------------- model files


def model_for(day: str) -> dict[str, bytes]:
    return {"model.ubj": f"booster of {day}".encode(), "model_spec.json": b'{"threshold": 0.3}'}


def test_model_files_per_day_with_a_manifest_written_last(tmp_path):
    def value(day):
        return RefusedValue(model_for(day), "behavior: refused") if day == "2013-01-04" else model_for(day)

    daily, window, seen = _graph("model_io_manager", value)
    root = str(tmp_path)
    assert dg.materialize([daily], tags=range_tags(DAYS[0], DAYS[-1]), resources=_resources(root)).success
    folder = tmp_path / "models" / PREFIX / "daily"
    assert sorted(os.listdir(folder)) == DAYS
    assert sorted(os.listdir(folder / "2013-01-02")) == ["manifest.json", "model.ubj", "model_spec.json"]
    assert set(json.loads((folder / "2013-01-02" / "manifest.json").read_text())) == {"model.ubj", "model_spec.json"}
    assert (folder / "2013-01-04" / "model.ubj").read_bytes() == b"booster of 2013-01-04"  # kept beside the reason

    assert dg.materialize([daily, window], partition_key="2013-01-04", selection=[window],
                          resources=_resources(root)).success
    days = seen["daily"]
    assert days["2013-01-03"] == model_for("2013-01-03")
    assert days.refused() == {"2013-01-04": "behavior: refused"}


def test_a_half_written_model_is_never_loaded(tmp_path):
    io = ModelFilesIOManager(root=str(tmp_path))
    key = dg.AssetKey([PREFIX, "xgboost_model"])
    location = io.location(key, "2013-01-02")
    io.write(location, model_for("2013-01-02"), None)
    assert io.read(location) == model_for("2013-01-02")

    # a crash after a file of a rewrite and before its manifest: the old manifest no longer matches
    (location / "model.ubj").write_bytes(b"half of a new booster")
    with pytest.raises(IncompleteModelError, match="model.ubj does not match its manifest"):
        io.read(location)
    # a folder whose manifest was never written is not stored at all (a window reports it missing)
    (location / "manifest.json").unlink()
    assert not io.exists(location)
    with pytest.raises(IncompleteModelError, match="never completely written"):
        io.read(location)
    for bad in ("../escape", ".hidden", "manifest.json"):
        with pytest.raises(ValueError, match="invalid model file name"):
            ST.write_files(io.location(key, "2013-01-03"), {bad: b"x"})


def test_a_rewrite_of_a_day_with_fewer_files_loads_only_the_new_ones(tmp_path):
    io = ModelFilesIOManager(root=str(tmp_path))
    location = io.location(dg.AssetKey([PREFIX, "onnx_model"]), "2013-01-02")
    io.write(location, {"a.onnx": b"1", "b.onnx": b"2"}, None)
    io.write(location, {"a.onnx": b"3"}, None)
    assert io.read(location) == {"a.onnx": b"3"}  # the manifest names the day's files: a leftover is ignored


# ------------------------------------------------------------------------------------------- atomic writes


def test_a_failed_write_keeps_the_previous_day_and_leaves_no_temp_file(tmp_path, monkeypatch):
    root = str(tmp_path)
    for io, value, changed in ((PolarsParquetIOManager(root=root), frame_for("2013-01-02"), frame_for("2013-01-09")),
                               (JsonIOManager(root=root), {"v": 1}, {"v": 2})):
        location = io.location(dg.AssetKey([PREFIX, "daily"]), "2013-01-02")
        io.write(location, value, None)
        with monkeypatch.context() as m:
            def disk_full(src, dst):
                raise OSError("disk full")

            m.setattr(os, "replace", disk_full)
            with pytest.raises(OSError, match="disk full"):
                io.write(location, changed, None)
        kept = io.read(location)
        assert kept.equals(value) if isinstance(kept, pl.DataFrame) else kept == value
    for folder in (tmp_path / "assets" / PREFIX / "daily",):
        assert sorted(os.listdir(folder)) == ["2013-01-02.json", "2013-01-02.parquet"]


# ------------------------------------------------------------------------------------------- partition keys


@pytest.mark.parametrize("bad", ["../../../etc/passwd", "2013-01-02/../../x", "2013-02-30", "20130102", "",
                                 "2013-01-02\n"])
def test_partition_keys_are_validated_before_they_become_paths(tmp_path, bad):
    for io in (PolarsParquetIOManager(root=str(tmp_path)), JsonIOManager(root=str(tmp_path)),
               ModelFilesIOManager(root=str(tmp_path))):
        with pytest.raises(InvalidPartitionKey):
            io.location(dg.AssetKey([PREFIX, "daily"]), bad)


def test_a_partition_that_is_not_a_day_fails_the_step_and_writes_nothing(tmp_path):
    static = dg.StaticPartitionsDefinition(["../../outside"])

    @dg.asset(key_prefix=PREFIX, partitions_def=static)
    def daily() -> pl.DataFrame:
        return frame_for("2013-01-02")

    result = dg.materialize([daily], partition_key="../../outside", resources=_resources(str(tmp_path / "home")),
                            raise_on_error=False)
    assert not result.success
    assert "is not a date of the form YYYY-MM-DD" in str(result.get_step_failure_events()[0].event_specific_data.error)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


# ------------------------------------------------------------------------------------------- S3


def test_the_same_keys_and_values_on_s3(s3, tmp_path):
    """Every IO manager on s3://bucket/prefix (moto's server) stores under the same keys as on a local folder."""
    local, remote = str(tmp_path / "home"), f"s3://{s3.bucket}/prod"

    def value(day):
        return Refused("upstream: no rows") if day == "2013-01-03" else frame_for(day)

    def models(day):
        return Refused("behavior: refused") if day == "2013-01-03" else model_for(day)

    for root in (local, remote):
        for io_key, make in (("io_manager", value), ("json_io_manager", lambda d: {"day": d}),
                             ("model_io_manager", models)):
            daily, window, seen = _graph(io_key, make)
            assert dg.materialize([daily], tags=range_tags(DAYS[0], DAYS[-1]), resources=_resources(root)).success
            assert dg.materialize([daily, window], partition_key="2013-01-04", selection=[window],
                                  resources=_resources(root)).success
            days = seen["daily"]
            assert list(days) == DAYS and days.missing == ["2013-01-01"], (root, io_key)
            if io_key != "json_io_manager":
                assert days.refused() == {"2013-01-03": make("2013-01-03").reason}
            else:
                assert days["2013-01-04"] == {"day": "2013-01-04"}
            # and a one-day step
            assert dg.materialize([daily], partition_key="2013-01-05", resources=_resources(root)).success
    local_keys = {str(p.relative_to(tmp_path / "home")) for p in (tmp_path / "home").rglob("*") if p.is_file()}
    remote_keys = {k.removeprefix("prod/") for k in s3.keys("prod/")}
    assert remote_keys == local_keys
    assert {"assets/flights/daily/2013-01-03.parquet", "assets/flights/daily/2013-01-03.json",
            "models/flights/daily/2013-01-03/refused.json", "models/flights/daily/2013-01-03/manifest.json",
            "models/flights/daily/2013-01-05/model.ubj"} <= remote_keys

    # and read back from S3 directly through the stores
    io = PolarsParquetIOManager(root=remote)
    assert io.read(io.location(dg.AssetKey([PREFIX, "daily"]), "2013-01-03")) == Refused("upstream: no rows")
    assert io.read(io.location(dg.AssetKey([PREFIX, "daily"]), "2013-01-02")).equals(frame_for("2013-01-02"))
    assert StorageRoot(root=remote).path().protocol == "s3"
