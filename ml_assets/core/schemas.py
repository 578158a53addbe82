"""pandera schemas derived from the dataset spec, and a readable report of what failed.

Every failure is reported as a ``Violation``: the rule, the column, how many rows fail and a few
example values, so a check can say exactly what is wrong with a day.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pandera.polars as pa
import polars as pl
from pandera.errors import SchemaError, SchemaErrors

from ml_assets.core.spec import Column, DatasetSpec

_DTYPES = {"int64": pl.Int64, "float64": pl.Float64, "string": pl.String, "bool": pl.Boolean}


def _checks(column: Column) -> list[pa.Check]:
    checks = []
    if column.ge is not None:
        checks.append(pa.Check.ge(column.ge))
    if column.le is not None:
        checks.append(pa.Check.le(column.le))
    if column.isin is not None:
        checks.append(pa.Check.isin(column.isin))
    if column.pattern is not None:
        checks.append(pa.Check.str_matches(column.pattern))
    return checks


def _columns(columns: dict[str, Column]) -> dict[str, pa.Column]:
    return {name: pa.Column(_DTYPES[c.dtype], _checks(c), nullable=c.nullable, description=c.description or None)
            for name, c in columns.items()}


def source_schema(spec: DatasetSpec, source: str) -> pa.DataFrameSchema:
    """The landing contract of one source: these columns and types, nothing else (strict)."""
    s = spec.sources[source]
    return pa.DataFrameSchema(_columns(s.columns), strict=True, ordered=False, name=f"{spec.name}.{source}")


def reference_schema(spec: DatasetSpec, name: str) -> pa.DataFrameSchema:
    ref = spec.reference[name]
    columns = _columns(ref.columns)
    return pa.DataFrameSchema(columns, strict=True, ordered=False, name=f"{spec.name}.{name}",
                              unique=ref.key)


def feature_dtypes(spec: DatasetSpec) -> dict[str, pl.DataType]:
    """The dtype of every feature-frame column: keys and carried columns as in the events source."""
    events = spec.events_source.columns
    out: dict[str, pl.DataType] = {}
    for name in [*spec.features.key, *spec.features.carry]:
        out[name] = pl.Date if name == "date" else _DTYPES[events[name].dtype] if name in events else pl.String
    out.update({c: pl.String for c in spec.features.categorical})
    out.update({c: pl.Float64 for c in [*spec.features.numeric, *spec.history_columns]})
    return out


def feature_schema(spec: DatasetSpec, labelled: bool = False) -> pa.DataFrameSchema:
    """The feature frame: keys, carried columns, model inputs (numerics with their ranges) [, label]."""
    events = spec.events_source.columns
    ranges = spec.features.ranges
    columns: dict[str, pa.Column] = {}
    for name, dtype in feature_dtypes(spec).items():
        declared = events.get(name)
        if name in spec.features.key and declared is not None:
            columns[name] = pa.Column(dtype, _checks(declared), nullable=declared.nullable)
        elif name in ranges:
            columns[name] = pa.Column(dtype, pa.Check.in_range(*ranges[name]), nullable=True)
        elif name in spec.history_columns:
            columns[name] = pa.Column(dtype, pa.Check.in_range(0, 1), nullable=True)
        else:
            columns[name] = pa.Column(dtype, nullable=name not in spec.features.key)
    if labelled:
        columns[spec.label.name] = pa.Column(pl.Boolean, nullable=True)
    return pa.DataFrameSchema(columns, strict=True, ordered=False,
                              name=f"{spec.name}.{'labelled_' if labelled else ''}features")


@dataclass
class Violation:
    rule: str
    column: str | None
    failing_rows: int
    examples: list[Any] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "column": self.column, "failing_rows": self.failing_rows,
                "examples": [str(e) for e in self.examples[:5]]}

    def __str__(self) -> str:
        where = f" column {self.column!r}" if self.column else ""
        return f"{self.rule}{where}: {self.failing_rows} failing row(s), e.g. {self.as_dict()['examples']}"


_FRAME_LEVEL_RULES = {"column_in_dataframe": "required_column_missing", "column_in_schema": "unexpected_column"}


def schema_violations(frame: pl.DataFrame, schema: Any) -> list[Violation]:
    """Validate lazily (all failures at once) and group pandera's failure cases by rule and column."""
    try:
        schema.validate(frame, lazy=True)
        return []
    except SchemaErrors as exc:
        cases = exc.failure_cases
    except SchemaError as exc:  # pandera raises this (not SchemaErrors) for some frame-level failures
        return [Violation(str(exc.check), None, frame.height, [str(exc)])]
    cases = cases.with_columns(pl.col("failure_case").cast(pl.String), pl.col("check").cast(pl.String))
    out = []
    for (check, column), group in cases.group_by(["check", "column"], maintain_order=True):
        if check in _FRAME_LEVEL_RULES:  # the failure case names the column; the "column" is the schema
            for name in group["failure_case"].to_list():
                out.append(Violation(_FRAME_LEVEL_RULES[check], name, frame.height))
            continue
        out.append(Violation(str(check), column, group.height, group["failure_case"].head(5).to_list()))
    # pandera's strict check stops at the first unexpected column: name every one (e.g. all leaked outcome columns).
    named = {v.column for v in out if v.rule == "unexpected_column"}
    if getattr(schema, "strict", False) is True:
        out += [Violation("unexpected_column", c, frame.height) for c in frame.columns
                if c not in schema.columns and c not in named]
    return out


