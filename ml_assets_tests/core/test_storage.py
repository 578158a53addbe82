"""Atomic reads and writes on a local folder or an fsspec URL."""
from __future__ import annotations

import os

import polars as pl
import pyarrow.parquet as pq
import pytest
from upath import UPath

from ml_assets.core import storage as S


def test_local_and_object_store_paths():
    assert S.is_local(S.make_path("/tmp/x")) and S.is_local(UPath("file:///tmp/x"))
    assert not S.is_local(UPath("memory://bucket/x"))
    assert S.make_path("memory://bucket/x", {}).protocol == "memory"


def test_atomic_write_creates_folders_and_replaces_whole_files(tmp_path):
    target = S.make_path(str(tmp_path)) / "a" / "b" / "file.bin"
    S.atomic_write_bytes(target, b"first")
    S.atomic_write_bytes(target, b"second, longer")
    assert target.read_bytes() == b"second, longer"
    assert os.listdir(tmp_path / "a" / "b") == ["file.bin"]  # no temp file left beside it


def test_a_failed_write_keeps_the_previous_version_and_leaves_no_temp_file(tmp_path, monkeypatch):
    target = S.make_path(str(tmp_path)) / "file.bin"
    S.atomic_write_bytes(target, b"previous")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(S.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        S.atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == ["file.bin"]


def test_parquet_round_trip_with_key_value_metadata(tmp_path):
    frame = pl.DataFrame({"a": [1, 2, None], "b": ["x", None, "z"], "c": [0.5, float("nan"), 1.5]})
    path = S.make_path(str(tmp_path)) / "f.parquet"
    size = S.write_parquet(path, frame, metadata={"refused": "no rows landed"})
    assert size == os.path.getsize(path) > 0
    assert S.read_parquet(path).equals(frame, null_equal=True)
    assert pq.read_metadata(os.fspath(path)).metadata[b"refused"] == b"no rows landed"


def test_parquet_on_an_object_store():
    root = UPath("memory://storage-test/home")
    try:
        frame = pl.DataFrame({"a": [1, 2, 3]})
        S.write_parquet(root / "x" / "f.parquet", frame)
        assert S.read_parquet(root / "x" / "f.parquet").equals(frame)
        S.atomic_write_bytes(root / "raw.bin", b"abc")
        assert (root / "raw.bin").read_bytes() == b"abc"
    finally:
        root.fs.rm(root.path, recursive=True)
