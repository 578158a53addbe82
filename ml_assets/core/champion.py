"""Which bundle is in production, and which one was, day by day: the champion history.

``<root>/champion/history.json`` is an append-only list of events, each a full pointer to a bundle
(model line, version, bundle folder, the data day it takes effect). The MLflow registry's ``champion`` alias
mirrors the newest event (what tools look up); this history is what answers the two questions the alias
cannot:

- "which model was the champion the evening before day D?" (``as_of``): batch predictions for D must use
  it, even when D's own promotion is decided later in the same run or in a backfill long after;
- "what do we roll back to?" (``rollback_target``): each event remembers its predecessor (``parent``), so
  rolling back twice walks back two promotions instead of flipping between two versions.

Writes rewrite the whole file atomically (temp + rename, one PUT on S3).
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

from upath import UPath

from ml_assets.core.dates import parse_day
from ml_assets.core.semver import parse_version
from ml_assets.core.storage import atomic_write_bytes

HISTORY_FILE = "champion/history.json"
POINTER_KEYS = ("model_line", "version", "bundle", "day")


class RollbackError(ValueError):
    pass


def history_path(root: UPath) -> UPath:
    return root / HISTORY_FILE


def read_history(root: UPath) -> list[dict[str, Any]]:
    path = history_path(root)
    return json.loads(path.read_bytes()) if path.exists() else []


def _append(root: UPath, event: dict[str, Any]) -> dict[str, Any]:
    events = read_history(root)
    event = {"seq": len(events) + 1, "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **event}
    atomic_write_bytes(history_path(root), json.dumps(events + [event], indent=1).encode())
    return event


def pointer(event: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if event is None else {k: event[k] for k in POINTER_KEYS}


def _latest(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    # By data day first: a backfill that promotes on an older day, recorded later, does not become current.
    return max(events, key=lambda e: (e["day"], e["seq"])) if events else None


def current(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    return _latest(events)


def as_of(events: list[dict[str, Any]], day: dt.date) -> dict[str, Any] | None:
    """The champion in effect the evening of ``day``: the latest event whose data day is on or before it."""
    return _latest([e for e in events if parse_day(e["day"]) <= day])


def promote(root: UPath, model_line: str, version: str, bundle: str, day: dt.date, reason: str) -> dict[str, Any]:
    """Record ``version`` as champion from data day ``day``; its parent is the champion it replaced."""
    parse_version(version)
    parent = pointer(as_of(read_history(root), day))
    return _append(root, {"action": "promote", "model_line": model_line, "version": version, "bundle": bundle,
                          "day": day.isoformat(), "parent": parent, "reason": reason})


def rollback_target(events: list[dict[str, Any]], line: str | None = None,
                    version: str | None = None) -> dict[str, Any]:
    """The pointer to return to: the current champion's predecessor, or a named earlier champion."""
    now = current(events)
    if now is None:
        raise RollbackError("no champion yet: nothing to roll back")
    if version is None:
        if now["parent"] is None:
            raise RollbackError(f"champion {now['model_line']} {now['version']} is the first one: "
                                "there is no previous champion to roll back to")
        return now["parent"]
    parse_version(version)
    matches = [e for e in events if e["version"] == version and (line is None or e["model_line"] == line)]
    if not matches:
        known = sorted({f"{e['model_line']} {e['version']}" for e in events})
        raise RollbackError(f"version {version} was never champion (champions so far: {', '.join(known)})")
    if len({e["model_line"] for e in matches}) > 1:
        raise RollbackError(f"version {version} exists in several model lines: name one with --line")
    return pointer(matches[-1])


def rollback(root: UPath, target: dict[str, Any], day: dt.date, reason: str) -> dict[str, Any]:
    """Record the return to ``target``; its predecessor is the one that target originally replaced."""
    events = read_history(root)
    original = next(e for e in events if (e["model_line"], e["version"]) == (target["model_line"], target["version"]))
    return _append(root, {"action": "rollback", **pointer(target), "day": day.isoformat(),
                          "parent": original["parent"], "reason": reason})
