"""Deployment bundles: ``bundles/<version>/`` with everything a server needs and nothing it must trust blindly.

Files (all open formats, nothing pickled):

- ``model.onnx``     the graph over raw feature columns (see ``onnx_export`` for its contract);
- ``features.json``  version, model line, family, feature code version, the ONNX inputs (name, dtype, shape,
                     kind) and output, categorical vocabularies and the decision threshold from the model spec;
- ``metrics.json``   holdout metrics (overall, slices, latency, size) as given; NaN/inf stored as null;
- ``lineage.json``   data and code versions, MLflow run, parent champion, as given;
- ``model_card.md``  rendered from the above;
- ``MANIFEST``       ``<sha256>  <name>`` per other file, sorted by name (``sha256sum -c`` can check it).

Writing is atomic. Local: the folder is built as a hidden temp folder beside the target, then renamed into
place, so ``bundles/<version>/`` either does not exist or is complete. Object stores (no rename): every file
is one PUT, ``MANIFEST`` last, so a crash leaves a folder without MANIFEST, which ``load_bundle`` refuses.
A version is immutable: rewriting identical content is a no-op, different content raises ``BundleExistsError``.

``load_bundle`` verifies the MANIFEST: a missing MANIFEST (partial bundle), a missing, changed or unlisted
file each raise ``BundleIntegrityError`` naming the file. Scoring needs only onnxruntime, numpy and polars
(``Bundle.session`` / ``Bundle.score``), so a server does not import torch or xgboost.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from upath import UPath

from ml_assets.core.features import CATEGORICAL, FEATURE_CODE_VERSION
from ml_assets.core.semver import model_line, parse_version
from ml_assets.core.storage import atomic_write_bytes, is_local
from ml_assets.core.versioning import bytes_hash

BUNDLES_DIR = "bundles"
MODEL_FILE = "model.onnx"
FEATURES_FILE = "features.json"
METRICS_FILE = "metrics.json"
LINEAGE_FILE = "lineage.json"
CARD_FILE = "model_card.md"
MANIFEST_FILE = "MANIFEST"
BUNDLE_FILES = (MODEL_FILE, FEATURES_FILE, METRICS_FILE, LINEAGE_FILE, CARD_FILE)
FORMAT_VERSION = 1
OUTPUT = "p_late"
_MANIFEST_LINE = re.compile(r"^([0-9a-f]{64})  ([A-Za-z0-9_.-]+)$")
_ONNX_DTYPES = {"tensor(string)": "string", "tensor(float)": "float32", "tensor(double)": "float64",
                "tensor(int64)": "int64"}


class BundleIntegrityError(RuntimeError):
    """The bundle is partial, tampered with, or inconsistent; ``file`` names the offending file."""

    def __init__(self, message: str, path: str = "", file: str | None = None):
        super().__init__(message)
        self.path = path
        self.file = file


class BundleExistsError(FileExistsError):
    """``bundles/<version>/`` already holds a different bundle: versions are immutable."""


# ---------------------------------------------------------------- JSON and paths


def _jsonable(value: Any) -> Any:
    """Plain JSON values: NaN/inf -> null, numpy scalars/arrays -> Python, dates -> ISO strings."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, bool)):
        return value
    raise TypeError(f"cannot store {type(value).__name__} in a bundle JSON file: {value!r}")


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(_jsonable(value), indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


def _as_path(path: UPath | str | os.PathLike) -> UPath:
    return path if isinstance(path, UPath) else UPath(os.fspath(path))


def bundle_path(root: UPath | str | os.PathLike, line: str, version: str) -> UPath:
    """``<root>/bundles/<model line>/<version>``: each model line numbers its own versions, so two families
    can both have a 1.0.0 without sharing a folder."""
    parse_version(version)
    if not re.fullmatch(r"[a-z][a-z0-9_]*", line):
        raise ValueError(f"invalid model line {line!r}")
    return _as_path(root) / BUNDLES_DIR / line / version


# ---------------------------------------------------------------- contents


def _session(model_bytes: bytes, threads: int = 1):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def _io_spec(arg, categorical: set[str]) -> dict[str, Any]:
    dtype = _ONNX_DTYPES.get(arg.type, arg.type)
    kind = "categorical" if arg.name in categorical or dtype == "string" else "numeric"
    return {"name": arg.name, "dtype": dtype, "shape": [d if isinstance(d, (int, str)) else None for d in arg.shape],
            "kind": kind}


def features_spec(model_bytes: bytes, model_spec: dict[str, Any], version: str,
                  feature_code_version: str = FEATURE_CODE_VERSION) -> dict[str, Any]:
    """``features.json``: the input schema read from the ONNX graph itself plus the model spec's vocabularies."""
    session = _session(model_bytes)
    family = model_spec.get("family")
    categorical = set(model_spec.get("categorical", CATEGORICAL))
    inputs = [_io_spec(i, categorical) for i in session.get_inputs()]
    outputs = [_io_spec(o, set()) for o in session.get_outputs()]
    if OUTPUT not in [o["name"] for o in outputs]:
        raise ValueError(f"model.onnx has no {OUTPUT!r} output (outputs: {[o['name'] for o in outputs]})")
    return {
        "format_version": FORMAT_VERSION,
        "version": version,
        "family": family,
        "model_line": model_line(family),
        "feature_code_version": feature_code_version,
        "inputs": inputs,
        "output": next(o for o in outputs if o["name"] == OUTPUT),
        "categorical": [i["name"] for i in inputs if i["kind"] == "categorical"],
        "numeric": [i["name"] for i in inputs if i["kind"] == "numeric"],
        "vocabularies": {k: list(v) for k, v in (model_spec.get("vocabularies") or {}).items()},
        "threshold": model_spec.get("threshold"),
        "missing_values": "numeric: NaN; categorical: empty string; an unseen category is treated as unknown",
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(rows: list[dict[str, Any]], columns: list[str]) -> list[str]:
    if not rows:
        return ["(none)"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]


def _kv_table(d: dict[str, Any], key: str = "metric") -> list[str]:
    rows = [{key: k, "value": v} for k, v in d.items() if not isinstance(v, (dict, list))]
    return _table(rows, [key, "value"])


_SLICE_COLUMNS = ["slice", "value", "rows", "late_rate", "roc_auc", "auc_gap", "pr_auc", "brier", "f1", "flagged"]


def _slice_rows(slices: Any) -> list[dict[str, Any]]:
    """``evaluate()``'s list of slice rows, or ``{slice: {value: metrics}}``."""
    if isinstance(slices, list):
        return [s for s in slices if isinstance(s, dict)]
    if isinstance(slices, dict):
        return [{"slice": name, "value": value, **(m if isinstance(m, dict) else {"metric": m})}
                for name, values in slices.items() if isinstance(values, dict)
                for value, m in values.items()]
    return []


def render_model_card(features: dict[str, Any], metrics: dict[str, Any], lineage: dict[str, Any]) -> str:
    """``model_card.md``: intended use, data, metrics overall and by slice, cost, limitations, caveats."""
    m, lin = _jsonable(metrics), _jsonable(lineage)
    version, line = features.get("version"), features.get("model_line") or "flight delay model"
    overall = m.get("overall") or {}
    slices = _slice_rows(m.get("slices"))
    flagged = m.get("flagged_slices") or [f"{s.get('slice')}={s.get('value')}" for s in slices if s.get("flagged")]
    threshold = features.get("threshold")
    lines = [f"# Model card: {line} {version}", ""]
    lines += ["## Intended use", "",
              "Estimates `p_late`, the probability that a scheduled departure from a New York airport "
              "(EWR, JFK, LGA) arrives more than 15 minutes late, from what is known the evening before: "
              "schedule, route, carrier, plane and origin weather at the scheduled hour. Meant for ranking and "
              "planning (which flights to watch), with the decision threshold "
              f"{_fmt(threshold)} chosen on validation data for the best F1.", "",
              "Not for: individual passenger decisions with financial or safety consequences, airports or "
              "periods far from the training data, or as a causal statement about why a flight is late.", ""]
    lines += ["## Model", "",
              f"- family: {_fmt(features.get('family'))}, model line `{line}`, version {version}",
              f"- feature code: {_fmt(features.get('feature_code_version'))}",
              f"- inputs: {len(features.get('inputs', []))} raw columns ({', '.join(features.get('categorical', []))} "
              "categorical; the rest numeric, NaN = missing); output `p_late`", ""]
    lines += ["## Data and lineage", ""]
    lines += _kv_table({k: v for k, v in lin.items()}, key="item") if lin else ["(no lineage recorded)"]
    nested = {k: v for k, v in lin.items() if isinstance(v, dict)}
    for name, value in nested.items():
        lines += ["", f"{name}:", ""] + _kv_table(value, key="item")
    lines += ["", "## Metrics (holdout)", ""]
    lines += _kv_table(overall) if overall else ["(no overall metrics recorded)"]
    lines += ["", "## Metrics by slice", ""]
    columns = [c for c in _SLICE_COLUMNS if any(c in s for s in slices)]
    lines += _table(slices, columns) if slices else ["(no slice metrics recorded)"]
    lines += ["", f"Flagged slices (AUC well below overall): {', '.join(flagged) if flagged else 'none'}.", ""]
    cost = dict(m.get("latency") or {})
    for key in ("size_bytes", "model_size_bytes"):
        if key in m:
            cost[key] = m[key]
    lines += ["## Cost", ""] + (_kv_table(cost, key="measure") if cost else ["(not measured)"]) + [""]
    lines += ["## Limitations", "",
              "- Trained on a trailing window of recent days: seasonal patterns outside the window are not seen.",
              "- Weather is the observed reading at the scheduled hour, standing in for a forecast; a real "
              "forecast is noisier, so live accuracy can be lower than the holdout figures.",
              "- Unknown carriers, destinations or routes are scored as \"unknown\", not refused; "
              "unknown origin airports are refused by the server.",
              "- Cancelled flights have no label and are excluded from the metrics.", ""]
    lines += ["## Caveats", "",
              "- Metrics come from one holdout day; slices with few rows are noisy and never flagged.",
              "- Probabilities are calibrated on past data; check calibration after drift alerts.",
              "- Small slices, new routes and holidays deserve human review before acting on scores.", ""]
    return "\n".join(lines)


def manifest_bytes(files: dict[str, bytes]) -> bytes:
    """``<sha256>  <name>`` per file, sorted by name (the ``sha256sum`` format)."""
    return "".join(f"{bytes_hash(files[name])}  {name}\n" for name in sorted(files)).encode()


def build_bundle_files(
    version: str,
    model_bytes: bytes,
    model_spec: dict[str, Any] | bytes | str,
    metrics: dict[str, Any],
    lineage: dict[str, Any],
    feature_code_version: str = FEATURE_CODE_VERSION,
) -> dict[str, bytes]:
    """Every bundle file, MANIFEST included, in memory (validated: the model loads in onnxruntime)."""
    parse_version(version)
    spec = json.loads(model_spec) if isinstance(model_spec, (bytes, str)) else dict(model_spec)
    features = features_spec(model_bytes, spec, version, feature_code_version)
    files = {
        MODEL_FILE: bytes(model_bytes),
        FEATURES_FILE: _json_bytes(features),
        METRICS_FILE: _json_bytes(metrics),
        LINEAGE_FILE: _json_bytes(lineage),
        CARD_FILE: render_model_card(features, metrics, lineage).encode(),
    }
    return {**files, MANIFEST_FILE: manifest_bytes(files)}


# ---------------------------------------------------------------- writing


def _existing_manifest(target: UPath) -> bytes | None:
    manifest = target / MANIFEST_FILE
    return manifest.read_bytes() if manifest.exists() else None


def _write_local(target: UPath, files: dict[str, bytes]) -> None:
    final = os.fspath(target)
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(final)}.{uuid.uuid4().hex}.tmp")
    stale = None
    try:
        os.mkdir(tmp)
        for name in [n for n in sorted(files) if n != MANIFEST_FILE] + [MANIFEST_FILE]:
            with open(os.path.join(tmp, name), "wb") as fh:
                fh.write(files[name])
                fh.flush()
                os.fsync(fh.fileno())
        if os.path.isdir(final) and not os.path.exists(os.path.join(final, MANIFEST_FILE)):
            # A folder without MANIFEST was never a bundle (e.g. copied by hand and interrupted): move it aside.
            stale = os.path.join(parent, f".{os.path.basename(final)}.{uuid.uuid4().hex}.stale")
            os.rename(final, stale)
        try:
            os.rename(tmp, final)  # atomic: the version appears complete or not at all
        except OSError:
            if _existing_manifest(target) == files[MANIFEST_FILE]:
                return  # a concurrent writer published the very same bundle
            raise BundleExistsError(f"{final} already exists with different contents: versions are immutable")
        fd = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        for leftover in (tmp, stale):
            if leftover and os.path.exists(leftover):
                shutil.rmtree(leftover, ignore_errors=True)


def _write_object_store(target: UPath, files: dict[str, bytes]) -> None:
    if target.exists():
        # Only reached without a MANIFEST: leftovers of an interrupted write, never a bundle. Start clean.
        target.fs.rm(target.path, recursive=True)
    for name in sorted(files):
        if name != MANIFEST_FILE:
            atomic_write_bytes(target / name, files[name])
    atomic_write_bytes(target / MANIFEST_FILE, files[MANIFEST_FILE])  # last: its presence means complete


def write_bundle(
    root: UPath | str | os.PathLike,
    version: str,
    model_bytes: bytes,
    model_spec: dict[str, Any] | bytes | str,
    metrics: dict[str, Any],
    lineage: dict[str, Any],
    feature_code_version: str = FEATURE_CODE_VERSION,
) -> UPath:
    """Write ``<root>/bundles/<model line>/<version>/`` atomically and return its path.

    Idempotent for identical content; a different bundle under an existing version raises ``BundleExistsError``.
    """
    files = build_bundle_files(version, model_bytes, model_spec, metrics, lineage, feature_code_version)
    target = bundle_path(root, json.loads(files[FEATURES_FILE])["model_line"], version)
    existing = _existing_manifest(target)
    if existing is not None:
        if existing == files[MANIFEST_FILE]:
            load_bundle(target)  # same manifest: make sure the files still match it
            return target
        raise BundleExistsError(f"{target} already exists with different contents: versions are immutable")
    if is_local(target):
        _write_local(target, files)
    else:
        _write_object_store(target, files)
    return target


# ---------------------------------------------------------------- loading and verifying


def parse_manifest(data: bytes, where: str = MANIFEST_FILE) -> dict[str, str]:
    entries: dict[str, str] = {}
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleIntegrityError(f"{where} is not UTF-8 text", file=MANIFEST_FILE) from exc
    for number, line in enumerate(text.splitlines(), start=1):
        match = _MANIFEST_LINE.match(line)
        if not match:
            raise BundleIntegrityError(f"{where} line {number} is malformed: {line[:80]!r}", file=MANIFEST_FILE)
        digest, name = match.groups()
        if name == MANIFEST_FILE or name in entries:
            raise BundleIntegrityError(f"{where} line {number} lists {name!r} twice or lists itself",
                                       file=MANIFEST_FILE)
        entries[name] = digest
    return entries


def verify_files(present: dict[str, bytes], where: str = "bundle") -> dict[str, str]:
    """Check a bundle's files (name -> bytes, MANIFEST included) against the MANIFEST; returns the manifest."""
    if MANIFEST_FILE not in present:
        raise BundleIntegrityError(
            f"partial bundle {where}: no {MANIFEST_FILE} (never completely written, or it was removed)",
            path=where, file=MANIFEST_FILE)
    manifest = parse_manifest(present[MANIFEST_FILE], f"{where}/{MANIFEST_FILE}")
    for name in BUNDLE_FILES:
        if name not in manifest:
            raise BundleIntegrityError(f"{where}/{MANIFEST_FILE} does not list required file {name}",
                                       path=where, file=name)
    for name, digest in manifest.items():
        if name not in present:
            raise BundleIntegrityError(f"{where}/{name} is listed in {MANIFEST_FILE} but missing", path=where, file=name)
        actual = bytes_hash(present[name])
        if actual != digest:
            raise BundleIntegrityError(
                f"{where}/{name} does not match its {MANIFEST_FILE} sha256 (expected {digest[:12]}…, "
                f"got {actual[:12]}…): tampered with or partially written", path=where, file=name)
    extra = sorted(set(present) - set(manifest) - {MANIFEST_FILE})
    if extra:
        raise BundleIntegrityError(f"{where}/{extra[0]} is not listed in {MANIFEST_FILE} (unexpected file"
                                   f"{'s ' + ', '.join(extra) if len(extra) > 1 else ''})", path=where, file=extra[0])
    return manifest


def _read_folder(folder: UPath) -> dict[str, bytes]:
    if not folder.exists() or not folder.is_dir():
        raise BundleIntegrityError(f"no bundle at {folder}", path=str(folder))
    files = {}
    for entry in folder.iterdir():
        if entry.is_dir():
            raise BundleIntegrityError(f"{folder}/{entry.name}/ is an unexpected folder in the bundle",
                                       path=str(folder), file=entry.name)
        files[entry.name] = entry.read_bytes()
    return files


@dataclass(frozen=True)
class Bundle:
    path: str
    version: str
    model_bytes: bytes = field(repr=False)
    features: dict[str, Any] = field(repr=False)
    metrics: dict[str, Any] = field(repr=False)
    lineage: dict[str, Any] = field(repr=False)
    model_card: str = field(repr=False)
    manifest: dict[str, str] = field(repr=False)

    @property
    def family(self) -> str | None:
        return self.features.get("family")

    @property
    def model_line(self) -> str | None:
        return self.features.get("model_line")

    @property
    def threshold(self) -> float | None:
        return self.features.get("threshold")

    @property
    def input_names(self) -> list[str]:
        return [i["name"] for i in self.features["inputs"]]

    @property
    def vocabularies(self) -> dict[str, list[str]]:
        return self.features.get("vocabularies") or {}

    def session(self, threads: int = 1):
        """An onnxruntime session, checked against ``features.json`` (names and dtypes)."""
        session = _session(self.model_bytes, threads)
        actual = [(i.name, _ONNX_DTYPES.get(i.type, i.type)) for i in session.get_inputs()]
        declared = [(i["name"], i["dtype"]) for i in self.features["inputs"]]
        if actual != declared:
            raise BundleIntegrityError(f"{self.path}/{MODEL_FILE} inputs {actual} differ from {FEATURES_FILE}",
                                       path=self.path, file=FEATURES_FILE)
        return session

    def feed(self, frame: pl.DataFrame) -> dict[str, np.ndarray]:
        """Inputs as the graph wants them: strings (null -> "" = unknown), float32 with NaN, shape [N,1]."""
        feed = {}
        for spec in self.features["inputs"]:
            column = frame.get_column(spec["name"])
            if spec["dtype"] == "string":
                values = column.cast(pl.String).fill_null("").to_numpy().astype(object)
            else:
                values = column.cast(pl.Float64).to_numpy().astype(np.dtype(spec["dtype"]))
            feed[spec["name"]] = values.reshape(-1, 1)
        return feed

    def score(self, frame: pl.DataFrame, session=None) -> np.ndarray:
        """p_late (float64 copy of the float32 output) for every row of a feature frame."""
        if frame.height == 0:
            return np.zeros(0, dtype=np.float64)
        (p,) = (session or self.session()).run([OUTPUT], self.feed(frame))
        return np.asarray(p, dtype=np.float64).ravel()


def load_bundle(path: UPath | str | os.PathLike) -> Bundle:
    """Read and verify a bundle folder; raises ``BundleIntegrityError`` naming the bad file."""
    folder = _as_path(path)
    where = str(folder)
    present = _read_folder(folder)
    manifest = verify_files(present, where)
    try:
        features = json.loads(present[FEATURES_FILE])
        metrics = json.loads(present[METRICS_FILE])
        lineage = json.loads(present[LINEAGE_FILE])
        card = present[CARD_FILE].decode("utf-8")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleIntegrityError(f"{where}: unreadable bundle file ({exc})", path=where) from exc
    if features.get("format_version") != FORMAT_VERSION:
        raise BundleIntegrityError(f"{where}/{FEATURES_FILE}: unsupported format_version "
                                   f"{features.get('format_version')!r} (expected {FORMAT_VERSION})",
                                   path=where, file=FEATURES_FILE)
    return Bundle(path=where, version=str(features["version"]), model_bytes=present[MODEL_FILE], features=features,
                  metrics=metrics, lineage=lineage, model_card=card, manifest=manifest)


def list_bundles(root: UPath | str | os.PathLike, line: str) -> list[str]:
    """Complete (MANIFEST present) bundle versions of a model line, lowest first."""
    base = _as_path(root) / BUNDLES_DIR / line
    if not base.exists():
        return []
    found = []
    for entry in base.iterdir():
        try:
            key = parse_version(entry.name)
        except ValueError:
            continue
        if (entry / MANIFEST_FILE).exists():
            found.append((key, entry.name))
    return [name for _, name in sorted(found)]


__all__ = [
    "BUNDLE_FILES", "Bundle", "BundleExistsError", "BundleIntegrityError", "MANIFEST_FILE", "build_bundle_files",
    "bundle_path", "features_spec", "list_bundles", "load_bundle", "manifest_bytes", "parse_manifest",
    "render_model_card", "verify_files", "write_bundle",
]
