"""The request a client sends, derived from the dataset spec (no task-specific names in this module).

A record holds the events source's columns minus ``serving.exclude``, each typed from its spec column:
int64 -> strict int, float64 -> finite number (an int is accepted, a bool or a string never), string -> strict
string, bool -> strict bool; bounds from ``ge``/``le``, ``isin`` as an enum, ``pattern``; a nullable column is
optional. Unknown fields (and so every outcome column) are refused by name. One optional nested object per
``serving.nested`` entry carries a context source's or reference table's non-key columns (all optional, typed the
same way): it replaces the joined row for that record's join key. ``serving.derive`` fills the excluded event
columns with SQL over the record. A body is one record or a list of 1..``max_batch`` records.

Numbers without a declared bound are kept within +-``UNBOUNDED_LIMIT`` and strings within
``MAX_STRING_LENGTH`` characters: 1e308 in any numeric field is refused (422) before it could reach a model,
where it would become inf (float32) and then NaN.
"""
from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional, Union

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from ml_assets.core.features import with_date
from ml_assets.core.spec import Column, DatasetSpec

MAX_BATCH = 1000
UNBOUNDED_LIMIT = 1e9
MAX_STRING_LENGTH = 256
_PYTHON = {"int64": int, "float64": float, "string": str, "bool": bool}
_POLARS = {"int64": pl.Int64, "float64": pl.Float64, "string": pl.String, "bool": pl.Boolean}


class RequestInvalid(Exception):
    """The request cannot be answered as sent: ``errors`` are pydantic-style dicts (type, loc, msg, input)."""

    def __init__(self, errors: list[dict[str, Any]], status: int = 422):
        super().__init__(f"{len(errors)} error(s)")
        self.errors = errors
        self.status = status


def error(loc: Sequence[Any], msg: str, value: Any = None, type_: str = "value_error") -> dict[str, Any]:
    return {"type": type_, "loc": tuple(loc), "msg": msg, "input": value}


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _bound(value: float, integer: bool) -> float | int:
    if integer:
        return int(math.floor(value)) if value >= 0 else int(math.ceil(value))
    return int(value) if float(value).is_integer() else float(value)


def field_annotation(column: Column, *, optional: bool) -> tuple[Any, Any]:
    """(annotation, default) of one request field from its spec column."""
    base: Any = _PYTHON[column.dtype]
    constraints: dict[str, Any] = {}
    if column.description:
        constraints["description"] = column.description
    if column.dtype in ("int64", "float64"):
        integer = column.dtype == "int64"
        constraints["ge"] = _bound(column.ge if column.ge is not None else -UNBOUNDED_LIMIT, integer)
        constraints["le"] = _bound(column.le if column.le is not None else UNBOUNDED_LIMIT, integer)
        if not integer:
            constraints["allow_inf_nan"] = False
    if column.isin is not None:
        base = Literal[tuple(_PYTHON[column.dtype](v) for v in column.isin)]
    if column.dtype == "string":
        constraints["max_length"] = MAX_STRING_LENGTH
        if column.pattern is not None:
            constraints["pattern"] = column.pattern
    annotation: Any = Annotated[base, Field(**constraints)]
    if optional:
        return Optional[annotation], None
    return annotation, ...


_CONFIG = ConfigDict(extra="forbid", strict=True)


def nested_columns(spec: DatasetSpec, source: str) -> dict[str, Column]:
    """The columns a nested object of ``source`` carries: the source's non-key columns."""
    table = spec.sources.get(source) or spec.reference[source]
    return {name: c for name, c in table.columns.items() if name not in table.key}


def nested_join(spec: DatasetSpec, source: str):
    """The join a nested object of ``source`` replaces the row of (the first join of that source)."""
    join = next((j for j in spec.joins if j.source == source), None)
    if join is None:
        raise ValueError(f"serving.nested names {source!r}, which no join uses: its columns would never be read")
    return join


def _ranged(spec: DatasetSpec, source: str, columns: dict[str, Column]) -> dict[str, Column]:
    """Columns that become a feature unchanged (a join column, or an event column of the same name) take the
    feature's ``features.ranges`` as bounds too: a value the feature check would refuse is refused up front, and
    the schema says so. A column with a ``clean`` expression is left alone (cleaning may map it to null)."""
    table = spec.sources.get(source)
    cleaned = set(table.clean) if table is not None else set()
    if source == spec.events_name:
        direct = {c: c for c in columns if c in spec.model_inputs and c not in spec.features.derived}
    else:
        direct = {c: f for j in spec.joins if j.source == source for c, f in j.columns.items()}
    out = {}
    for name, column in columns.items():
        feature = direct.get(name)
        if feature in spec.features.ranges and name not in cleaned and column.dtype in ("int64", "float64"):
            low, high = spec.features.ranges[feature]
            column = column.model_copy(update={"ge": low if column.ge is None else max(low, column.ge),
                                               "le": high if column.le is None else min(high, column.le)})
        out[name] = column
    return out


