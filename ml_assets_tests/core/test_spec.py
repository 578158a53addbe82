"""The dataset spec: loading, what it derives, and errors that name the file and the field."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from ml_assets.core import spec as S

SHIPPED = S.SHIPPED / "nycflights13.yaml"
SCHEMA_FILE = S.SHIPPED / "dataset-spec.schema.json"


def _write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _edit(old: str, new: str, count: int = 1) -> str:
    text = SHIPPED.read_text()
    assert text.count(old) >= count, f"the shipped spec no longer contains {old!r}"
    return text.replace(old, new, count)


def _error(tmp_path: Path, text: str) -> str:
    path = _write(tmp_path, text)
    with pytest.raises(S.SpecError) as err:
        S.load_spec(path)
    message = str(err.value)
    assert str(path) in message  # every refusal names the file
    return message


# ---------------------------------------------------------------------------------------------- loading


def test_default_spec_loads_with_its_derived_names(spec, monkeypatch):
    monkeypatch.delenv(S.DATASET_ENV, raising=False)
    assert S.load_spec() is spec is S.load_spec("nycflights13")  # cached per file
    assert S.spec_path() == SHIPPED
    assert spec.name == "flights" and spec.prediction == "p_late" and spec.label.name == "is_late"
    assert (spec.events_name, spec.outcomes_name) == ("schedule", "outcomes")
    assert spec.schedule_sources == ["schedule", "weather"]
    assert spec.outcome_columns == ["dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"]
    assert spec.first_day == dt.date(2013, 1, 1) and spec.last_day == dt.date(2013, 12, 31)
    assert spec.sources["schedule"].delivered.instant(dt.date(2013, 1, 2)) == dt.datetime(2013, 1, 1, 18, 0)
    assert spec.sources["outcomes"].delivered.instant(dt.date(2013, 1, 2)) == dt.datetime(2013, 1, 3, 6, 0)
    assert spec.model_line("xgboost") == "flight_delay_xgboost"
    assert S.history_column("route", 7) == "route_rate_7d"
    # What a model reads: categoricals, then numerics (the shipped spec has no delay history: docs/features.md).
    assert spec.model_inputs[:4] == ["carrier", "origin", "dest", "route"]
    assert spec.history is None and spec.history_columns == []
    assert spec.model_inputs[4:] == spec.features.numeric
    assert spec.features.functions == ["flights.calendar", "flights.congestion", "flights.block", "flights.day_weather"]
    assert spec.models["xgboost"]["min_child_weight"] == 50 and set(spec.models) == {"xgboost"}  # its recipe
    assert len(spec.feature_columns) == len(set(spec.feature_columns))
    assert not set(spec.outcome_columns) & set(spec.feature_columns)
    assert spec.label.name not in spec.feature_columns


def test_a_spec_by_path_or_from_the_environment(tmp_path, monkeypatch):
    copy = _write(tmp_path, _edit("name: flights", "name: flights_copy"))
    assert S.load_spec(copy).name == "flights_copy"
    assert S.load_spec(str(copy)).name == "flights_copy"
    monkeypatch.setenv(S.DATASET_ENV, str(copy))
    assert S.load_spec().name == "flights_copy"


def test_an_unknown_spec_names_the_shipped_ones(monkeypatch):
    monkeypatch.delenv(S.DATASET_ENV, raising=False)
    with pytest.raises(S.SpecError, match=r"'no_such_dataset'.*shipped spec.*nycflights13"):
        S.load_spec("no_such_dataset")


def test_outcome_lag_defaults_to_the_spec_and_is_validated(spec, monkeypatch):
    monkeypatch.delenv(S.OUTCOME_LAG_ENV, raising=False)
    assert S.outcome_lag_days(spec) == 1
    monkeypatch.setenv(S.OUTCOME_LAG_ENV, "3")
    assert S.outcome_lag_days(spec) == 3
    for bad, reason in (("two", "whole number"), ("0", "1..30"), ("31", "1..30")):
        monkeypatch.setenv(S.OUTCOME_LAG_ENV, bad)
        with pytest.raises(S.SpecError, match=reason):
            S.outcome_lag_days(spec)


# ---------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(("old", "new", "field", "reason"), [
    ("partitions: {start: 2013-01-01, end: 2013-12-31}", "partitions: {start: 2013-01-01, end: 2013-13-31}",
     "partitions.end", "month"),
    ("      carrier: {dtype: string, pattern", "      carrier: {dtype: text, pattern",
     "sources.schedule.columns.carrier.dtype", "int64"),
    ("  categorical: [carrier", "  smoothing: 3\n  categorical: [carrier", "features.smoothing", "Extra inputs"),
    ("model_line_prefix: flight_delay", "model_line_prefix: Flight-Delay", "model_line_prefix", "pattern"),
    ("max_null_share: 0.5}", "max_null_share: 1.5}", "sources.weather.columns.temp.max_null_share", "less than"),
    ("    role: context", "    role: background", "sources.weather.role", "events"),
])
def test_a_bad_field_is_named(tmp_path, old, new, field, reason):
    message = _error(tmp_path, _edit(old, new))
    assert f"field {field}:" in message and reason in message


def test_outcome_columns_are_refused_as_features(tmp_path):
    message = _error(tmp_path, _edit("  numeric: [sched_dep_minutes,", "  numeric: [arr_delay, sched_dep_minutes,"))
    assert "outcome columns declared as features: ['arr_delay']" in message
    carried = _error(tmp_path, _edit("  carry: [dest, tailnum]", "  carry: [dest, tailnum, dep_delay]"))
    assert "['dep_delay']" in carried


@pytest.mark.parametrize(("old", "new", "reason"), [
    ('expression: "arr_delay > 15"', 'expression: "arr_delay >> 15 ("', "not a valid SQL expression"),
    ("    table: weather\n", "    table: radar\n", "'radar' is not a replay table"),
    ("    role: outcomes", "    role: events", "exactly one source with role 'events'"),
    ("  - source: planes", "  - source: outcomes", "'outcomes' is the events or the outcomes source"),
    ("  categorical: [carrier, origin, dest, route]", "  categorical: [carrier, origin, dest, route, distance]",
     "both categorical and numeric: ['distance']"),
    ("    key: [origin, year, month, day, hour]", "    key: [origin, year, month, day, hour, station]",
     "does not declare: ['station']"),
])
def test_inconsistent_specs_are_refused(tmp_path, old, new, reason):
    assert reason in _error(tmp_path, _edit(old, new))


def test_unreadable_yaml_names_the_file(tmp_path):
    assert "cannot read it as YAML" in _error(tmp_path, "name: [flights\n")


# ---------------------------------------------------------------------------------------------- YAML pitfalls


def test_yaml_1_1_booleans_and_sexagesimals_are_read_as_written(tmp_path):
    """PyYAML's YAML 1.1: `on`/`no` are booleans and 18:00 is the integer 1080 (pydantic: 00:18:00). Not here."""
    text = _edit('delivered: {day_offset: -1, time: "18:00"}', "delivered: {day_offset: -1, time: 18:00}")
    text = text.replace("origin: {dtype: string, isin: [EWR, JFK, LGA]}",
                        "origin: {dtype: string, isin: [EWR, JFK, LGA, NO]}", 1)
    text = text.replace("      minute: {dtype: int64, ge: 0, le: 59}\n",
                        "      minute: {dtype: int64, ge: 0, le: 59}\n      on: {dtype: bool, nullable: yes}\n", 1)
    loaded = S.load_spec(_write(tmp_path, text))
    schedule = loaded.sources["schedule"]
    assert schedule.delivered.time == dt.time(18, 0)  # not 00:18
    assert "on" in schedule.columns and schedule.columns["on"].nullable is True
    assert loaded.sources["weather"].columns["origin"].isin == ["EWR", "JFK", "LGA", "NO"]
    assert loaded.partitions.start == dt.date(2013, 1, 1)  # dates still parse, by pydantic


