"""Model artifacts: a dict of file name -> bytes in open formats (XGBoost UBJ/JSON, torch state_dict,
ONNX, JSON specs), stored as ``models/<asset>/<partition>/<file>`` with a ``manifest.json`` of sha256 sums
written last, so a half-written model is detected on load instead of being served."""
from __future__ import annotations

import json
from typing import Any

import dagster as dg
from pydantic import Field
from upath import UPath

from ml_assets.core.dates import parse_day
from ml_assets.core.storage import atomic_write_bytes, make_path
from ml_assets.core.versioning import bytes_hash

MANIFEST = "manifest.json"


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


class ModelFilesIOManager(dg.ConfigurableIOManager):
    root: str
    storage_options: dict[str, Any] = Field(default_factory=dict)

    def folder(self, asset_key: dg.AssetKey, partition_key: str | None) -> UPath:
        base = make_path(self.root, self.storage_options).joinpath("models", *asset_key.path)
        return base / parse_day(partition_key).isoformat() if partition_key else base / "current"

    def handle_output(self, context: dg.OutputContext, obj: dict[str, bytes] | None) -> None:
        if obj is None:
            return
        key = context.asset_partition_key if context.has_asset_partitions else None
        folder = self.folder(context.asset_key, key)
        version = write_files(folder, obj)
        context.add_output_metadata({"path": str(folder), "files": ", ".join(sorted(obj)),
                                     "artifact_sha": version,
                                     "size_bytes": sum(len(v) for v in obj.values())})

    def load_input(self, context: dg.InputContext) -> dict[str, bytes]:
        key = context.asset_partition_key if context.has_asset_partitions else None
        return read_files(self.folder(context.asset_key, key))
