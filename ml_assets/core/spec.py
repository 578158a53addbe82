"""The dataset spec: everything task-specific, declared once in a YAML file and validated here.

A spec names the landing sources (their keys, columns, event date and when upstream delivers them), the
reference tables, the joins that make one feature row per event, the label (a SQL expression over the
outcome columns), the features, the delay-history rates, the slices, the behavioral expectations, the
serving request and the texts of the model card. The graph, the checks, the server and the cards are derived
from it; code that a spec cannot express is a registered feature function (``ml_assets.datasets``) that the
spec names. ``ml_assets/datasets/nycflights13.yaml`` is the default; ``ML_ASSETS_DATASET`` selects another
file (or a name of a shipped spec).

Expressions are polars SQL (``pl.sql_expr``), so a spec stays declarative and every expression is checked
when the spec is loaded.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SHIPPED = Path(__file__).resolve().parent.parent / "datasets"
DEFAULT_DATASET = "nycflights13"
DATASET_ENV = "ML_ASSETS_DATASET"
OUTCOME_LAG_ENV = "ML_ASSETS_OUTCOME_LAG_DAYS"
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
Name = Annotated[str, Field(pattern=NAME.pattern)]
DType = Literal["int64", "float64", "string", "bool"]


class SpecError(ValueError):
    """A dataset spec that cannot be used: names the file and the field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Column(_Model):
    dtype: DType
    nullable: bool = False
    ge: float | None = None
    le: float | None = None
    isin: list[str] | None = None
    pattern: str | None = None
    description: str = ""
    # A day on which a larger share of this column is null is refused: a source that went dark (an outage)
    # must not slip through as "missing values".
    max_null_share: float | None = Field(None, ge=0, le=1)


class Delivery(_Model):
    """When upstream delivers the day's file: ``day_offset`` days from the event day, at ``time`` (UTC)."""

    day_offset: int
    time: dt.time

    def instant(self, day: dt.date, lag_override: int | None = None) -> dt.datetime:
        offset = self.day_offset if lag_override is None else lag_override
        return dt.datetime.combine(day + dt.timedelta(days=offset), self.time)


class Source(_Model):
    """A daily landing source, delivered as ``landing/<source>/date=YYYY-MM-DD/vNNNN.parquet``."""

    table: Name = Field(description="the replay table its rows come from")
    role: Literal["events", "context", "outcomes"] = Field(
        description="events: one prediction per row; context: joined to the events; outcomes: the label's source")
    key: list[str]
    key_unique: Literal["error", "warn"] = "error"
    delivered: Delivery
    columns: dict[str, Column]
    clean: dict[str, str] = Field(default_factory=dict, description="SQL expressions applied on read (by column)")
    description: str = ""


class Reference(_Model):
    """A reference table landed once (``landing/<name>/vNNNN.parquet``), e.g. the planes."""

    table: Name
    key: list[str]
    columns: dict[str, Column]
    description: str = ""


class ReplayTable(_Model):
    file: str = Field(description="path inside the package, e.g. data/flights.csv.zip")
    drop: list[str] = Field(default_factory=list)


class Replay(_Model):
    """Where the simulated upstream reads its data: a package's data files (no network at run time)."""

    package: str
    tables: dict[Name, ReplayTable]
    date_parts: list[str] = Field(description="columns holding year, month and day of each event row")


class Join(_Model):
    """A left join of a context source or reference table onto the event rows."""

    source: Name
    keys: dict[str, str] = Field(description="source column -> SQL expression over the event row")
    columns: dict[str, str] = Field(description="source column -> feature name")


class Label(_Model):
    name: Name
    expression: str = Field(description="SQL over the outcome columns: true = positive class")
    unlabelled_when: str | None = Field(None, description="SQL: rows without an outcome (no label)")
    positive: str = Field(description="what a positive means, for people")


