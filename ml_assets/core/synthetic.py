"""Synthetic landing data for a dataset spec, at any volume: one day of N events with their outcomes, the day's
context sources and the reference tables, with exactly the spec's landing columns (``schemas.source_schema``).

Generic over the spec and pure polars/numpy: the profile (``fit_profile``) is the spec's own replay data
(``landing.source_tables``), and a synthetic day resamples it, seeded, so every value is a plausible one and the
columns of a row stay consistent with each other (a flight's route, distance, scheduled times and tail number;
an hour's temperature and dew point):

- events: rows of the real events of the same month (the spec's second date part), drawn with replacement,
  with the date parts set to the day. The key stays unique: a drawn row whose key was already drawn gets a
  fresh value of one key column (the "free" column: the integer key column, outside the date parts, with the
  most distinct values; for the flights the flight number), numbered from above the largest real value and
  within the column's declared ``le``. When the key space has no room (e.g. the rain spec, keyed by airport
  and hour: 72 keys a day), keys repeat, and the feature path keeps the first row of each key;
- outcomes: each event row's real outcome (the outcome columns of the same real event), under its new key. They
  are not conditioned on the day's context (a rainy template day does not make the flights later), so they
  give plausible label rates, not a test of a model;
- context sources: a real day of the same month, seeded, with its date parts set to the day (so the joins of
  the spec find them: every scheduled hour has its weather when the template day has it);
- reference tables: the real tables (the drawn events refer to them).

The events are planned for the whole day at once (row indices and free values: two int64 arrays of N), then
materialized in chunks, so that 10M rows never exist as one frame and the rows do not depend on the chunk size.
Determinism: the same spec, day, N and seed give the same rows.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl

from ml_assets.core.schemas import _DTYPES
from ml_assets.core.spec import DatasetSpec

DEFAULT_CHUNK_ROWS = 500_000
OUTCOME_PREFIX = "__outcome_"
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class Profile:
    """What a synthetic day is drawn from; ``fit_profile`` builds it from the spec's replay tables."""

    spec: DatasetSpec
    events: pl.DataFrame                 # real event rows (the events source's columns) + their outcome columns
    context: dict[str, pl.DataFrame]     # real rows per context source
    reference: dict[str, pl.DataFrame]   # the real reference tables
    free: str | None                     # the key column renumbered to keep keys unique (None: keys may repeat)
    free_start: int                      # the first fresh value (above every real value)
    free_limit: int                      # the last allowed value (the column's ``le``)

    @property
    def key_room(self) -> int:
        """Fresh values of the free key column per combination of the other key columns (0: keys repeat as soon
        as a drawn row's key was already drawn)."""
        return 0 if self.free is None else max(0, self.free_limit - self.free_start + 1)


def _typed(frame: pl.DataFrame, columns: dict) -> pl.DataFrame:
    """The declared columns, in the declared order, with the declared dtypes."""
    return frame.select(pl.col(name).cast(_DTYPES[c.dtype]) for name, c in columns.items())


def _free_column(spec: DatasetSpec, events: pl.DataFrame) -> str | None:
    source = spec.events_source
    parts = set(spec.replay.date_parts)
    candidates = [k for k in source.key if k not in parts and source.columns[k].dtype == "int64"]
    if not candidates:
        return None
    return max(candidates, key=lambda k: (events[k].n_unique(), -candidates.index(k)))


def fit_profile(spec: DatasetSpec, tables: dict[str, pl.DataFrame] | None = None) -> Profile:
    """The profile of ``spec`` from its replay tables (``landing.source_tables(spec)`` unless given)."""
    if tables is None:
        from ml_assets.core.landing import source_tables

        tables = source_tables(spec)
    parts = list(spec.replay.date_parts)
    ev, out = spec.events_source, spec.outcomes_source
    events = _typed(tables[ev.table], ev.columns).unique(ev.key, keep="first", maintain_order=True)
    outcome_key = list(dict.fromkeys([*out.key, *(p for p in parts if p in ev.columns and p in out.columns)]))
    outcomes = (_typed(tables[out.table], out.columns).unique(outcome_key, keep="first", maintain_order=True)
                .select(*outcome_key, *(pl.col(c).alias(OUTCOME_PREFIX + c) for c in spec.outcome_columns)))
    events = events.join(outcomes, on=outcome_key, how="left", maintain_order="left", nulls_equal=True)
    context = {name: _typed(tables[s.table], s.columns) for name, s in spec.sources.items() if s.role == "context"}
    reference = {name: _typed(tables[r.table], r.columns) for name, r in spec.reference.items()}
    free = _free_column(spec, events)
    start, limit = 0, -1
    if free is not None:
        column = ev.columns[free]
        start = int(events[free].max()) + 1
        limit = int(column.le) if column.le is not None else _INT64_MAX
    return Profile(spec, events, context, reference, free, start, limit)


def _month_filter(spec: DatasetSpec, day: dt.date) -> pl.Expr:
    return pl.col(spec.replay.date_parts[1]) == day.month


