"""Storage: one root (local folder or s3://bucket/prefix), the same keys everywhere.

``StorageRoot`` hands assets the landing zone; ``PolarsParquetIOManager`` persists polars frames as
``assets/<asset>/<partition>.parquet`` (``assets/<asset>.parquet`` when unpartitioned), atomically.
A partition range is written one file per day (split on the ``date`` column, or given as a dict
``{partition key: frame}`` when the frame has no such column) and loaded as one frame, so single-run backfills
and window reads need no per-day processes.
"""
from __future__ import annotations

from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field
from upath import UPath

from ml_assets.core.dates import parse_day
from ml_assets.core.storage import make_path, read_parquet, write_parquet


class StorageRoot(dg.ConfigurableResource):
    root: str = Field(description="Local folder or fsspec URL (s3://bucket/prefix) holding everything.")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec options, e.g. endpoint_url.")

    def path(self) -> UPath:
        return make_path(self.root, self.storage_options)


class PolarsParquetIOManager(dg.ConfigurableIOManager):
    root: str
    storage_options: dict[str, Any] = Field(default_factory=dict)
    partition_column: str = "date"

    def _asset_dir(self, asset_key: dg.AssetKey) -> UPath:
        return make_path(self.root, self.storage_options).joinpath("assets", *asset_key.path)

    def path_for(self, asset_key: dg.AssetKey, partition_key: str | None) -> UPath:
        base = self._asset_dir(asset_key)
        if partition_key is None:
            return base.with_name(base.name + ".parquet")
        return base / f"{parse_day(partition_key).isoformat()}.parquet"

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame | dict[str, pl.DataFrame] | None) -> None:
        if obj is None:
            return
        keys = context.asset_partition_keys if context.has_asset_partitions else [None]
        if isinstance(obj, dict):
            parts = self._by_key(obj, keys, context.asset_key)
        elif not isinstance(obj, pl.DataFrame):
            raise TypeError(f"{context.asset_key.to_user_string()}: expected a polars DataFrame, got {type(obj)}")
        elif len(keys) == 1:
            parts = {keys[0]: obj}
        else:
            parts = self._split(obj, keys, context.asset_key)
        written = 0
        for key, frame in parts.items():
            written += write_parquet(self.path_for(context.asset_key, key), frame)
        context.add_output_metadata({
            "path": str(self.path_for(context.asset_key, keys[-1])),
            "partitions_written": len(parts),
            "bytes": written,
        })

    @staticmethod
    def _by_key(obj: dict, keys: list, asset_key: dg.AssetKey) -> dict[str, pl.DataFrame]:
        """A range output given day by day: exactly the run's partitions, each a frame."""
        if set(obj) != set(keys) or not all(isinstance(f, pl.DataFrame) for f in obj.values()):
            raise ValueError(f"{asset_key.to_user_string()}: a per-partition output must map each of the run's "
                             f"{len(keys)} partition(s) to a polars DataFrame, got keys {sorted(obj)[:5]}...")
        return {k: obj[k] for k in keys}

    def _split(self, obj: pl.DataFrame, keys: list[str], asset_key: dg.AssetKey) -> dict[str, pl.DataFrame]:
        col = self.partition_column
        if col not in obj.columns:
            raise ValueError(f"{asset_key.to_user_string()}: a multi-partition output needs a {col!r} column")
        parts = {k: obj.filter(pl.col(col) == parse_day(k)) for k in keys}
        stray = obj.height - sum(p.height for p in parts.values())
        if stray:
            raise ValueError(f"{asset_key.to_user_string()}: {stray} row(s) fall outside partitions {keys[0]}..{keys[-1]}")
        return parts

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        if not context.has_asset_partitions:
            return read_parquet(self._existing(self.path_for(context.asset_key, None)))
        keys = context.asset_partition_keys
        if len(keys) == 1:
            return read_parquet(self._existing(self.path_for(context.asset_key, keys[0])))
        # A window: days that never materialized (e.g. stopped by a blocking check) are holes, not errors.
        frames, missing = [], []
        for key in keys:
            path = self.path_for(context.asset_key, key)
            if path.exists():
                frames.append(read_parquet(path))
            else:
                missing.append(key)
        if missing:
            context.log.warning(f"{context.asset_key.to_user_string()}: {len(missing)} of {len(keys)} "
                                f"partitions not stored, skipped: {', '.join(missing[:10])}")
        if not frames:
            raise FileNotFoundError(f"{context.asset_key.to_user_string()}: none of {len(keys)} partitions "
                                    f"{keys[0]}..{keys[-1]} is stored under {self._asset_dir(context.asset_key)}")
        return pl.concat(frames, how="vertical_relaxed")

    @staticmethod
    def _existing(path: UPath) -> UPath:
        if not path.exists():
            raise FileNotFoundError(f"no stored asset at {path}: materialize it first")
        return path