class Features(_Model):
    key: list[str] = Field(description="the event key of a feature row (columns of the feature frame)")
    derived: dict[str, str] = Field(default_factory=dict, description="name -> SQL, in order")
    functions: list[str] = Field(default_factory=list, description="registered feature functions, in order")
    categorical: list[str]
    numeric: list[str]
    ranges: dict[str, tuple[float, float]] = Field(default_factory=dict, description="checked on every row")
    carry: list[str] = Field(default_factory=list,
                             description="columns kept beside the features (identifiers, slice inputs)")
    drift_quiet: list[str] = Field(default_factory=list, description="features whose day-to-day drift is their "
                                   "nature (calendar, weather, recent rates): reported, never warned about")


class History(_Model):
    """Realized outcome rates per key over trailing windows, as known when the prediction is made.

    A row of day D sees the outcomes of days up to D-1-lag only (what has landed by the evening before D).
    """

    keys: dict[Name, list[str]] = Field(description="rate name -> event columns (or derived names) it groups by")
    derived: dict[str, str] = Field(default_factory=dict, description="SQL over the event rows, for the keys")
    windows: list[int] = Field(description="trailing window lengths in days")
    prior_weight: float = 20.0


class Baseline(_Model):
    """A trivial score the sanity gate compares every chosen candidate with (on the same rows)."""

    expression: str = Field(description="SQL over the feature row: a higher value means more likely positive")
    description: str


class Slice(_Model):
    name: Name
    expression: str = Field(description="SQL over the feature row (a column name is an expression)")


class Directional(_Model):
    """Moving ``column`` within a realistic range must not move predictions the other way on many rows."""

    column: str
    description: str
    also: list[str] = Field(default_factory=list, description="columns carrying the same quantity (e.g. the "
                            "day's lowest visibility beside the hour's): changed alike")
    set_at_most: float | None = None
    add: float | None = None
    fill_null: float | None = None
    direction: Literal["up", "down"] = "up"

    @model_validator(mode="after")
    def _one_change(self) -> Directional:
        if (self.set_at_most is None) == (self.add is None):
            raise ValueError(f"directional {self.column}: give exactly one of set_at_most, add")
        return self


class Behavior(_Model):
    invariant: list[str] = Field(default_factory=list, description="identifiers that must not move predictions")
    directional: list[Directional] = Field(default_factory=list)
    robust: list[str] = Field(default_factory=list, description="continuous columns for the small-noise check")
    # The share of rows allowed to move the wrong way under a directional change: calibrated on real days.
    max_wrong_share: float = 0.10


class Serving(_Model):
    """The request a client sends: the event source's columns, minus ``exclude``, plus ``derive``."""

    exclude: list[str] = Field(default_factory=list)
    derive: dict[str, str] = Field(default_factory=dict, description="event column -> SQL over the request")
    nested: dict[Name, str] = Field(default_factory=dict, description="request field -> joined source it fills")
    example: dict[str, Any] = Field(default_factory=dict)


class Card(_Model):
    intended_use: str
    not_for: str
    limitations: list[str] = Field(default_factory=list)


class Partitions(_Model):
    start: dt.date
    end: dt.date = Field(description="last day (inclusive) of the feed")


