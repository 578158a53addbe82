"""Partition keys are dates; validate them before they become paths."""
from __future__ import annotations

import datetime as dt
import re

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
FIRST_DAY = dt.date(2013, 1, 1)


class InvalidPartitionKey(ValueError):
    pass


def parse_day(key: str) -> dt.date:
    """Parse a ``YYYY-MM-DD`` key; anything else (``..``, slashes, bad dates) is refused."""
    if not isinstance(key, str) or not _DATE.match(key):
        raise InvalidPartitionKey(f"partition key {key!r} is not a date of the form YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(key)
    except ValueError as exc:
        raise InvalidPartitionKey(f"partition key {key!r} is not a valid date: {exc}") from None


def day_range(start: dt.date, end: dt.date) -> list[dt.date]:
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
