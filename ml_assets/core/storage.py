"""Atomic reads and writes on a local folder or an fsspec URL (s3://...), through UPath.

Local: write a temp file beside the target, then rename, so a crash leaves the previous
version or nothing, never half a file. Object stores: one PUT of the finished bytes, which
is atomic by the store's own contract.
"""
from __future__ import annotations

import io
import os
import uuid
from typing import Any

import polars as pl
from upath import UPath


def make_path(root: str, storage_options: dict[str, Any] | None = None) -> UPath:
    return UPath(root, **(storage_options or {}))


def is_local(path: UPath) -> bool:
    return getattr(path, "protocol", "") in ("", "file", "local")


def atomic_write_bytes(path: UPath, data: bytes) -> None:
    if is_local(path):
        target = os.fspath(path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    else:
        path.write_bytes(data)


def write_parquet(path: UPath, frame: pl.DataFrame, metadata: dict[str, str] | None = None) -> int:
    """Write ``frame`` atomically (with optional key-value ``metadata``); returns the number of bytes written."""
    buf = io.BytesIO()
    frame.write_parquet(buf, compression="zstd", statistics=True, metadata=metadata)
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    return len(data)


def read_parquet(path: UPath) -> pl.DataFrame:
    if is_local(path):
        return pl.read_parquet(os.fspath(path))
    return pl.read_parquet(io.BytesIO(path.read_bytes()))
