"""Storage: one root (local folder or s3://bucket/prefix), the same keys everywhere.

``StorageRoot`` hands assets the landing zone. Three IO managers persist asset values per partition, each
atomically, each able to store a refused day (``defs.days``) and to give a partitioned input as ``Days``:

- ``PolarsParquetIOManager``: frames as ``assets/<asset key path>/<YYYY-MM-DD>.parquet``; a refusal is the
  parquet file's key-value metadata (``ml_assets.refused``), so value and refusal are one atomic write;
- ``ModelFilesIOManager``: a dict of file name -> bytes in open formats as ``models/<asset>/<day>/`` with a
  ``manifest.json`` of sha256 sums written last (a half-written model is detected on load);
- ``JsonIOManager``: a JSON record as ``assets/<asset>/<day>.json`` (decisions, pointers).
A partition range is written one file (folder) per day and loaded as ``Days``: single-run backfills and window
reads need no per-day processes. Days are read when first used and only the recently used stay in memory
(``StoredDays``), so a year-long range step holds one day's input at a time, not the year's.
"""
from __future__ import annotations

import io
import json
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field
from upath import UPath

from ml_assets.core.dates import parse_day
from ml_assets.core.storage import atomic_write_bytes, make_path, read_parquet, write_parquet
from ml_assets.core.versioning import bytes_hash
from ml_assets.defs.days import Days, Refused, RefusedValue

REFUSED_KEY = "ml_assets.refused"


class StorageRoot(dg.ConfigurableResource):
    root: str = Field(description="Local folder or fsspec URL (s3://bucket/prefix) holding everything.")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec options, e.g. endpoint_url.")

    def path(self) -> UPath:
        return make_path(self.root, self.storage_options)


class _DayStore(dg.ConfigurableIOManager):
    """Per-partition storage of one kind of value; subclasses say how one day is written and read."""

    root: str
    storage_options: dict[str, Any] = Field(default_factory=dict)
    folder: str = "assets"
    cache_mb: int = Field(512, description="stored days of a range input kept in memory (MiB); the rest are read "
                                           "again when used again")

    def base(self, asset_key: dg.AssetKey) -> UPath:
        return make_path(self.root, self.storage_options).joinpath(self.folder, *asset_key.path)

    def location(self, asset_key: dg.AssetKey, partition: str | None) -> UPath:
        raise NotImplementedError

    def write(self, location: UPath, value: Any, refused: str | None) -> int:
        raise NotImplementedError

    def read(self, location: UPath) -> Any:
        """The stored value, or ``Refused``; raises FileNotFoundError when nothing is stored."""
        raise NotImplementedError

    def exists(self, location: UPath) -> bool:
        return location.exists()

    def _write_one(self, asset_key: dg.AssetKey, partition: str | None, value: Any) -> int:
        location = self.location(asset_key, partition)
        if isinstance(value, Refused):
            return self.write(location, None, value.reason)
        if isinstance(value, RefusedValue):
            return self.write(location, value.value, value.reason)
        return self.write(location, value, None)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        keys = context.asset_partition_keys if context.has_asset_partitions else [None]
        parts = obj if len(keys) > 1 else {keys[0]: obj}
        if len(keys) > 1 and (not isinstance(obj, dict) or set(obj) != set(keys)):
            raise ValueError(f"{context.asset_key.to_user_string()}: a range output must map each of the run's "
                             f"{len(keys)} partitions to its value")
        written = sum(self._write_one(context.asset_key, key, parts[key]) for key in keys)
        context.add_output_metadata({"path": str(self.location(context.asset_key, keys[-1])),
                                     "partitions_written": len(keys), "bytes": written})

    def load_input(self, context: dg.InputContext) -> Any:
        asset = context.asset_key.to_user_string()
        if not context.has_asset_partitions:
            location = self.location(context.asset_key, None)
            if not self.exists(location):
                raise FileNotFoundError(f"no stored {asset} at {location}: materialize it first")
            return self.read(location)
        stored, missing = {}, []
        for key in context.asset_partition_keys:
            location = self.location(context.asset_key, key)
            if self.exists(location):
                stored[key] = location
            else:
                missing.append(key)
        return Days(StoredDays(self.read, stored, self.cache_mb << 20), asset=asset, missing=missing)


def _size(value: Any) -> int:
    if isinstance(value, pl.DataFrame):
        return value.estimated_size()
    if isinstance(value, dict) and all(isinstance(v, bytes) for v in value.values()):
        return sum(map(len, value.values()))
    return 1024  # a JSON record, a refusal


