"""What an online request is scored with: the same ``build_features`` as the batch path, over the same context.

For a request whose event day D is stored under the root, the feature rows are built exactly as the ``features``
asset builds D's rows, from:

- D's stored events (``assets/<dataset>/raw_<events source>/<D>.parquet``) with the request rows put in (a stored
  row with the same source key is replaced), so registered feature functions that look at the whole day see it;
- D's stored context sources (``raw_<source>/<D>.parquet`` for every source of role ``context``);
- the reference tables (``assets/<dataset>/<name>.parquet``);
- the delay history as of D-1-lag (``assets/<dataset>/delay_history/<D-1-lag>.parquet``).

A file stored as refused (parquet key-value metadata ``ml_assets.refused``) counts as absent. A nested object
of a request replaces the joined row of its source for that request's join key. With nothing stored for D (a
standalone bundle) the request rows alone are used: missing context gives null features, as the models expect.

Requests of one batch never see each other's replacements: a batch is split into groups in which no two rows
share an event key or disagree about a replaced context row (usually one group per day).
"""
from __future__ import annotations

import datetime as dt
import io
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from upath import UPath

from ml_assets.core.features import build_features, with_date
from ml_assets.core.spec import DatasetSpec, outcome_lag_days

# resources.storage.REFUSED_KEY: that module imports dagster, which the server never does.
REFUSED_KEY = "ml_assets.refused"
HISTORY_ASSET = "delay_history"
MAX_BUILDS = 32
log = logging.getLogger("ml_assets.serving")
_TYPES = {"int64": pl.Int64, "float64": pl.Float64, "string": pl.String, "bool": pl.Boolean}


# ---------------------------------------------------------------------------------------------- storage


def assets_folder(root: UPath, spec: DatasetSpec) -> UPath:
    return root / "assets" / spec.name


def daily_path(root: UPath, spec: DatasetSpec, asset: str, day: dt.date) -> UPath:
    return assets_folder(root, spec) / asset / f"{day.isoformat()}.parquet"


def reference_path(root: UPath, spec: DatasetSpec, name: str) -> UPath:
    return assets_folder(root, spec) / f"{name}.parquet"


