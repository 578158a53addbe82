"""The simulated upstream: every source of the spec, on its own delivery timeline, immutable files."""
from __future__ import annotations

import datetime as dt
import os

import polars as pl
import pytest

from ml_assets.core import landing as L
from ml_assets.core.dates import InvalidPartitionKey, parse_day
from ml_assets.core.spec import OUTCOME_LAG_ENV
from ml_assets.core.storage import write_parquet

D1, D2, D3 = (dt.date(2013, 1, d) for d in (1, 2, 3))


def _landed_keys(root) -> set[tuple[str, str]]:
    """(source, day) of every landed file under root (reference tables: day '')."""
    base = root / "landing"
    if not base.exists():
        return set()
    out = set()
    for source in base.iterdir():
        for entry in source.iterdir():
            if entry.name.startswith("date=") and L.versions(entry):
                out.add((source.name, entry.name[len("date="):]))
            elif entry.name.endswith(".parquet"):
                out.add((source.name, ""))
    return out


def test_source_rows_are_the_days_rows_with_the_sources_columns(spec, tables):
    rows = L.source_rows(spec, "schedule", D2)
    expected = tables["flights"].filter((pl.col("month") == 1) & (pl.col("day") == 2))
    assert rows.columns == list(spec.sources["schedule"].columns)
    assert rows.height == expected.height > 800
    outcomes = L.source_rows(spec, "outcomes", D2)
    assert outcomes.columns == list(spec.sources["outcomes"].columns)
    assert not set(spec.outcome_columns) & set(rows.columns)  # the schedule carries no outcome
    weather = L.source_rows(spec, "weather", D2)
    assert set(weather["origin"]) == {"EWR", "JFK", "LGA"} and weather["day"].unique().to_list() == [2]
    assert L.source_tables(spec) is L.source_tables(spec)  # read once per process


def test_lands_one_file_per_day_and_source(landed, spec):
    for source in spec.sources:
        assert L.landed_days(landed, spec, source) == [D1, D2, D3]
        path = L.latest_file(landed, spec, source, D2)
        assert path.name == "v0001.parquet"
        assert L.read_landed(path).equals(L.source_rows(spec, source, D2))
    assert L.reference_file(landed, "planes").name == "v0001.parquet"
    assert L.complete_days(landed, spec) == [D1, D2, D3]


def test_relanding_is_a_noop_and_force_writes_a_new_version(landed, spec):
    first = L.latest_file(landed, spec, "schedule", D2)
    before = (first.read_bytes(), os.stat(os.fspath(first)).st_mtime_ns)
    again = L.land_days(landed, spec, D2, D2)
    assert again and not any(f.written for f in again)
    forced = L.land_days(landed, spec, D2, D2, force=True)
    assert forced and all(f.written for f in forced)
    for source in spec.sources:
        assert L.latest_file(landed, spec, source, D2).name == "v0002.parquet"
    assert L.reference_file(landed, "planes").name == "v0002.parquet"
    assert (first.read_bytes(), os.stat(os.fspath(first)).st_mtime_ns) == before  # never edited in place
    assert [p.name for p in L.versions(L.day_dir(landed, spec, "schedule", D2))] == ["v0001.parquet", "v0002.parquet"]


def test_only_some_sources_can_be_landed(root, spec):
    L.land_days(root, spec, D1, D1, sources=["schedule"])
    assert L.landed_days(root, spec, "schedule") == [D1]
    assert L.landed_days(root, spec, "weather") == [] and L.complete_days(root, spec) == []


@pytest.mark.parametrize(("start", "end", "reason"), [
    (dt.date(2012, 12, 31), D2, "outside the flights feed"),
    (dt.date(2013, 12, 31), dt.date(2014, 1, 1), "outside the flights feed"),
    (D3, D1, "before --start"),
])
def test_out_of_range_days_are_refused_before_anything_is_written(root, spec, start, end, reason):
    with pytest.raises(L.OutOfRange, match=reason):
        L.land_days(root, spec, start, end)
    assert not (root / "landing").exists()


