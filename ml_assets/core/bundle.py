"""Deployment bundles: ``bundles/<line>/<version>/`` with everything a server needs and nothing it must trust blindly.

Files (all open formats, nothing pickled):

- ``model.onnx``     the graph over the feature columns (see ``onnx_export`` for its contract);
- ``features.json``  version, model line, family, feature code version, the ONNX inputs (name, dtype, shape,
                     kind) and output, categorical vocabularies and the decision threshold from the model spec;
- ``metrics.json``   holdout metrics (overall, slices, latency, size) as given; NaN/inf stored as null;
- ``lineage.json``   data and code versions, training span, MLflow run, as given;
- ``dataset.json``   the dataset spec the features were built with (a server builds the same features);
- ``model_card.md``, ``data_card.md``  rendered from the above;
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
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from upath import UPath

from ml_assets.core.semver import parse_version
from ml_assets.core.storage import atomic_write_bytes, is_local
from ml_assets.core.versioning import bytes_hash

BUNDLES_DIR = "bundles"
MODEL_FILE = "model.onnx"
FEATURES_FILE = "features.json"
METRICS_FILE = "metrics.json"
LINEAGE_FILE = "lineage.json"
DATASET_FILE = "dataset.json"
CARD_FILE = "model_card.md"
DATA_CARD_FILE = "data_card.md"
MANIFEST_FILE = "MANIFEST"
BUNDLE_FILES = (MODEL_FILE, FEATURES_FILE, METRICS_FILE, LINEAGE_FILE, DATASET_FILE, CARD_FILE, DATA_CARD_FILE)
FORMAT_VERSION = 2
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
    from ml_assets.core.onnx_export import onnx_session

    return onnx_session(model_bytes, threads)


def _io_spec(arg, categorical: set[str]) -> dict[str, Any]:
    dtype = _ONNX_DTYPES.get(arg.type, arg.type)
    kind = "categorical" if arg.name in categorical or dtype == "string" else "numeric"
    return {"name": arg.name, "dtype": dtype, "shape": [d if isinstance(d, (int, str)) else None for d in arg.shape],
            "kind": kind}


def features_spec(model_bytes: bytes, model_spec: dict[str, Any], version: str, model_line: str,
                  feature_code_version: str) -> dict[str, Any]:
    """``features.json``: the input schema read from the ONNX graph itself plus the model spec's vocabularies."""
    session = _session(model_bytes)
    categorical = set(model_spec.get("categorical", []))
    inputs = [_io_spec(i, categorical) for i in session.get_inputs()]
    outputs = [_io_spec(o, set()) for o in session.get_outputs()]
    expected = model_spec.get("output")
    if expected not in [o["name"] for o in outputs]:
        raise ValueError(f"model.onnx has no {expected!r} output (outputs: {[o['name'] for o in outputs]})")
    return {
        "format_version": FORMAT_VERSION,
        "version": version,
        "family": model_spec.get("family"),
        "model_line": model_line,
        "feature_code_version": feature_code_version,
        "inputs": inputs,
        "output": next(o for o in outputs if o["name"] == expected),
        "label": model_spec.get("label"),
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


def render_model_card(features: dict[str, Any], metrics: dict[str, Any], lineage: dict[str, Any],
                      dataset: dict[str, Any]) -> str:
    """``model_card.md``: intended use, data (with the training span), metrics overall and by slice, cost,
    limitations; the task's own words come from the dataset spec."""
    m, lin = _jsonable(metrics), _jsonable(lineage)
    card = dataset.get("card", {})
    version, line = features.get("version"), features.get("model_line")
    overall = m.get("overall") or {}
    slices = [s for s in m.get("slices") or [] if isinstance(s, dict)]
    flagged = m.get("flagged_slices") or []
    output = (features.get("output") or {}).get("name")
    span = lin.get("date_span") or ["?", "?"]
    lines = [f"# Model card: {line} {version}", "", f"Task: {dataset.get('task', '')}", ""]
    lines += ["## Intended use", "", f"Estimates `{output}`: {dataset.get('label', {}).get('positive', '')}. "
              f"{card.get('intended_use', '')} Decision threshold {_fmt(features.get('threshold'))} (best F1 on the "
              "validation days).", "", f"Not for: {card.get('not_for', '')}", ""]
    lines += ["## Model", "",
              f"- family: {_fmt(features.get('family'))}, model line `{line}`, version {version}",
              f"- feature code: {_fmt(features.get('feature_code_version'))}",
              f"- inputs: {len(features.get('inputs', []))} columns ({', '.join(features.get('categorical', []))} "
              f"categorical; the rest numeric, NaN = missing); output `{output}`", ""]
    lines += ["## Data and lineage", "", f"Trained on {span[0]} .. {span[-1]} "
              f"({_fmt(lin.get('train_rows'))} training rows, {_fmt(lin.get('valid_rows'))} validation rows); "
              f"judged on the holdout day {_fmt(m.get('holdout_day'))}. See data_card.md.", ""]
    lines += _kv_table({k: v for k, v in lin.items()}, key="item") if lin else ["(no lineage recorded)"]
    lines += ["", "## Metrics (holdout)", ""]
    lines += _kv_table(overall) if overall else ["(no overall metrics recorded)"]
    lines += ["", "## Metrics by slice", ""]
    columns = [c for c in _SLICE_COLUMNS if any(c in s for s in slices)]
    lines += _table(slices, columns) if slices else ["(no slice metrics recorded)"]
    lines += ["", f"Flagged slices (AUC well below overall): {', '.join(flagged) if flagged else 'none'}.", ""]
    cost = dict(m.get("latency") or {})
    if "size_bytes" in m:
        cost["size_bytes"] = m["size_bytes"]
    lines += ["## Cost", ""] + (_kv_table(cost, key="measure") if cost else ["(not measured)"]) + [""]
    lines += ["## Limitations", ""] + [f"- {x}" for x in card.get("limitations", [])]
    lines += ["- Metrics come from one holdout day; slices with few rows are noisy and are not judged.", ""]
    return "\n".join(lines)


def render_data_card(data: dict[str, Any], dataset: dict[str, Any]) -> str:
    """``data_card.md``: the sources, the span trained on, row counts, the label rate and the known gaps."""
    d = _jsonable(data)
    sources = dataset.get("sources", {})
    lines = [f"# Data card: {dataset.get('title', dataset.get('name'))}", "", "## Sources", ""]
    lines += _table([{"source": name, "role": s.get("role"), "delivered": f"{s.get('delivered', {}).get('day_offset')}"
                      f" day(s) from the event day at {s.get('delivered', {}).get('time')}",
                      "description": s.get("description", "")} for name, s in sources.items()],
                    ["source", "role", "delivered", "description"])
    lines += ["", "## Training data", ""]
    lines += _kv_table({k: v for k, v in d.items() if not isinstance(v, (list, dict))}, key="item")
    if d.get("rows_per_day"):
        lines += ["", "Rows and label rate per day:", ""]
        lines += _table(d["rows_per_day"], ["date", "rows", "labelled", "positive_share", "split"])
    lines += ["", "## Known gaps", ""]
    gaps = d.get("gaps") or []
    lines += [f"- {g}" for g in gaps] if gaps else ["- none in the window"]
    return "\n".join(lines) + "\n"


def manifest_bytes(files: dict[str, bytes]) -> bytes:
    """``<sha256>  <name>`` per file, sorted by name (the ``sha256sum`` format)."""
    return "".join(f"{bytes_hash(files[name])}  {name}\n" for name in sorted(files)).encode()


def build_bundle_files(version: str, model_line: str, model_bytes: bytes, model_spec: dict[str, Any] | bytes | str,
                       metrics: dict[str, Any], lineage: dict[str, Any], dataset: dict[str, Any],
                       data: dict[str, Any], feature_code_version: str) -> dict[str, bytes]:
    """Every bundle file, MANIFEST included, in memory (validated: the model loads in onnxruntime).

    ``dataset`` is the dataset spec as JSON: the bundle carries the feature definitions its model was trained
    with, so a server builds the very same features; ``data`` describes the training data (the data card)."""
    parse_version(version)
    spec = json.loads(model_spec) if isinstance(model_spec, (bytes, str)) else dict(model_spec)
    features = features_spec(model_bytes, spec, version, model_line, feature_code_version)
    files = {
        MODEL_FILE: bytes(model_bytes),
        FEATURES_FILE: _json_bytes(features),
        METRICS_FILE: _json_bytes(metrics),
        LINEAGE_FILE: _json_bytes(lineage),
        DATASET_FILE: _json_bytes(dataset),
        CARD_FILE: render_model_card(features, metrics, lineage, dataset).encode(),
        DATA_CARD_FILE: render_data_card(data, dataset).encode(),
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


def write_bundle(root: UPath | str | os.PathLike, files: dict[str, bytes]) -> UPath:
    """Write the bundle ``files`` (``build_bundle_files``) to ``<root>/bundles/<model line>/<version>/``
    atomically and return its path.

    Idempotent for identical content; a different bundle under an existing version raises ``BundleExistsError``.
    """
    features = json.loads(files[FEATURES_FILE])
    target = bundle_path(root, features["model_line"], features["version"])
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
    """Every file of the folder; symlinks (a file or the folder itself) are refused, never followed."""
    if is_local(folder) and os.path.islink(os.fspath(folder)):
        raise BundleIntegrityError(f"{folder} is a symlink: bundles are never read through links", path=str(folder))
    if not folder.exists() or not folder.is_dir():
        raise BundleIntegrityError(f"no bundle at {folder}", path=str(folder))
    files = {}
    for entry in folder.iterdir():
        if is_local(entry) and os.path.islink(os.fspath(entry)):
            raise BundleIntegrityError(f"{folder}/{entry.name} is a symlink: bundle files are never followed "
                                       "through links", path=str(folder), file=entry.name)
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
    dataset: dict[str, Any] = field(repr=False)
    model_card: str = field(repr=False)
    manifest: dict[str, str] = field(repr=False)

    @property
    def output(self) -> str:
        return self.features["output"]["name"]

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
        """The probability (float64 copy of the float32 output) for every row of a feature frame."""
        if frame.height == 0:
            return np.zeros(0, dtype=np.float64)
        (p,) = (session or self.session()).run([self.output], self.feed(frame))
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
        dataset = json.loads(present[DATASET_FILE])
        card = present[CARD_FILE].decode("utf-8")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleIntegrityError(f"{where}: unreadable bundle file ({exc})", path=where) from exc
    if features.get("format_version") != FORMAT_VERSION:
        raise BundleIntegrityError(f"{where}/{FEATURES_FILE}: unsupported format_version "
                                   f"{features.get('format_version')!r} (expected {FORMAT_VERSION})",
                                   path=where, file=FEATURES_FILE)
    return Bundle(path=where, version=str(features["version"]), model_bytes=present[MODEL_FILE], features=features,
                  metrics=metrics, lineage=lineage, dataset=dataset, model_card=card, manifest=manifest)


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


class LoadedBundles:
    """Bundles (and their ONNX sessions) loaded once for a range step, the ``keep`` most recently used kept.

    A champion serves many days in a row and a decision compares a few recent champions; a year has hundreds of
    versions, each a session of several MiB, so none is kept once out of use (seen: 3 GiB at a year's end)."""

    def __init__(self, root: UPath | str | os.PathLike, keep: int = 32):
        self.root, self.keep = root, keep
        self._loaded: OrderedDict[tuple[str, str], tuple[Bundle, Any]] = OrderedDict()

    def get(self, pointer: dict) -> tuple[Bundle, Any]:
        """(bundle, session) of a champion pointer; the path is rebuilt from the pointer, never stored."""
        key = (pointer["model_line"], pointer["version"])
        if key in self._loaded:
            self._loaded.move_to_end(key)
        else:
            bundle = load_bundle(bundle_path(self.root, *key))  # MANIFEST verified: a tampered bundle never scores
            self._loaded[key] = (bundle, bundle.session())
            while len(self._loaded) > self.keep:
                self._loaded.popitem(last=False)
        return self._loaded[key]

    def scores(self, pointer: dict, rows: pl.DataFrame) -> np.ndarray:
        bundle, session = self.get(pointer)
        return bundle.score(rows, session)


__all__ = [
    "BUNDLE_FILES", "Bundle", "BundleExistsError", "BundleIntegrityError", "LoadedBundles", "MANIFEST_FILE",
    "build_bundle_files",
    "bundle_path", "features_spec", "list_bundles", "load_bundle", "manifest_bytes", "parse_manifest",
    "render_model_card", "verify_files", "write_bundle",
]