class DatasetSpec(_Model):
    name: Name
    title: str
    task: str
    model_line_prefix: Name
    prediction: Name = Field(description="the name of the predicted probability, e.g. p_late")
    partitions: Partitions
    replay: Replay
    sources: dict[Name, Source]
    reference: dict[Name, Reference] = Field(default_factory=dict)
    joins: list[Join] = Field(default_factory=list)
    label: Label
    features: Features
    history: History | None = None
    # Per candidate family: the parameters this dataset trains with, over the family's generic defaults (a
    # recipe tuned for one dataset's scale, e.g. min_child_weight, is not another's). The weekly search starts here.
    models: dict[Name, dict[str, Any]] = Field(default_factory=dict)
    baseline: Baseline
    slices: list[Slice] = Field(default_factory=list)
    behavior: Behavior = Field(default_factory=Behavior)
    serving: Serving = Field(default_factory=Serving)
    card: Card

    # ------------------------------------------------------------------ validation across fields

    @model_validator(mode="after")
    def _consistent(self) -> DatasetSpec:
        roles = [s.role for s in self.sources.values()]
        if roles.count("events") != 1 or roles.count("outcomes") != 1:
            raise ValueError("exactly one source with role 'events' and one with role 'outcomes' are needed")
        for name, source in self.sources.items():
            if source.table not in self.replay.tables:
                raise ValueError(f"sources.{name}.table {source.table!r} is not a replay table")
            missing = [k for k in source.key if k not in source.columns]
            if missing:
                raise ValueError(f"sources.{name}.key names columns it does not declare: {missing}")
        events = self.events_source
        outcomes = self.outcomes_source
        if [k for k in outcomes.key if k not in events.columns]:
            raise ValueError("the outcomes key must be columns of the events source")
        for join in self.joins:
            if join.source not in self.sources and join.source not in self.reference:
                raise ValueError(f"joins: unknown source {join.source!r}")
            if join.source == self.events_name or self.sources.get(join.source, events).role == "outcomes":
                raise ValueError(f"joins: {join.source!r} is the events or the outcomes source")
        from ml_assets.core.families import FAMILIES

        for d in self.behavior.directional:
            strangers = [c for c in [d.column, *d.also] if c not in self.model_inputs]
            if strangers:
                raise ValueError(f"behavior.directional {d.column}: not model inputs: {strangers}")
        unknown = sorted(set(self.models) - set(FAMILIES))
        if unknown:
            raise ValueError(f"models: unknown families {unknown} (known: {sorted(FAMILIES)})")
        overlap = set(self.features.categorical) & set(self.features.numeric)
        if overlap:
            raise ValueError(f"features both categorical and numeric: {sorted(overlap)}")
        outcome_columns = set(outcomes.columns) - set(outcomes.key)
        leaked = outcome_columns & set(self.feature_columns)
        if leaked:
            raise ValueError(f"outcome columns declared as features: {sorted(leaked)}")
        for expr in [*self.features.derived.values(), self.label.expression, self.label.unlabelled_when or "1",
                     *(s.expression for s in self.slices), *self.serving.derive.values(), self.baseline.expression,
                     *(c for s in self.sources.values() for c in s.clean.values()),
                     *(self.history.derived.values() if self.history else ()),
                     *(e for j in self.joins for e in j.keys.values())]:
            _check_sql(expr)
        return self

    # ------------------------------------------------------------------ derived names

    @property
    def events_name(self) -> str:
        return next(n for n, s in self.sources.items() if s.role == "events")

    @property
    def outcomes_name(self) -> str:
        return next(n for n, s in self.sources.items() if s.role == "outcomes")

    @property
    def events_source(self) -> Source:
        return self.sources[self.events_name]

    @property
    def outcomes_source(self) -> Source:
        return self.sources[self.outcomes_name]

    @property
    def outcome_columns(self) -> list[str]:
        """Columns known only after the event: never features."""
        o = self.outcomes_source
        return [c for c in o.columns if c not in o.key]

    @property
    def schedule_sources(self) -> list[str]:
        """Daily sources known before the day (delivered with the events)."""
        return [n for n, s in self.sources.items() if s.role != "outcomes"]

    @property
    def history_columns(self) -> list[str]:
        if self.history is None:
            return []
        return [history_column(name, w) for name in self.history.keys for w in self.history.windows]

    @property
    def monotone_inputs(self) -> dict[str, int]:
        """Column -> +1/-1 from ``behavior.directional``: the direction the prediction must follow the column."""
        out = {}
        for d in self.behavior.directional:
            raises = d.set_at_most is None and (d.add or 0) > 0
            sign = (1 if raises else -1) * (1 if d.direction == "up" else -1)
            out.update(dict.fromkeys([d.column, *d.also], sign))
        return out

    @property
    def model_inputs(self) -> list[str]:
        """What a model reads: categoricals, then numerics, then the delay-history rates."""
        return [*self.features.categorical, *self.features.numeric, *self.history_columns]

    @property
    def feature_columns(self) -> list[str]:
        return list(dict.fromkeys([*self.features.key, *self.features.carry, *self.model_inputs]))

    @property
    def first_day(self) -> dt.date:
        return self.partitions.start

    @property
    def last_day(self) -> dt.date:
        return self.partitions.end

    def model_line(self, family: str) -> str:
        return f"{self.model_line_prefix}_{family}"