def duplicate_key_violations(frame: pl.DataFrame, key: list[str]) -> list[Violation]:
    missing = [c for c in key if c not in frame.columns]
    if missing:
        return [Violation("key_columns_present", ",".join(missing), frame.height)]
    dupes = frame.filter(pl.struct(key).is_duplicated())
    if dupes.is_empty():
        return []
    examples = dupes.select(key).unique(maintain_order=True).head(5).to_dicts()
    return [Violation("duplicate_key", ",".join(key), dupes.height, examples)]


def empty_violations(frame: pl.DataFrame) -> list[Violation]:
    return [Violation("non_empty_day", None, 0, ["the day has no rows"])] if frame.is_empty() else []


def date_violations(frame: pl.DataFrame, day: dt.date, parts: list[str]) -> list[Violation]:
    """Every row must belong to the partition's day (the landing folder's date)."""
    cols = list(parts)
    if any(c not in frame.columns for c in cols) or frame.is_empty():
        return []
    try:
        wrong = frame.filter(pl.date(*cols) != pl.lit(day))
    except pl.exceptions.PolarsError:
        return []  # wrong types are reported by the schema rule
    if wrong.is_empty():
        return []
    examples = wrong.select(cols).unique(maintain_order=True).head(5).to_dicts()
    return [Violation("date_matches_partition", ",".join(cols), wrong.height, examples)]


def null_share_violations(frame: pl.DataFrame, columns: dict[str, Column]) -> list[Violation]:
    """A column more null than its ``max_null_share``: the source went dark for the day (an outage)."""
    out = []
    if frame.is_empty():
        return out
    for name, column in columns.items():
        if column.max_null_share is None or name not in frame.columns:
            continue
        nulls = frame[name].null_count()
        if nulls / frame.height > column.max_null_share:
            out.append(Violation("null_share", name, nulls,
                                 [f"{nulls / frame.height:.0%} null > allowed {column.max_null_share:.0%}"]))
    return out


def unmatched_key_violations(frame: pl.DataFrame, events: pl.DataFrame, key: list[str]) -> list[Violation]:
    """Outcome rows whose key is not an event of the day: upstream reported outcomes for unknown events."""
    if frame.is_empty() or any(c not in frame.columns for c in key):
        return []
    unknown = frame.select(key).join(events.select(key), on=key, how="anti", nulls_equal=True)
    if unknown.is_empty():
        return []
    return [Violation("outcome_without_event", ",".join(key), unknown.height, unknown.head(5).to_dicts())]
