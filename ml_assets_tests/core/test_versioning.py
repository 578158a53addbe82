"""Content hashes as data versions: equal content -> equal version, any change -> a new one."""
from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from ml_assets.core import versioning as V


@dataclass(frozen=True)
class Refusal:
    """Shaped like ``defs.days.Refused``: a reason and, for a refused raw day, the data as landed."""

    reason: str
    value: object = None


FRAME = pl.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None]})


def test_frame_hash_follows_content_order_and_schema():
    assert V.content_hash(FRAME) == V.content_hash(FRAME.clone()) == V.frame_hash(FRAME)
    assert len(V.frame_hash(FRAME)) == 16
    assert V.content_hash(FRAME.reverse()) != V.content_hash(FRAME)  # order is content
    assert V.content_hash(FRAME.with_columns(pl.col("a").cast(pl.Float64))) != V.content_hash(FRAME)
    assert V.content_hash(FRAME.rename({"b": "c"})) != V.content_hash(FRAME)
    assert V.content_hash(FRAME.with_columns(b=pl.lit("y"))) != V.content_hash(FRAME)
    assert V.content_hash(FRAME.head(0)) == V.content_hash(FRAME.head(0).clone())
    assert V.content_hash(FRAME.head(0)) != V.content_hash(FRAME)


def test_files_hash_follows_names_and_bytes_not_insertion_order():
    files = {"model.ubj": b"\x00\x01", "model_spec.json": b"{}"}
    assert V.content_hash(files) == V.files_hash(dict(reversed(list(files.items()))))
    assert V.content_hash({**files, "model.ubj": b"\x00\x02"}) != V.content_hash(files)
    assert V.content_hash({"other.ubj": b"\x00\x01", "model_spec.json": b"{}"}) != V.content_hash(files)
    # names and contents cannot be shuffled into the same hash
    assert V.files_hash({"ab": b"c"}) != V.files_hash({"a": b"bc"})


def test_json_records_hash_by_value():
    record = {"champion": {"version": "1.0.0"}, "history": [1, 2]}
    assert V.content_hash(record) == V.content_hash({"history": [1, 2], "champion": {"version": "1.0.0"}})
    assert V.content_hash(record) != V.content_hash({**record, "history": [2, 1]})
    assert V.content_hash(None) == V.json_hash(None) and V.content_hash({}) == V.json_hash({})


def test_a_refusal_has_its_own_version_by_reason_and_data():
    refused = Refusal("schema: 3 rows out of range", FRAME)
    assert V.content_hash(refused) == V.content_hash(Refusal("schema: 3 rows out of range", FRAME.clone()))
    assert V.content_hash(refused) != V.content_hash(FRAME)  # refused data is not the accepted data
    assert V.content_hash(refused) != V.content_hash(Refusal("another reason", FRAME))
    assert V.content_hash(refused) != V.content_hash(Refusal("schema: 3 rows out of range", FRAME.head(1)))
    assert V.content_hash(Refusal("upstream refused")) != V.content_hash(Refusal("upstream refused", FRAME))


def test_bytes_hash_is_sha256():
    assert V.bytes_hash(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