@dataclass(frozen=True)
class RequestSchema:
    """The derived request models of a dataset spec."""

    spec: DatasetSpec
    record: type[BaseModel]
    nested: dict[str, type[BaseModel]]   # request field -> model of the nested object
    nested_sources: dict[str, str]       # request field -> source or reference table
    fields: list[str]                    # the event columns a record carries
    max_batch: int

    @property
    def body_type(self) -> Any:
        many = Annotated[list[self.record], Field(min_length=1, max_length=self.max_batch)]  # type: ignore[name-defined]
        return Union[self.record, many]

    def body_json_schema(self, ref_template: str = "#/components/schemas/{model}") -> dict[str, Any]:
        return TypeAdapter(self.body_type).json_schema(ref_template=ref_template)


def request_schema(spec: DatasetSpec, max_batch: int = MAX_BATCH) -> RequestSchema:
    events = spec.events_source
    excluded = set(spec.serving.exclude)
    fields = [name for name in events.columns if name not in excluded]
    definitions: dict[str, Any] = {}
    nested_models: dict[str, type[BaseModel]] = {}
    example = dict(spec.serving.example)
    for field, source in spec.serving.nested.items():
        if field in events.columns:
            raise ValueError(f"serving.nested field {field!r} is also an event column")
        nested_join(spec, source)
        columns = _ranged(spec, source, nested_columns(spec, source))
        model = create_model(
            f"{_camel(field)}Context", __config__=ConfigDict(
                extra="forbid", strict=True, title=f"{_camel(field)}Context",
                json_schema_extra={"examples": [example[field]]} if isinstance(example.get(field), dict) else None),
            __doc__=f"{field}: a row of {source!r} for this record's join key (replaces the stored row); "
                    "every field optional, a missing one is unknown.",
            **{name: field_annotation(c, optional=True) for name, c in columns.items()})
        nested_models[field] = model
        definitions[field] = (Optional[model], None)
    event_columns = _ranged(spec, spec.events_name, {name: events.columns[name] for name in fields})
    record_fields = {name: field_annotation(c, optional=c.nullable) for name, c in event_columns.items()}
    record = create_model(
        f"{_camel(spec.events_name)}Record",
        __config__=ConfigDict(extra="forbid", strict=True, title=f"{_camel(spec.events_name)}Record",
                              json_schema_extra={"examples": [example]} if example else None),
        __doc__=f"One {spec.events_name} event as known before it happens ({spec.task}). Outcome columns "
                f"({', '.join(spec.outcome_columns)}) and unknown fields are refused.",
        **record_fields, **definitions)
    return RequestSchema(spec=spec, record=record, nested=nested_models, nested_sources=dict(spec.serving.nested),
                         fields=fields, max_batch=max_batch)


# ---------------------------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class RequestRows:
    """A validated request: the event rows (every events-source column, derived ones filled) in request order,
    and per nested source the replacement values of each row (None where the record has none)."""

    events: pl.DataFrame
    nested: dict[str, list[dict[str, Any] | None]]
    single: bool  # the body was one record (not a list)

    @property
    def height(self) -> int:
        return self.events.height


def _pydantic_errors(exc: ValidationError, prefix: tuple, spec: DatasetSpec) -> list[dict[str, Any]]:
    outcomes = set(spec.outcome_columns)
    out = []
    for e in exc.errors(include_url=False, include_context=False):
        loc = (*prefix, *e["loc"])
        msg = e["msg"]
        if e["type"] == "extra_forbidden" and e["loc"] and e["loc"][-1] in outcomes and len(e["loc"]) == 1:
            msg = f"{e['loc'][-1]!s} is an outcome, known only after the event: a request never carries it"
        elif e["type"] == "extra_forbidden":
            msg = f"unknown field {str(e['loc'][-1])[:60]!r}: not part of the request"
        out.append({"type": e["type"], "loc": loc, "msg": msg, "input": e.get("input")})
    return out


