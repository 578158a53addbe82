"""What the daily backstop asks for: asset-days the sensors and automation should have produced but did not.

Pure decisions over plain values; the schedule (``defs/automation/schedules.py``) gathers them from the asset graph
and the instance. An asset-day is due when it was never materialized and every parent day it reads is either
materialized or due itself on the same day (the day's run executes them in order). Refused days need no special
case: a refused day is materialized (as refused), and so are its consumers.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

AssetDay = tuple[str, str | None]


@dataclass(frozen=True)
class Request:
    day: str
    assets: list[str]


@dataclass
class Plan:
    requests: list[Request] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def plan_missing(days: Sequence[str], order: Sequence[str], parents: Callable[[str, str], Iterable[AssetDay]],
                 materialized: set[AssetDay], in_progress: set[str], limit: int = 31) -> Plan:
    """Oldest day first, at most ``limit`` days: the due assets of each day, in the graph's order."""
    plan = Plan()
    for day in sorted(days):
        if day in in_progress:
            plan.skipped[day] = "a run for this day is queued or in progress"
            continue
        due: list[str] = []
        for asset in order:
            if (asset, day) in materialized:
                continue
            ready = all(p in materialized or (p[1] == day and p[0] in due) for p in parents(asset, day))
            if ready:
                due.append(asset)
        if not due:
            continue
        if len(plan.requests) >= limit:
            plan.skipped[day] = f"deferred to the next run (at most {limit} days per run)"
            continue
        plan.requests.append(Request(day, due))
    return plan