def _with_day(spec: DatasetSpec, frame: pl.DataFrame, day: dt.date) -> pl.DataFrame:
    values = dict(zip(spec.replay.date_parts, (day.year, day.month, day.day)))
    return frame.with_columns(pl.lit(v, pl.Int64).alias(c) for c, v in values.items() if c in frame.columns)


def _template(profile: Profile, day: dt.date) -> pl.DataFrame:
    month = profile.events.filter(_month_filter(profile.spec, day))
    return month if month.height else profile.events


@dataclass(frozen=True)
class _Plan:
    template: pl.DataFrame
    rows: np.ndarray          # [N] template row of each synthetic row
    free: np.ndarray | None   # [N] the free key column's value of each synthetic row


def _plan(profile: Profile, day: dt.date, rows: int, seed: int) -> _Plan:
    spec = profile.spec
    template = _template(profile, day)
    rng = np.random.default_rng([seed, day.toordinal()])
    drawn = rng.integers(0, template.height, size=rows)
    if profile.free is None:
        return _Plan(template, drawn, None)
    parts = set(spec.replay.date_parts)
    others = [k for k in spec.events_source.key if k not in parts and k != profile.free]
    groups = template.select(others).unique(maintain_order=True).with_row_index("__group")
    group = (template.select(others).join(groups, on=others, how="left", maintain_order="left", nulls_equal=True)
             ["__group"].to_numpy())
    keys = pl.DataFrame({"g": group[drawn], "v": template[profile.free].to_numpy()[drawn]})
    repeat = ~pl.struct("g", "v").is_first_distinct()
    fresh = profile.free_start + repeat.cast(pl.Int64).cum_sum().over("g") - 1
    # A repeated key gets the next fresh value of its group, while the column's range has room; else it repeats.
    free = keys.select(pl.when(repeat & (fresh <= profile.free_limit)).then(fresh).otherwise(pl.col("v")))
    return _Plan(template, drawn, free.to_series().to_numpy())


def _materialize(profile: Profile, plan: _Plan, day: dt.date, start: int, stop: int) -> dict[str, pl.DataFrame]:
    spec = profile.spec
    rows = plan.template[plan.rows[start:stop]]
    if plan.free is not None:
        rows = rows.with_columns(pl.Series(profile.free, plan.free[start:stop], dtype=pl.Int64))
    rows = _with_day(spec, rows, day)
    ev, out = spec.events_source, spec.outcomes_source
    events = rows.select(list(ev.columns))
    outcomes = rows.select(*(pl.col(k) for k in out.key),
                           *(pl.col(OUTCOME_PREFIX + c).alias(c) for c in spec.outcome_columns))
    return {spec.events_name: events, spec.outcomes_name: outcomes.select(list(out.columns))}


def event_chunks(profile: Profile, day: dt.date, rows: int, seed: int = 0,
                 chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[dict[str, pl.DataFrame]]:
    """The day's ``rows`` events and their outcomes, as {events source: frame, outcomes source: frame} chunks of
    at most ``chunk_rows`` rows (the same rows whatever the chunk size)."""
    if rows < 0 or chunk_rows < 1:
        raise ValueError(f"rows must be >= 0 and chunk_rows >= 1 (got {rows}, {chunk_rows})")
    plan = _plan(profile, day, rows, seed)
    for start in range(0, rows, chunk_rows):
        yield _materialize(profile, plan, day, start, min(rows, start + chunk_rows))


def synthetic_context(profile: Profile, day: dt.date, seed: int = 0) -> dict[str, pl.DataFrame]:
    """Each context source's rows for ``day``: a real day of the same month (seeded), dated ``day``."""
    spec = profile.spec
    y, m, d = spec.replay.date_parts
    out = {}
    for index, (name, real) in enumerate(sorted(profile.context.items())):
        rng = np.random.default_rng([seed, day.toordinal(), 1_000_003 + index])
        days = real.filter(_month_filter(spec, day)).select(y, m, d).unique().sort(y, m, d)
        if days.is_empty():
            days = real.select(y, m, d).unique().sort(y, m, d)
        template = days.row(int(rng.integers(0, days.height)), named=True)
        rows = real.filter((pl.col(y) == template[y]) & (pl.col(m) == template[m]) & (pl.col(d) == template[d]))
        out[name] = _with_day(spec, rows, day)
    return out


def synthetic_day(profile: Profile, day: dt.date, rows: int, seed: int = 0,
                  chunk_rows: int = DEFAULT_CHUNK_ROWS) -> dict[str, pl.DataFrame]:
    """Everything for one day in memory (small N): every source of the spec and every reference table, by name."""
    spec = profile.spec
    plan = _plan(profile, day, rows, seed)
    # range(0, max(rows, 1)): zero rows still give the sources' (empty) frames with their columns.
    chunks = [_materialize(profile, plan, day, start, min(rows, start + chunk_rows))
              for start in range(0, max(rows, 1), chunk_rows)]
    day_frames = {name: pl.concat([c[name] for c in chunks]) for name in (spec.events_name, spec.outcomes_name)}
    return {**day_frames, **synthetic_context(profile, day, seed), **profile.reference}
