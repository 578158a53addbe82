"""The one feature path: training, batch scoring and online serving all call ``build_features``.

From the dataset spec: the event rows (one feature row each), the joins of context sources and reference
tables, derived columns (SQL), registered feature functions (task-specific code the spec names), and the
delay-history rates as known the evening before (``core.history``). Outcomes never enter this path; the
label is attached afterwards by ``attach_label`` from the outcomes source, once it has landed.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from ml_assets.core.schemas import feature_dtypes
from ml_assets.core.spec import DatasetSpec

# Bump when the generic logic below changes; a spec's own changes are part of its code version.
FEATURE_CODE_VERSION = "features-v2"


def feature_code_version(spec: DatasetSpec) -> str:
    """Changes when this module or the spec's feature part changes: Dagster then shows features stale."""
    from ml_assets.core.versioning import bytes_hash
    from ml_assets.datasets import functions_version

    part = spec.model_dump_json(include={"sources", "reference", "joins", "features", "history"})
    return f"{FEATURE_CODE_VERSION}-{bytes_hash((part + functions_version(spec)).encode())[:10]}"


def with_date(spec: DatasetSpec, frame: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    y, m, d = spec.replay.date_parts
    return frame.lazy().with_columns(date=pl.date(y, m, d))


def prepare(spec: DatasetSpec, name: str, frame: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """A source as features read it: its declared columns only (nothing else a caller attached, e.g. outcome
    columns, reaches a feature), cleaned (spec ``clean``), one row per key (the first reading)."""
    source = spec.sources.get(name)
    declared = (source or spec.reference[name]).columns
    lazy = frame.lazy()
    lazy = lazy.select(c for c in lazy.collect_schema().names() if c in declared)
    if source is None:  # a reference table
        return lazy.unique(spec.reference[name].key, keep="first", maintain_order=True)
    if source.clean:
        lazy = lazy.with_columns(pl.sql_expr(expr).alias(col) for col, expr in source.clean.items())
    return lazy.unique(source.key, keep="first", maintain_order=True)


@dataclass(frozen=True)
class FeatureContext:
    """What a registered feature function may read besides the rows: the prepared sources of the same days."""

    spec: DatasetSpec
    sources: Mapping[str, pl.LazyFrame]


def _join(rows: pl.LazyFrame, spec: DatasetSpec, join, sources: Mapping[str, pl.LazyFrame]) -> pl.LazyFrame:
    if join.source not in sources:
        # A request without that context (e.g. no weather): the joined columns are unknown.
        schema = (spec.sources[join.source].columns if join.source in spec.sources
                  else spec.reference[join.source].columns)
        from ml_assets.core.schemas import _DTYPES

        return rows.with_columns(pl.lit(None, dtype=_DTYPES[schema[c].dtype]).alias(f) for c, f in join.columns.items())
    keys = list(join.keys)
    right = sources[join.source].select(*keys, *join.columns).rename(
        {**{k: f"__key_{i}" for i, k in enumerate(keys)}, **join.columns})
    left = rows.with_columns(pl.sql_expr(expr).alias(f"__key_{i}") for i, expr in enumerate(join.keys.values()))
    right = right.with_columns(pl.col(f"__key_{i}").cast(left.collect_schema()[f"__key_{i}"])
                               for i in range(len(keys)))
    on = [f"__key_{i}" for i in range(len(keys))]
    return left.join(right, on=on, how="left", maintain_order="left").drop(on)


def build_features(spec: DatasetSpec, sources: Mapping[str, pl.DataFrame | pl.LazyFrame],
                   history: pl.DataFrame | None = None) -> pl.DataFrame:
    """Event rows (+ context sources, references, history) -> one row per event, columns ``feature_columns``.

    ``sources`` holds the events source by its name, and whichever context sources and reference tables are
    known (a request may lack some: their columns are then null). ``history``: the delay-history table as
    of the evening before (``core.history.delay_history``), or None (rates unknown).
    """
    from ml_assets.core import history as H
    from ml_assets.datasets import feature_function

    # what is known the evening before: never the outcomes source (outcomes reach features only as the history)
    prepared = {name: prepare(spec, name, frame) for name, frame in sources.items()
                if name not in (spec.events_name, spec.outcomes_name)}
    rows = with_date(spec, prepare(spec, spec.events_name, sources[spec.events_name]))
    prepared[spec.events_name] = rows
    for join in spec.joins:
        rows = _join(rows, spec, join, prepared)
    for name, expr in spec.features.derived.items():
        rows = rows.with_columns(pl.sql_expr(expr).alias(name))
    context = FeatureContext(spec, prepared)
    for name in spec.features.functions:
        rows = feature_function(name)(rows, context)
    if spec.history is not None:
        rows = H.attach_history(spec, rows, history)
    dtypes = feature_dtypes(spec)
    return rows.select(pl.col(c).cast(t) for c, t in dtypes.items()).collect()


def label_expression(spec: DatasetSpec) -> pl.Expr:
    label = pl.sql_expr(spec.label.expression).cast(pl.Boolean)
    if spec.label.unlabelled_when:
        label = pl.when(pl.sql_expr(spec.label.unlabelled_when)).then(None).otherwise(label)
    return label.alias(spec.label.name)


def outcome_key(spec: DatasetSpec) -> list[str]:
    """The columns a feature row and its outcome share (the feature key, ``date`` from the date parts)."""
    return list(spec.features.key)


def attach_label(spec: DatasetSpec, features: pl.DataFrame, outcomes: pl.DataFrame) -> pl.DataFrame:
    """Feature rows with the label from the outcomes of the same events; no outcome row -> no label."""
    key = outcome_key(spec)
    realized = (with_date(spec, outcomes).with_columns(label_expression(spec)).select(*key, spec.label.name)
                .unique(key, keep="first").collect())
    realized = realized.with_columns(pl.col(c).cast(features.schema[c]) for c in key)
    return features.join(realized, on=key, how="left", maintain_order="left", nulls_equal=True)


def labelled_rows(frame: pl.DataFrame, spec: DatasetSpec) -> pl.DataFrame:
    return frame.filter(pl.col(spec.label.name).is_not_null())
