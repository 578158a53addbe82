"""How far behind the data the production model is, measured in data days (not wall-clock time).

The replay lands 2013 days in 2026, so "how old is the champion" in hours says nothing about whether it has
seen the newest data. What matters: every landed day produces a candidate (trained on the days before it,
judged on that day) and the champion decision must have considered it. ``assess`` compares the newest day
whose files have fully landed with the newest day the champion decision has taken into account.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from ml_assets.core.dates import FIRST_DAY

MAX_LAG_DAYS = 1


@dataclass(frozen=True)
class Freshness:
    passed: bool
    reason: str
    newest_landed: dt.date | None
    considered_through: dt.date | None
    required: dt.date | None  # the oldest acceptable ``considered_through``

    @property
    def lag_days(self) -> int | None:
        if self.newest_landed is None or self.considered_through is None:
            return None
        return (self.newest_landed - self.considered_through).days


def newest_complete_day(flights: Iterable[dt.date], weather: Iterable[dt.date]) -> dt.date | None:
    """The newest day whose flights and weather have both landed (what the landing sensor starts)."""
    both = set(flights) & set(weather)
    return max(both) if both else None


def assess(newest_landed: dt.date | None, considered_through: dt.date | None,
           max_lag_days: int = MAX_LAG_DAYS, first_day: dt.date = FIRST_DAY) -> Freshness:
    """Is the champion decision at most ``max_lag_days`` data days behind the newest landed day?

    The first day has no history to train on, so the first possible candidate is for ``first_day + 1``:
    the requirement never asks for a day before it.
    """
    if newest_landed is None:
        return Freshness(True, "nothing has landed yet", None, considered_through, None)
    first_candidate = first_day + dt.timedelta(days=1)
    if newest_landed < first_candidate:
        return Freshness(True, f"only {newest_landed} has landed: no history to train a model on yet",
                         newest_landed, considered_through, None)
    required = max(newest_landed - dt.timedelta(days=max_lag_days), first_candidate)
    if considered_through is None:
        return Freshness(False, f"no candidate has been considered for the champion while days up to "
                                f"{newest_landed} have landed", newest_landed, None, required)
    if considered_through >= required:
        lag = (newest_landed - considered_through).days
        return Freshness(True, f"the champion decision has considered data through {considered_through}, "
                               f"{lag} day(s) behind the newest landed day {newest_landed} (allowed: {max_lag_days})",
                         newest_landed, considered_through, required)
    return Freshness(False, f"stale: the champion decision has considered data only through {considered_through}, "
                            f"{(newest_landed - considered_through).days} day(s) behind the newest landed day "
                            f"{newest_landed} (allowed: {max_lag_days})", newest_landed, considered_through, required)
