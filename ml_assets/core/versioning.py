"""Content hashes used as Dagster data versions."""
from __future__ import annotations

import hashlib

import polars as pl


def frame_hash(frame: pl.DataFrame) -> str:
    """A content hash of a frame: its schema plus a hash of every row, in order.

    polars' row hash is stable for a given polars version, which is what data versions need
    (equal content -> equal version, within one deployment).
    """
    h = hashlib.sha256(str(list(frame.schema.items())).encode())
    if frame.height:
        h.update(frame.hash_rows(seed=0).to_numpy().tobytes())
    return h.hexdigest()[:16]


def bytes_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files_hash(files: dict[str, bytes]) -> str:
    """A content hash of a set of named files (a model artifact)."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return h.hexdigest()[:16]


def json_hash(value) -> str:
    import json

    return bytes_hash(json.dumps(value, sort_keys=True, default=str).encode())[:16]


def content_hash(value) -> str:
    """The data version of any stored value: a frame, a set of files, a JSON record, or a refusal."""
    reason = getattr(value, "reason", None)
    if reason is not None:
        inner = getattr(value, "value", None)
        return bytes_hash(("refused:" + reason + (content_hash(inner) if inner is not None else "")).encode())[:16]
    if isinstance(value, (pl.DataFrame, pl.LazyFrame)):  # a lazy frame: a range step's day, computed on demand
        return frame_hash(value.collect() if isinstance(value, pl.LazyFrame) else value)
    if isinstance(value, dict) and value and all(isinstance(v, (bytes, bytearray)) for v in value.values()):
        return files_hash(value)
    return json_hash(value)