def read_stored(path: UPath) -> pl.DataFrame | None:
    """A stored frame; None when it is absent, stored as refused, or unreadable (logged)."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    try:
        if pl.read_parquet_metadata(io.BytesIO(data)).get(REFUSED_KEY):
            return None
        return pl.read_parquet(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - a broken file is absent context, never a failed request
        log.warning("stored context %s is unreadable (%s): treated as absent", path, exc)
        return None


def history_as_of(spec: DatasetSpec, day: dt.date) -> dt.date | None:
    """The delay history a row of ``day`` sees: as of D-1-lag (None before the feed's first day)."""
    as_of = day - dt.timedelta(days=1 + outcome_lag_days(spec))
    return None if as_of < spec.first_day else as_of


@dataclass(frozen=True)
class DayContext:
    """What is stored for one event day (each part None/absent when not stored)."""

    day: dt.date
    events: pl.DataFrame | None = None
    sources: Mapping[str, pl.DataFrame] = field(default_factory=dict)  # context sources of the day + references
    history: pl.DataFrame | None = None

    @property
    def standalone(self) -> bool:
        """Nothing stored at all (a standalone bundle): the request alone is used."""
        return self.events is None and not self.sources and self.history is None

    def has_day_data(self, spec: DatasetSpec) -> bool:
        """Anything stored for this very day (events, a context source, the history), references aside."""
        return (self.events is not None or self.history is not None
                or any(name in spec.sources for name in self.sources))


def load_references(root: UPath, spec: DatasetSpec) -> dict[str, pl.DataFrame]:
    out = {}
    for name in spec.reference:
        frame = read_stored(reference_path(root, spec, name))
        if frame is not None:
            out[name] = frame
    return out


def load_day_context(root: UPath, spec: DatasetSpec, day: dt.date,
                     references: Mapping[str, pl.DataFrame] | None = None) -> DayContext:
    """Everything stored for ``day`` that its feature rows are built from (see the module doc)."""
    events = read_stored(daily_path(root, spec, f"raw_{spec.events_name}", day))
    sources = {}
    for name, source in spec.sources.items():
        if source.role == "context":
            frame = read_stored(daily_path(root, spec, f"raw_{name}", day))
            if frame is not None:
                sources[name] = frame
    sources.update(load_references(root, spec) if references is None else references)
    history = None
    if spec.history is not None:
        as_of = history_as_of(spec, day)
        history = read_stored(daily_path(root, spec, HISTORY_ASSET, as_of)) if as_of is not None else None
    return DayContext(day=day, events=events, sources=sources, history=history)


class ContextCache:
    """``load_day_context`` with a short memory: a day's files are read at most once per ``ttl_seconds``."""

    def __init__(self, root: UPath, spec: DatasetSpec, ttl_seconds: float = 5.0, max_days: int = 16,
                 monotonic: Callable[[], float] = time.monotonic):
        self.root, self.spec, self.ttl, self.max_days, self._now = root, spec, ttl_seconds, max_days, monotonic
        self._days: OrderedDict[dt.date, tuple[float, DayContext]] = OrderedDict()
        self._references: tuple[float, dict[str, pl.DataFrame]] | None = None
        self._lock = threading.Lock()

    def _refs(self, now: float) -> dict[str, pl.DataFrame]:
        cached = self._references
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        refs = load_references(self.root, self.spec)
        self._references = (now, refs)
        return refs

    def __call__(self, day: dt.date) -> DayContext:
        now = self._now()
        with self._lock:
            hit = self._days.get(day)
            if hit is not None and now - hit[0] < self.ttl:
                self._days.move_to_end(day)
                return hit[1]
        context = load_day_context(self.root, self.spec, day, self._refs(now))  # outside the lock: I/O
        with self._lock:
            self._days[day] = (now, context)
            self._days.move_to_end(day)
            while len(self._days) > self.max_days:
                self._days.popitem(last=False)
        return context


# ---------------------------------------------------------------------------------------------- features


def _table(spec: DatasetSpec, name: str):
    return spec.sources.get(name) or spec.reference[name]


def _typed(spec: DatasetSpec, name: str, rows: list[dict[str, Any]]) -> pl.DataFrame:
    columns = _table(spec, name).columns
    schema = {c: _TYPES[col.dtype] for c, col in columns.items()}
    return pl.DataFrame([{c: r.get(c) for c in schema} for r in rows], schema=schema)


def _align(frame: pl.DataFrame, like: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with the columns and dtypes of ``like`` (missing ones null)."""
    return frame.select(pl.col(c).cast(t, strict=False) if c in frame.columns else pl.lit(None, dtype=t).alias(c)
                        for c, t in like.schema.items())


def _replace(stored: pl.DataFrame | None, rows: pl.DataFrame, on: list[str]) -> pl.DataFrame:
    """``stored`` without the rows whose ``on`` columns equal one of ``rows``, then ``rows``."""
    if stored is None:
        return rows
    rows = _align(rows, stored)
    kept = stored.join(rows.select(on), on=on, how="anti", nulls_equal=True)
    return pl.concat([kept, rows], how="vertical")


@dataclass(frozen=True)
class _Row:
    index: int
    event_key: tuple
    feature_key: tuple
    context: dict[tuple[str, tuple], Any]  # (source, join key) -> its replacement (None: the stored row)


def _groups(rows: list[_Row]) -> list[list[_Row]]:
    """Rows split so that within a group no two share an event or a feature key, or disagree about a context row."""
    groups: list[tuple[list[_Row], set, set, dict]] = []
    for row in rows:
        for members, events, features, contexts in groups:
            if row.event_key in events or row.feature_key in features:
                continue
            if any(contexts.get(k, v) != v for k, v in row.context.items()):
                continue
            break
        else:
            members, events, features, contexts = [], set(), set(), {}
            groups.append((members, events, features, contexts))
        members.append(row)
        events.add(row.event_key)
        features.add(row.feature_key)
        contexts.update(row.context)
    return [g[0] for g in groups]


def _frozen(value: Any) -> Any:
    return None if value is None else tuple(sorted(value.items()))


class BatchTooVaried(ValueError):
    """A batch that would need more than ``max_builds`` feature builds (many days, or many records disagreeing
    about the same event or context row): the client splits it."""


def online_features(spec: DatasetSpec, events: pl.DataFrame,
                    nested: Mapping[str, Sequence[dict[str, Any] | None]],
                    context: Callable[[dt.date], DayContext], max_builds: int = MAX_BUILDS) -> pl.DataFrame:
    """One feature row per request row, in request order, through ``build_features``.

    ``events``: the request rows with every events-source column; ``nested``: source -> per row the values
    replacing that source's joined row (None: keep the stored row); ``context``: day -> ``DayContext``.
    Identical records are built once. Days with nothing stored share one build (feature functions treat each
    date on its own). Raises ``BatchTooVaried`` above ``max_builds`` builds.
    """
    if events.is_empty():
        raise ValueError("no request rows")
    event_key = spec.events_source.key
    feature_key = spec.features.key
    dated = with_date(spec, events).collect()
    missing = [c for c in feature_key if c not in dated.columns]
    if missing:
        raise ValueError(f"features.key columns {missing} are not event columns: cannot match rows to requests")
    joins = {source: next(j for j in spec.joins if j.source == source) for source in nested}
    join_keys = {source: dated.select(pl.sql_expr(e).alias(c) for c, e in join.keys.items()).rows()
                 for source, join in joins.items()}
    frozen = {source: [_frozen(v) for v in values] for source, values in nested.items()}
    event_rows, feature_rows, whole = (dated.select(event_key).rows(), dated.select(feature_key).rows(),
                                       events.rows())
    unique: dict[tuple, int] = {}
    first = []  # per row: the index of its first identical row
    rows = []
    for i in range(dated.height):
        signature = (whole[i], tuple(frozen[s][i] for s in frozen))
        j = unique.setdefault(signature, i)
        first.append(j)
        if j == i:
            rows.append(_Row(i, event_rows[i], feature_rows[i],
                             {(s, join_keys[s][i]): frozen[s][i] for s in frozen}))
    days = dated["date"].to_list()
    by_day: dict[dt.date, list[_Row]] = {}
    for row in rows:
        by_day.setdefault(days[row.index], []).append(row)
    builds: list[tuple[DayContext, list[_Row]]] = []
    dayless: list[_Row] = []
    shared: DayContext | None = None
    for day, day_rows in by_day.items():
        stored = context(day)
        if not stored.has_day_data(spec):
            dayless += day_rows  # nothing of the day stored (feature functions keep days apart): one build
            shared = stored  # the reference tables only
            continue
        builds += [(stored, group) for group in _groups(day_rows)]
    builds += [(shared, group) for group in _groups(dayless)] if dayless else []
    if len(builds) > max_builds:
        raise BatchTooVaried(f"this batch needs {len(builds)} separate feature builds (at most {max_builds}): "
                             "it spans many days or repeats events/context rows with different values; split it")
    parts, order = [], []
    for stored, group in builds:
        idx = [r.index for r in group]
        parts.append(_group_features(spec, stored, events[idx], dated[idx],
                                     {s: [v[i] for i in idx] for s, v in nested.items()},
                                     {s: pl.DataFrame([k[i] for i in idx], schema=list(joins[s].keys),
                                                      orient="row") for s, k in join_keys.items()}))
        order += idx
    frame = pl.concat(parts, how="vertical") if len(parts) > 1 else parts[0]
    position = {original: at for at, original in enumerate(order)}
    wanted = [position[first[i]] for i in range(dated.height)]
    if wanted != list(range(frame.height)):
        frame = frame.select(pl.all().gather(wanted))
    return frame


def _group_features(spec: DatasetSpec, stored: DayContext, events: pl.DataFrame, dated: pl.DataFrame,
                    nested: Mapping[str, list[dict[str, Any] | None]], join_keys: Mapping[str, pl.DataFrame]
                    ) -> pl.DataFrame:
    sources: dict[str, pl.DataFrame] = {
        spec.events_name: _replace(stored.events, events, spec.events_source.key)}
    for name, frame in stored.sources.items():
        if name in spec.sources or name in spec.reference:
            sources[name] = frame
    for source, values in nested.items():
        keys = join_keys[source]
        replacement = [{**dict(zip(keys.columns, keys.row(i))), **v} for i, v in enumerate(values) if v is not None]
        if replacement:
            rows = _typed(spec, source, replacement)
            sources[source] = _replace(sources.get(source), rows, list(keys.columns))
    features = build_features(spec, sources, stored.history)
    key = spec.features.key
    wanted = dated.select(key).with_columns(pl.col(c).cast(features.schema[c]) for c in key)
    # request rows come last in the events: on a duplicated feature key (never in valid data) theirs wins
    features = features.unique(subset=key, keep="last", maintain_order=True)
    out = wanted.join(features, on=key, how="left", maintain_order="left", nulls_equal=True)
    return out.select(features.columns)
