"""The prediction log: every answer the server gave, under the storage root, keyed by the event's own day.

    predictions/<dataset>/date=<event day>/<UTC timestamp>-<request id>[-<part>].jsonl

One object per request batch, written once (atomically: temp + rename locally, one PUT on S3), never appended
to or rewritten, so concurrent servers never lose lines and a reader never sees half a batch. Each line holds the
event's key and day, the model version that answered, the request's feature row and the probability returned,
and the shadow challenger's version and probability when one is configured. The shadow score is computed off the
response path, so it usually arrives later: the server then writes it as its own object (``part`` ``shadow``),
the same lines with ``shadow`` filled; ``read_day`` merges a request's lines back into one line per event.
``live_performance`` joins the lines of day D with D's outcomes when they land.
"""
from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable
from typing import Any

import polars as pl
from upath import UPath

from ml_assets.core.storage import atomic_write_bytes

LOG_DIR = "predictions"


def day_folder(root: UPath, dataset: str, day: str) -> UPath:
    return root / LOG_DIR / dataset / f"date={day}"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


def write_batch(root: UPath, dataset: str, lines: list[dict[str, Any]], request_id: str, when: dt.datetime,
                part: str = "") -> list[str]:
    """Write one object per event day in the batch; returns the paths written. ``part`` names a later object of
    the same request (e.g. ``shadow``), so it never replaces the first."""
    if part and not part.replace("_", "").isalnum():
        raise ValueError(f"invalid part {part!r}")
    by_day: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        by_day.setdefault(str(line["day"]), []).append({k: _clean(v) if not isinstance(v, dict) else
                                                        {kk: _clean(vv) for kk, vv in v.items()} for k, v in line.items()})
    stamp = when.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    written = []
    for day, rows in sorted(by_day.items()):
        path = day_folder(root, dataset, day) / f"{stamp}-{request_id}{'-' + part if part else ''}.jsonl"
        data = "".join(json.dumps(r, allow_nan=False, separators=(",", ":"), sort_keys=True) + "\n" for r in rows)
        atomic_write_bytes(path, data.encode())
        written.append(str(path))
    return written


def _line_id(line: dict[str, Any]) -> tuple | None:
    request_id = line.get("request_id")
    if request_id is None:
        return None
    return request_id, json.dumps(line.get("key"), sort_keys=True, default=str)


def merge_lines(lines: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per (request, event): a later shadow line of the same request fills the answer's ``shadow``.

    Idempotent; lines without a request id are kept as they are."""
    merged: dict[Any, dict[str, Any]] = {}
    order: list[Any] = []
    for n, line in enumerate(lines):
        ident = _line_id(line) or ("__line", n)
        seen = merged.get(ident)
        if seen is None:
            merged[ident] = dict(line)
            order.append(ident)
        elif line.get("shadow") and not seen.get("shadow"):
            seen["shadow"] = line["shadow"]
    return [merged[i] for i in order]


def read_day(root: UPath, dataset: str, day: str, merge: bool = True) -> list[dict[str, Any]]:
    """The lines logged for events of ``day`` (oldest object first); ``merge``: one line per (request, event)."""
    folder = day_folder(root, dataset, day)
    if not folder.exists():
        return []
    lines = []
    for path in sorted(p for p in folder.iterdir() if p.name.endswith(".jsonl") and not p.name.startswith(".")):
        lines += [json.loads(text) for text in path.read_text().splitlines() if text.strip()]
    return merge_lines(lines) if merge else lines


def as_frame(lines: Iterable[dict[str, Any]], key: list[str], key_types: dict[str, pl.DataType], prediction: str
             ) -> pl.DataFrame:
    """One row per event (its latest answer: what a user last saw): key, prediction, versions, shadow score."""
    lines = merge_lines(lines)
    rows = [{**{k: line["key"].get(k) for k in key}, prediction: line["p"], "model_version": line["model_version"],
             "shadow_version": (line.get("shadow") or {}).get("model_version"),
             "shadow_p": (line.get("shadow") or {}).get("p"), "ts": line["ts"]} for line in lines]
    schema = {**key_types, prediction: pl.Float64, "model_version": pl.String, "shadow_version": pl.String,
              "shadow_p": pl.Float64, "ts": pl.String}
    if not rows:
        return pl.DataFrame(schema=schema)
    frame = pl.DataFrame(rows, schema={**schema, "date": pl.String} if "date" in key_types else schema)
    if "date" in key_types:
        frame = frame.with_columns(pl.col("date").str.to_date())
    return frame.sort("ts", maintain_order=True).unique(key, keep="last", maintain_order=True)


def logged_features(lines: Iterable[dict[str, Any]]) -> pl.DataFrame:
    """The feature rows the server computed for its requests (for the serving-skew check)."""
    rows = [line["features"] for line in merge_lines(lines) if line.get("features")]
    return pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()