def test_landed_days_ignore_strays_and_non_empty_skips_empty_files(landed, spec):
    (landed / "landing" / "schedule" / "date=not-a-day").mkdir()
    (landed / "landing" / "schedule" / "notes.txt").write_text("x")
    outside = L.day_dir(landed, spec, "schedule", dt.date(2014, 1, 5))
    write_parquet(outside / "v0001.parquet", L.source_rows(spec, "schedule", D1))
    empty = L.day_dir(landed, spec, "schedule", dt.date(2013, 1, 4))
    write_parquet(empty / "v0001.parquet", L.source_rows(spec, "schedule", D1).head(0))
    (empty / ".v0002.parquet.tmp").write_bytes(b"half")  # a temp file is not a version
    assert L.landed_days(landed, spec, "schedule") == [D1, D2, D3, dt.date(2013, 1, 4)]
    assert L.landed_days(landed, spec, "schedule", non_empty=True) == [D1, D2, D3]
    assert L.landed_days(landed, spec, "nothing_here") == []


def test_unknown_source_and_missing_day_are_named(landed, spec):
    with pytest.raises(ValueError, match="unknown landing source 'flights'"):
        L.day_dir(landed, spec, "flights", D1)
    with pytest.raises(L.LandingFileMissing, match="2013-02-01"):
        L.latest_file(landed, spec, "schedule", dt.date(2013, 2, 1))


@pytest.mark.parametrize("key", ["../etc", "2013-1-1", "2013-13-01", "2013-01-01/..", ""])
def test_partition_keys_are_validated(landed, spec, key):
    with pytest.raises(InvalidPartitionKey):
        parse_day(key)
    with pytest.raises(InvalidPartitionKey):
        L.day_dir(landed, spec, "schedule", key)


@pytest.mark.parametrize(("content", "reason"), [(b"", "empty"), (b"a,b\n1,2\n", "not a complete parquet"),
                                                 (None, "not a complete parquet")])
