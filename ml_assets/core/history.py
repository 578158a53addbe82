"""Delay history: realized outcome rates per key over trailing windows, as known at prediction time.

``delay_history(spec, events, outcomes, as_of)`` summarizes the labelled events of the days up to ``as_of``
(inclusive) over each window of the spec (e.g. 7 and 28 days): per rate key (route, carrier, ...) the
positive count, the labelled count and a rate shrunk toward the window's overall rate (a key seen in
``prior_weight`` events is pulled halfway). Features of day D join the history as of D-1-lag: the outcomes
that have landed by the evening before D. Training rows get theirs the same way, as of their own day, so a
row never sees its own outcome nor any later one.
"""
from __future__ import annotations

import datetime as dt

import polars as pl

from ml_assets.core.spec import DatasetSpec, history_column

GLOBAL = "__all__"
SCHEMA = {"name": pl.String, "window": pl.Int64, "key": pl.String, "positives": pl.Int64, "count": pl.Int64,
          "rate": pl.Float64, "as_of": pl.Date}


def _key(columns: list[str]) -> pl.Expr:
    return pl.concat_str([pl.col(c).cast(pl.String) for c in columns], separator="|", ignore_nulls=False)


def _with_history_keys(spec: DatasetSpec, rows: pl.LazyFrame) -> pl.LazyFrame:
    rows = rows.with_columns(pl.sql_expr(e).alias(n) for n, e in spec.history.derived.items()
                             if n not in rows.collect_schema().names())
    return rows.with_columns(_key(cols).alias(f"__hkey_{name}") for name, cols in spec.history.keys.items())


def empty_history() -> pl.DataFrame:
    return pl.DataFrame(schema=SCHEMA)


def delay_history(spec: DatasetSpec, labelled_events: pl.DataFrame, as_of: dt.date) -> pl.DataFrame:
    """The rates of ``labelled_events`` (event rows with ``date`` and the label, any days) as of ``as_of``."""
    h = spec.history
    label = spec.label.name
    base = _with_history_keys(spec, labelled_events.lazy()).filter(
        pl.col(label).is_not_null() & (pl.col("date") <= as_of))
    parts = []
    for window in h.windows:
        rows = base.filter(pl.col("date") > as_of - dt.timedelta(days=window))
        y = pl.col(label).cast(pl.Int64)
        overall = rows.select(positives=y.sum(), count=pl.len()).collect()
        positives, count = int(overall["positives"][0] or 0), int(overall["count"][0])
        # No labelled event in the window (e.g. a week of refused outcome days): the rate is unknown (null), not
        # NaN, which would pass for a number downstream and fail the features' [0, 1] range check.
        prior = positives / count if count else None
        parts.append(pl.DataFrame({"name": [GLOBAL], "window": [window], "key": [GLOBAL], "positives": [positives],
                                   "count": [count], "rate": [prior]}, schema_overrides={"rate": pl.Float64}))
        shrink_to = pl.lit(prior, dtype=pl.Float64)
        for name in h.keys:
            per = (rows.group_by(f"__hkey_{name}").agg(positives=y.sum(), count=pl.len())
                   .rename({f"__hkey_{name}": "key"})
                   .with_columns(name=pl.lit(name), window=pl.lit(window, dtype=pl.Int64),
                                 rate=(pl.col("positives") + h.prior_weight * shrink_to)
                                 / (pl.col("count") + h.prior_weight))
                   .collect())
            parts.append(per.select(list(SCHEMA)[:-1]))
    out = pl.concat(parts, how="vertical_relaxed").with_columns(as_of=pl.lit(as_of))
    return out.select(pl.col(c).cast(t) for c, t in SCHEMA.items()).sort("name", "window", "key", nulls_last=True)


def attach_history(spec: DatasetSpec, rows: pl.LazyFrame, history: pl.DataFrame | None) -> pl.LazyFrame:
    """Each rate as a column ``<name>_rate_<window>d``: the key's rate, the overall rate for an unseen key,
    null when nothing is known yet (the first days of the feed)."""
    rows = _with_history_keys(spec, rows)
    table = history if history is not None else empty_history()
    helper_columns = [f"__hkey_{n}" for n in spec.history.keys]
    for window in spec.history.windows:
        overall = table.filter((pl.col("name") == GLOBAL) & (pl.col("window") == window))["rate"]
        known = overall.drop_nulls().drop_nans()
        default = float(known[0]) if known.len() else None  # nothing labelled in the window: unknown (null)
        for name in spec.history.keys:
            column = history_column(name, window)
            lookup = (table.filter((pl.col("name") == name) & (pl.col("window") == window))
                      .select(pl.col("key").alias(f"__hkey_{name}"), pl.col("rate").alias(column)).lazy())
            rows = rows.join(lookup, on=f"__hkey_{name}", how="left", maintain_order="left")
            if default is not None:
                rows = rows.with_columns(pl.col(column).fill_null(default))
    return rows.drop(helper_columns)
