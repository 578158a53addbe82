"""The champion, day by day: which bundle serves after day D's decision, and what led there.

Each day's champion state (a JSON record, the ``champion`` asset's value for that day) is derived from the
previous day's state and the day's decision, so the history is a chain of materializations, not a file edited
in place. The state holds:

- ``champion``: the pointer to the serving bundle (model line, version, bundle folder, family, training span);
- ``history``: the promotions and rollbacks so far (newest last, the latest ``HISTORY_LIMIT``), each with the
  champion it replaced (``parent``), so rolling back twice walks back two promotions;
- ``evidence``: per family, the per-day paired AUC deltas against the champion in effect (the track record the
  promotion gate pools);
- ``served``: the champions in effect over the recent days (the reference set against the ratchet).
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from ml_assets.core.semver import parse_version

HISTORY_LIMIT = 50
EVIDENCE_LIMIT = 30
POINTER_KEYS = ("model_line", "version", "bundle", "family", "day", "trained_through")


class RollbackError(ValueError):
    pass


def empty_state() -> dict[str, Any]:
    return {"day": None, "champion": None, "action": "none", "reason": "no champion yet", "since": None,
            "history": [], "evidence": {}, "served": []}


def pointer(bundle: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if bundle is None else {k: bundle.get(k) for k in POINTER_KEYS}


def name(p: dict[str, Any] | None) -> str:
    return "none" if p is None else f"{p['model_line']} {p['version']}"


def _served(previous: list[dict[str, Any]], champion: dict[str, Any] | None, day: str,
            keep_days: int) -> list[dict[str, Any]]:
    """Distinct champions in effect within the last ``keep_days`` days, newest use last."""
    cutoff = (dt.date.fromisoformat(day) - dt.timedelta(days=keep_days)).isoformat()
    entries = [s for s in previous if s["last_day"] >= cutoff]
    if champion is not None:
        entries = [s for s in entries if (s["model_line"], s["version"]) != (champion["model_line"], champion["version"])]
        entries.append({**pointer(champion), "last_day": day})
    return entries


def next_state(previous: dict[str, Any], day: str, *, action: str, reason: str, champion: dict[str, Any] | None = None,
               evidence: dict[str, dict[str, float]] | None = None, decision: list[dict[str, Any]] | None = None,
               parent: dict[str, Any] | None = None, keep_days: int = 14) -> dict[str, Any]:
    """The state after ``day``: ``action`` is promote, rollback, keep or none; ``champion`` the new one for
    promote/rollback."""
    state = {**previous, "day": day, "action": action, "reason": reason, "decision": decision or []}
    history = list(previous["history"])
    if action in ("promote", "rollback"):
        current = previous["champion"]
        history.append({"day": day, "action": action, **pointer(champion), "reason": reason,
                        "parent": pointer(parent if action == "rollback" else current)})
        state.update(champion=pointer(champion), since=day)
    state["history"] = history[-HISTORY_LIMIT:]
    merged = {f: list(v) for f, v in previous["evidence"].items()}
    for family, record in (evidence or {}).items():
        merged.setdefault(family, []).append({"day": day, **record})
        merged[family] = merged[family][-EVIDENCE_LIMIT:]
    state["evidence"] = merged
    state["served"] = _served(previous["served"], state["champion"], day, keep_days)
    return state


def rollback_target(state: dict[str, Any], line: str | None = None, version: str | None = None
                    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the pointer to return to, the champion that target originally replaced)."""
    current = state["champion"]
    if current is None:
        raise RollbackError("no champion yet: nothing to roll back")
    events = state["history"]
    if version is None:
        last = next((e for e in reversed(events) if (e["model_line"], e["version"]) ==
                     (current["model_line"], current["version"])), None)
        if last is None or last["parent"] is None:
            raise RollbackError(f"champion {name(current)} is the first one: there is no previous champion to "
                                "roll back to")
        target = last["parent"]
    else:
        parse_version(version)
        matches = [e for e in events if e["version"] == version and (line is None or e["model_line"] == line)]
        if not matches:
            known = sorted({f"{e['model_line']} {e['version']}" for e in events})
            raise RollbackError(f"version {version} was never champion (champions so far: {', '.join(known)})")
        if len({e["model_line"] for e in matches}) > 1:
            raise RollbackError(f"version {version} exists in several model lines: name one with --line")
        target = pointer(matches[-1])
    original = next((e for e in events if (e["model_line"], e["version"]) ==
                     (target["model_line"], target["version"]) and e["action"] == "promote"), None)
    return target, original["parent"] if original else None


def freshness_lag(state: dict[str, Any], day: str) -> int | None:
    """Days between the newest possible training data for ``day``'s decision and the champion's (0: fresh)."""
    champion = state.get("champion")
    if champion is None or not champion.get("trained_through"):
        return None
    newest_possible = dt.date.fromisoformat(day) - dt.timedelta(days=1)
    return (newest_possible - dt.date.fromisoformat(champion["trained_through"])).days