def test_unreadable_files_get_a_named_error(landed, spec, content, reason):
    good = L.latest_file(landed, spec, "schedule", D2).read_bytes()
    bad = landed / "bad.parquet"
    bad.write_bytes(good[: len(good) // 2] if content is None else content)
    with pytest.raises(L.LandingFileError, match=reason) as err:
        L.read_landed(bad)
    assert "bad.parquet" in str(err.value)


# ---------------------------------------------------------------------------------------------- the timeline


def test_delivery_instants(spec, monkeypatch):
    monkeypatch.delenv(OUTCOME_LAG_ENV, raising=False)
    assert L.delivery_instant(spec, "schedule", D2) == dt.datetime(2013, 1, 1, 18, 0)
    assert L.delivery_instant(spec, "weather", D2) == dt.datetime(2013, 1, 1, 18, 0)
    assert L.delivery_instant(spec, "outcomes", D2) == dt.datetime(2013, 1, 3, 6, 0)
    monkeypatch.setenv(OUTCOME_LAG_ENV, "3")
    assert L.delivery_instant(spec, "outcomes", D2) == dt.datetime(2013, 1, 5, 6, 0)
    assert L.delivery_instant(spec, "schedule", D2) == dt.datetime(2013, 1, 1, 18, 0)  # the lag is the outcomes'


@pytest.mark.parametrize(("as_of", "lag", "expected"), [
    # The evening before the feed's first day: its schedule and weather, nothing else.
    (dt.datetime(2012, 12, 31, 18, 0), None, {("schedule", D1), ("weather", D1)}),
    (dt.datetime(2012, 12, 31, 17, 59), None, set()),
    # 06:00 on 01-02: 01-01's outcomes (lag 1); 01-02's schedule and weather came the evening before.
    (dt.datetime(2013, 1, 2, 6, 0), None, {("schedule", D1), ("weather", D1), ("schedule", D2), ("weather", D2),
                                           ("outcomes", D1)}),
    (dt.datetime(2013, 1, 2, 5, 59), None, {("schedule", D1), ("weather", D1), ("schedule", D2), ("weather", D2)}),
    # 18:00 on 01-02: 01-03's schedule and weather too, still only 01-01's outcomes.
    (dt.datetime(2013, 1, 2, 18, 0), None, {("schedule", D1), ("weather", D1), ("schedule", D2), ("weather", D2),
                                            ("schedule", D3), ("weather", D3), ("outcomes", D1)}),
    # With a two-day lag, 01-01's outcomes arrive on 01-03 at 06:00.
    (dt.datetime(2013, 1, 2, 18, 0), "2", {("schedule", D1), ("weather", D1), ("schedule", D2), ("weather", D2),
                                           ("schedule", D3), ("weather", D3)}),
    (dt.datetime(2013, 1, 3, 6, 0), "2", {("schedule", d) for d in (D1, D2, D3)} | {
        ("weather", d) for d in (D1, D2, D3)} | {("outcomes", D1)}),
])
def test_deliveries_until_an_instant(spec, monkeypatch, as_of, lag, expected):
    if lag is None:
        monkeypatch.delenv(OUTCOME_LAG_ENV, raising=False)
    else:
        monkeypatch.setenv(OUTCOME_LAG_ENV, lag)
    due = L.deliveries_until(spec, as_of)
    assert {(d.source, d.day) for d in due} == expected
    assert [d.at for d in due] == sorted(d.at for d in due) and all(d.at <= as_of for d in due)


def test_land_as_of_delivers_exactly_what_had_arrived(root, spec, monkeypatch):
    monkeypatch.delenv(OUTCOME_LAG_ENV, raising=False)
    assert L.land_as_of(root, spec, dt.datetime(2012, 12, 31, 12, 0)) == []
    assert not (root / "landing").exists()  # nothing due: nothing written, not even the reference tables

    landed = L.land_as_of(root, spec, dt.datetime(2013, 1, 2, 18, 0))
    assert all(f.written for f in landed)
    assert _landed_keys(root) == {("planes", ""), ("airports", ""), ("schedule", "2013-01-01"), ("weather", "2013-01-01"),
                                  ("schedule", "2013-01-02"), ("weather", "2013-01-02"), ("schedule", "2013-01-03"),
                                  ("weather", "2013-01-03"), ("outcomes", "2013-01-01")}
    assert L.complete_days(root, spec) == [D1, D2, D3]
    assert L.landed_days(root, spec, "outcomes") == [D1]
    first = L.latest_file(root, spec, "schedule", D1)
    before = first.read_bytes()

    # The next morning: 01-02's outcomes arrive; what had landed is left alone.
    later = L.land_as_of(root, spec, dt.datetime(2013, 1, 3, 6, 0))
    assert [(f.source, f.day) for f in later if f.written] == [("outcomes", D2)]
    assert L.landed_days(root, spec, "outcomes") == [D1, D2]
    assert first.read_bytes() == before and L.latest_file(root, spec, "schedule", D1).name == "v0001.parquet"


def test_land_as_of_respects_the_outcome_lag_setting(root, spec, monkeypatch):
    monkeypatch.setenv(OUTCOME_LAG_ENV, "2")
    L.land_as_of(root, spec, dt.datetime(2013, 1, 2, 18, 0))
    assert L.landed_days(root, spec, "outcomes") == []
    L.land_as_of(root, spec, dt.datetime(2013, 1, 3, 6, 0))
    assert L.landed_days(root, spec, "outcomes") == [D1]
    assert L.read_landed(L.latest_file(root, spec, "outcomes", D1)).equals(L.source_rows(spec, "outcomes", D1))