def test_read_yaml_keeps_only_true_false_as_booleans():
    data = S.read_yaml("a: [on, off, yes, no, NO, y, true, False, 18:00, 010, 7, -2, 1.5, 1e3, .inf, 2013-01-01, ~]")
    assert data["a"][:8] == ["on", "off", "yes", "no", "NO", "y", True, False]
    assert data["a"][8:] == ["18:00", "010", 7, -2, 1.5, 1000.0, float("inf"), "2013-01-01", None]


# ---------------------------------------------------------------------------------------------- JSON schema


def test_the_shipped_json_schema_is_the_models_schema():
    assert SCHEMA_FILE.read_text() == S.json_schema(), (
        "dataset-spec.schema.json is stale: regenerate it with "
        "python -c 'from ml_assets.core.spec import json_schema; print(json_schema(), end=\"\")' > " + str(SCHEMA_FILE))
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema["title"] == "DatasetSpec" and schema["additionalProperties"] is False
    assert {"name", "sources", "label", "features", "baseline", "card"} <= set(schema["required"])
    assert "dataset-spec.schema.json" in SHIPPED.read_text()  # the spec points editors at it


@pytest.mark.parametrize("path", sorted(S.SHIPPED.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_spec_loads_and_follows_the_json_schema(path):
    import jsonschema

    assert S.load_spec(path.stem).name
    schema = json.loads(SCHEMA_FILE.read_text())
    data = json.loads(json.dumps(S.read_yaml(path.read_text()), default=str))
    jsonschema.validate(data, schema)
    with pytest.raises(jsonschema.ValidationError, match="bogus"):
        jsonschema.validate({**data, "bogus": 1}, schema)