def history_column(name: str, window: int) -> str:
    return f"{name}_rate_{window}d"


def _check_sql(expr: str) -> None:
    import polars as pl

    try:
        pl.sql_expr(expr)
    except Exception as exc:  # polars raises several types for a bad expression
        raise ValueError(f"not a valid SQL expression: {expr!r} ({exc})") from None


# ---------------------------------------------------------------------------------------------- loading


def spec_path(name_or_path: str | os.PathLike | None = None) -> Path:
    """A shipped spec by name (``nycflights13``, ``rain``) or a file path; default from the environment."""
    value = str(name_or_path or os.environ.get(DATASET_ENV) or DEFAULT_DATASET)
    if NAME.match(value) and (SHIPPED / f"{value}.yaml").exists():
        return SHIPPED / f"{value}.yaml"
    path = Path(value).expanduser()
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in SHIPPED.glob("*.yaml")))
        raise SpecError(f"dataset spec {value!r}: no such file and no shipped spec of that name ({shipped})")
    return path.resolve()


class _SpecLoader(yaml.SafeLoader):
    """YAML with the core schema's plain scalars (YAML 1.2), not PyYAML's YAML 1.1 ones.

    Under YAML 1.1 ``on``/``off``/``yes``/``no`` are booleans (a column named ``on`` or the value ``NO`` becomes
    True/False), ``18:00`` is the base-60 integer 1080 (which pydantic reads as 00:18:00, silently) and an
    impossible date such as ``2013-13-01`` raises a bare ValueError that names neither the file nor the field.
    Here only true/false are booleans, numbers are decimal, and dates stay text for pydantic to parse (and to
    name the field when it cannot).
    """


_BOOL, _INT, _FLOAT = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers
            if tag not in (_BOOL, _INT, _FLOAT, "tag:yaml.org,2002:timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_SpecLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_SpecLoader.add_implicit_resolver(_INT, re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789"))
_SpecLoader.add_implicit_resolver(
    _FLOAT, re.compile(r"^[-+]?(?:(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[0-9]+[eE][-+]?[0-9]+)$"
                       r"|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"), list("-+0123456789."))


def read_yaml(text: str) -> Any:
    """Parse spec YAML with the core schema (see ``_SpecLoader``)."""
    return yaml.load(text, Loader=_SpecLoader)  # noqa: S506 (a SafeLoader subclass)


@functools.cache
def _load(path: Path) -> DatasetSpec:
    from pydantic import ValidationError

    try:
        data = read_yaml(path.read_text())
    except (OSError, yaml.YAMLError, ValueError) as exc:
        raise SpecError(f"dataset spec {path}: cannot read it as YAML: {exc}") from None
    try:
        return DatasetSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise SpecError(f"dataset spec {path}: field {where}: {first['msg']}") from None


def load_spec(name_or_path: str | os.PathLike | None = None) -> DatasetSpec:
    return _load(spec_path(name_or_path))


def outcome_lag_days(spec: DatasetSpec) -> int:
    """Days after the event day on which its outcomes arrive (``ML_ASSETS_OUTCOME_LAG_DAYS`` overrides)."""
    raw = os.environ.get(OUTCOME_LAG_ENV)
    if raw is None or raw == "":
        return spec.outcomes_source.delivered.day_offset
    try:
        lag = int(raw)
    except ValueError:
        raise SpecError(f"{OUTCOME_LAG_ENV}={raw!r} is not a whole number of days") from None
    if not 1 <= lag <= 30:
        raise SpecError(f"{OUTCOME_LAG_ENV}={lag}: the outcome lag must be 1..30 days")
    return lag


def json_schema() -> str:
    """The spec's JSON schema (``ml_assets/datasets/dataset-spec.schema.json`` is this text)."""
    return json.dumps(DatasetSpec.model_json_schema(), indent=1, sort_keys=True) + "\n"
