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