class StoredDays(Mapping[str, Any]):
    """Stored days read on first use; the most recently used stay in memory up to ``cache_bytes``.

    A range run's input (a year of 28-day training sets is gigabytes) is then never in memory whole, while a
    window read day after day (D-28..D-1, then D-27..D) reads each day once."""

    def __init__(self, read: Callable[[UPath], Any], locations: dict[str, UPath], cache_bytes: int):
        self._read, self._locations, self._limit = read, locations, cache_bytes
        self._cache: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._bytes = 0

    def __getitem__(self, key: str) -> Any:
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key][0]
        value = self._read(self._locations[key])
        size = _size(value)
        self._cache[key] = (value, size)
        self._bytes += size
        while self._bytes > self._limit and len(self._cache) > 1:
            _, (_, dropped) = self._cache.popitem(last=False)
            self._bytes -= dropped
        return value

    def __contains__(self, key: object) -> bool:
        return key in self._locations

    def __iter__(self):
        return iter(self._locations)

    def __len__(self) -> int:
        return len(self._locations)


class PolarsParquetIOManager(_DayStore):
    def location(self, asset_key: dg.AssetKey, partition: str | None) -> UPath:
        base = self.base(asset_key)
        if partition is None:
            return base.with_name(base.name + ".parquet")
        return base / f"{parse_day(partition).isoformat()}.parquet"

    def write(self, location: UPath, value: Any, refused: str | None) -> int:
        frame = value if value is not None else pl.DataFrame()
        if isinstance(frame, pl.LazyFrame):  # a range step's day, computed when written (see training_set)
            frame = frame.collect()
        if not isinstance(frame, pl.DataFrame):
            raise TypeError(f"{location}: expected a polars DataFrame, got {type(frame).__name__}")
        return write_parquet(location, frame, metadata={REFUSED_KEY: refused} if refused else None)

    def read(self, location: UPath) -> Any:
        data = location.read_bytes()
        reason = pl.read_parquet_metadata(io.BytesIO(data)).get(REFUSED_KEY)
        return Refused(reason) if reason else pl.read_parquet(io.BytesIO(data))


class JsonIOManager(_DayStore):
    def location(self, asset_key: dg.AssetKey, partition: str | None) -> UPath:
        base = self.base(asset_key)
        if partition is None:
            return base.with_name(base.name + ".json")
        return base / f"{parse_day(partition).isoformat()}.json"

    def write(self, location: UPath, value: Any, refused: str | None) -> int:
        record = {"refused": refused} if refused else {"value": value}
        data = json.dumps(record, indent=1, sort_keys=True, default=str).encode()
        atomic_write_bytes(location, data)
        return len(data)

    def read(self, location: UPath) -> Any:
        record = json.loads(location.read_bytes())
        return Refused(record["refused"]) if "refused" in record else record["value"]


MANIFEST = "manifest.json"
REFUSED_FILE = "refused.json"


class IncompleteModelError(RuntimeError):
    pass


def write_files(folder: UPath, files: dict[str, bytes]) -> str:
    """Write every file, then the manifest; returns the manifest's own hash (the artifact's version)."""
    for name, data in files.items():
        if "/" in name or name.startswith(".") or name == MANIFEST:
            raise ValueError(f"invalid model file name {name!r}")
        atomic_write_bytes(folder / name, data)
    manifest = json.dumps({n: bytes_hash(d) for n, d in sorted(files.items())}, indent=1).encode()
    atomic_write_bytes(folder / MANIFEST, manifest)
    return bytes_hash(manifest)[:16]


def read_files(folder: UPath) -> dict[str, bytes]:
    manifest_path = folder / MANIFEST
    if not manifest_path.exists():
        raise IncompleteModelError(f"no {MANIFEST} in {folder}: the model was never completely written")
    expected = json.loads(manifest_path.read_bytes())
    files = {}
    for name, digest in expected.items():
        data = (folder / name).read_bytes()
        if bytes_hash(data) != digest:
            raise IncompleteModelError(f"{folder / name} does not match its manifest sha256")
        files[name] = data
    return files


class ModelFilesIOManager(_DayStore):
    folder: str = "models"

    def location(self, asset_key: dg.AssetKey, partition: str | None) -> UPath:
        base = self.base(asset_key)
        return base / "current" if partition is None else base / parse_day(partition).isoformat()

    def exists(self, location: UPath) -> bool:
        return (location / MANIFEST).exists()

    def write(self, location: UPath, value: Any, refused: str | None) -> int:
        files = dict(value or {})
        if refused:
            files[REFUSED_FILE] = json.dumps({"refused": refused}).encode()
        write_files(location, files)  # the manifest names the day's files: leftovers of an earlier write are ignored
        return sum(len(v) for v in files.values())

    def read(self, location: UPath) -> Any:
        files = read_files(location)
        if REFUSED_FILE in files:
            return Refused(json.loads(files[REFUSED_FILE])["refused"])
        return files