def validate_records(schema: RequestSchema, body: Any) -> tuple[list[BaseModel], bool]:
    """One record or a list of records -> (records, single); errors located as ``body[, index], field``."""
    if isinstance(body, list):
        if not body:
            raise RequestInvalid([error(("body",), "an empty list: send at least one record", body, "too_short")])
        if len(body) > schema.max_batch:
            raise RequestInvalid([error(("body",), f"{len(body)} records: at most {schema.max_batch} per request",
                                        len(body), "too_long")])
        records, errors = [], []
        for i, item in enumerate(body):
            try:
                records.append(schema.record.model_validate(item))
            except ValidationError as exc:
                errors += _pydantic_errors(exc, ("body", i), schema.spec)
                if len(errors) > 100:
                    break
        if errors:
            raise RequestInvalid(errors)
        return records, False
    if not isinstance(body, dict):
        raise RequestInvalid([error(("body",), "expected a JSON object (one record) or a list of records",
                                    body, "model_type")])
    try:
        return [schema.record.model_validate(body)], True
    except ValidationError as exc:
        raise RequestInvalid(_pydantic_errors(exc, ("body",), schema.spec)) from None


def events_schema(spec: DatasetSpec) -> dict[str, pl.DataType]:
    return {name: _POLARS[c.dtype] for name, c in spec.events_source.columns.items()}


def derive(spec: DatasetSpec, frame: pl.DataFrame) -> pl.DataFrame:
    """Fill the excluded event columns: ``serving.derive`` (SQL over the request row), else null."""
    types = events_schema(spec)
    for column, expr in spec.serving.derive.items():
        frame = frame.with_columns(pl.sql_expr(expr).cast(types.get(column, pl.String)).alias(column))
    missing = [c for c in types if c not in frame.columns]
    frame = frame.with_columns(pl.lit(None, dtype=types[c]).alias(c) for c in missing)
    return frame.select(pl.col(c).cast(t) for c, t in types.items())


def _violates(column: Column, value: Any) -> str | None:
    if value is None:
        return None if column.nullable else "is null"
    if column.ge is not None and value < column.ge:
        return f"= {value} is below {column.ge}"
    if column.le is not None and value > column.le:
        return f"= {value} is above {column.le}"
    if column.isin is not None and str(value) not in column.isin:
        return f"= {value!r} is not one of {column.isin}"
    if column.pattern is not None and not re.search(column.pattern, str(value)):
        return f"= {value!r} does not match {column.pattern}"
    return None


def _loc(single: bool, i: int, *rest: Any) -> tuple:
    return ("body", *rest) if single else ("body", i, *rest)


def _row_checks(schema: RequestSchema, records: list[BaseModel], events: pl.DataFrame, single: bool
                ) -> list[dict[str, Any]]:
    """What a field type cannot say: a calendar date, derived columns within their rules, nested join keys."""
    spec = schema.spec
    errors = []
    parts = spec.replay.date_parts
    if all(p in schema.fields for p in parts):
        for i, r in enumerate(records):
            values = [getattr(r, p) for p in parts]
            try:
                dt.date(*values)
            except (TypeError, ValueError) as exc:
                errors.append(error(_loc(single, i, parts[-1]), f"{'/'.join(parts)} is not a calendar date: {exc}",
                                    values))
    if errors:
        return errors  # the checks below need the date
    columns = spec.events_source.columns
    for name in spec.serving.derive:
        for i, value in enumerate(events[name].to_list()):
            problem = _violates(columns[name], value)
            if problem:
                sources = ", ".join(sorted(set(re.findall(r"[a-z_][a-z0-9_]*", spec.serving.derive[name]))
                                           & set(schema.fields))) or "the record"
                errors.append(error(_loc(single, i, sources), f"{name} (derived from {sources}) {problem}", value))
    dated = with_date(spec, events).collect()
    for field, source in schema.nested_sources.items():
        join = nested_join(spec, source)
        keys = dated.select(pl.sql_expr(expr).alias(col) for col, expr in join.keys.items())
        for i, r in enumerate(records):
            if getattr(r, field) is not None and any(v is None for v in keys.row(i)):
                errors.append(error(_loc(single, i, field), f"{field} is given but its join key "
                                    f"({', '.join(join.keys.values())}) is null: it would join nothing", None))
    return errors


def parse_request(schema: RequestSchema, body: Any) -> RequestRows:
    """A parsed JSON body -> ``RequestRows``; raises ``RequestInvalid`` (422) naming each bad field."""
    records, single = validate_records(schema, body)
    types = events_schema(schema.spec)
    rows = [{name: getattr(r, name) for name in schema.fields} for r in records]
    events = derive(schema.spec, pl.DataFrame(rows, schema={n: types[n] for n in schema.fields}))
    errors = _row_checks(schema, records, events, single)
    if errors:
        raise RequestInvalid(errors)
    nested = {}
    for field, source in schema.nested_sources.items():
        values = [getattr(r, field) for r in records]
        if any(v is not None for v in values):
            nested[source] = [None if v is None else v.model_dump() for v in values]
    return RequestRows(events=events, nested=nested, single=single)
