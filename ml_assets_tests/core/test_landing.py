import datetime as dt
import os

import polars as pl
import pytest

from ml_assets.core import landing
from ml_assets.core.dates import InvalidPartitionKey, parse_day

DAY = dt.date(2013, 1, 2)


def test_lands_one_file_per_day_and_source(landed, tables):
    for source in landing.SOURCES:
        assert landing.landed_days(landed, source) == [dt.date(2013, 1, d) for d in (1, 2, 3)]
    flights = landing.read_landed(landing.latest_file(landed, "flights", DAY))
    expected = tables["flights"].filter((pl.col("month") == 1) & (pl.col("day") == 2))
    assert flights.equals(expected)
    assert landing.latest_file(landed, "flights", DAY).name == "v0001.parquet"
    assert landing.planes_file(landed).name == "v0001.parquet"


def test_relanding_is_a_noop_and_force_writes_a_new_version(landed):
    first = landing.latest_file(landed, "flights", DAY)
    before = (first.read_bytes(), os.stat(os.fspath(first)).st_mtime_ns)
    again = landing.land_days(landed, DAY, DAY)
    assert not any(f.written for f in again)
    forced = landing.land_days(landed, DAY, DAY, force=True)
    assert all(f.written for f in forced)
    assert landing.latest_file(landed, "flights", DAY).name == "v0002.parquet"
    assert (first.read_bytes(), os.stat(os.fspath(first)).st_mtime_ns) == before  # never edited in place


def test_missing_day_is_named(landed):
    with pytest.raises(landing.LandingFileMissing, match="2013-02-01"):
        landing.latest_file(landed, "flights", dt.date(2013, 2, 1))


@pytest.mark.parametrize("key", ["../etc", "2013-1-1", "2013-13-01", "2013-01-01/..", ""])
def test_partition_keys_are_validated(key):
    with pytest.raises(InvalidPartitionKey):
        parse_day(key)


@pytest.mark.parametrize("content, reason", [(b"", "empty"), (b"a,b\n1,2\n", "not a complete parquet"),
                                             (None, "not a complete parquet")])
def test_unreadable_files_get_a_named_error(landed, content, reason):
    good = landing.latest_file(landed, "flights", DAY).read_bytes()
    bad = landed / "bad.parquet"
    bad.write_bytes(good[: len(good) // 2] if content is None else content)
    with pytest.raises(landing.LandingFileError, match=reason) as err:
        landing.read_landed(bad)
    assert "bad.parquet" in str(err.value)
