"""What the daily backstop asks for: landed days the pipeline missed, and the newest day's model chain.

Pure decisions over plain values; the schedule (``defs/automation/schedules.py``) gathers them from the landing
zone and the Dagster instance.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ml_assets.core.dates import FIRST_DAY


@dataclass(frozen=True)
class DayState:
    day: str
    landed: Mapping[str, str]            # source -> newest landed file
    read: Mapping[str, str | None]       # source -> landing file the raw asset last stored (None: never)
    materialized: frozenset[str]         # the day's assets that have a materialization
    blocked_by: Sequence[str] = ()       # failed blocking checks of the raw assets on the current delivery
    in_progress: bool = False            # a run for this day is queued or running


@dataclass(frozen=True)
class Request:
    day: str
    assets: list[str]
    reason: str


@dataclass
class Plan:
    requests: list[Request] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def plan_backstop(days: Sequence[DayState], day_assets: Sequence[str], chain: Sequence[str],
                  limit: int = 31) -> Plan:
    """Oldest first: a day whose newest delivery was never stored gets its whole data layer; a day whose data
    layer is incomplete gets the missing assets, unless a blocking check refused the delivery (that needs a
    corrected file, not a retry). Then the newest landed day gets the missing assets of ``chain`` (the model
    layer through the bundle), once its data layer is complete and nothing else runs for it."""
    plan = Plan()
    data_requested = set()
    for state in sorted(days, key=lambda s: s.day):
        if state.in_progress:
            plan.skipped[state.day] = "a run for this day is queued or in progress"
            continue
        new = [s for s in sorted(state.landed) if state.read.get(s) != state.landed[s]]
        missing = [a for a in day_assets if a not in state.materialized]
        if new:
            never = all(state.read.get(s) is None for s in new)
            reason = "landed, never processed" if never else f"new delivery of {', '.join(new)}"
            request = Request(state.day, list(day_assets), reason)
        elif missing and state.blocked_by:
            plan.skipped[state.day] = (f"delivery refused by {', '.join(state.blocked_by)}: waiting for a "
                                       f"corrected file (ml-assets land --force)")
            continue
        elif missing:
            request = Request(state.day, missing, f"incomplete: {', '.join(missing)} missing")
        else:
            continue
        if len(plan.requests) >= limit:
            plan.skipped[state.day] = f"deferred to the next run (at most {limit} days per run)"
        else:
            plan.requests.append(request)
        data_requested.add(state.day)

    if not days or not chain:
        return plan
    newest = max(days, key=lambda s: s.day)
    todo = [a for a in chain if a not in newest.materialized]
    if (newest.day > FIRST_DAY.isoformat()  # the first day has no history: no model is made for it
            and newest.day not in data_requested and not newest.in_progress and not newest.blocked_by
            and set(day_assets) <= newest.materialized):
        if todo:
            plan.requests.append(Request(newest.day, todo, f"model chain incomplete for the newest day: "
                                                           f"{', '.join(todo)} missing"))
    return plan
