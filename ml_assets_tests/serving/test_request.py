"""The request model derived from the spec, derive expressions, strict JSON and bounded error bodies (pure)."""
from __future__ import annotations

import json

import pytest

from ml_assets.serving import hardening as HD
from ml_assets.serving.request import (MAX_STRING_LENGTH, UNBOUNDED_LIMIT, RequestInvalid, nested_columns,
                                       parse_request, request_schema)


@pytest.fixture(scope="module")
def schema(spec):
    return request_schema(spec, max_batch=5)


@pytest.fixture
def example(spec):
    return json.loads(json.dumps(spec.serving.example))


def _errors(schema, body) -> list[dict]:
    with pytest.raises(RequestInvalid) as info:
        parse_request(schema, body)
    return info.value.errors


def _locs(errors) -> list[tuple]:
    return [tuple(e["loc"]) for e in errors]


def test_fields_are_the_event_columns_minus_exclude_plus_nested(spec, schema):
    events = spec.events_source
    expected = [c for c in events.columns if c not in spec.serving.exclude]
    assert schema.fields == expected
    assert set(schema.record.model_fields) == set(expected) | set(spec.serving.nested)
    assert not set(schema.record.model_fields) & set(spec.outcome_columns)
    for field, source in spec.serving.nested.items():
        table = spec.sources.get(source) or spec.reference[source]
        assert set(schema.nested[field].model_fields) == set(table.columns) - set(table.key)
        assert all(not f.is_required() for f in schema.nested[field].model_fields.values())
    required = {n for n, f in schema.record.model_fields.items() if f.is_required()}
    assert required == {c for c in expected if not events.columns[c].nullable}


def test_the_example_is_a_valid_request_and_the_openapi_example(spec, schema, example):
    rows = parse_request(schema, example)
    assert rows.single and rows.height == 1
    assert schema.record.model_json_schema()["examples"] == [spec.serving.example]


def test_strict_types_no_bool_for_int_no_string_for_number(schema, example, spec):
    int_field = next(c for c in schema.fields if spec.events_source.columns[c].dtype == "int64")
    for bad in (True, "1", 1.0, None, [1]):
        errors = _errors(schema, {**example, int_field: bad})
        assert _locs(errors) == [("body", int_field)], bad
    source, nested_field = next((s, f) for f, s in spec.serving.nested.items()
                                if any(c.dtype == "float64" for c in nested_columns(spec, s).values()))
    float_field = next(n for n, c in nested_columns(spec, source).items() if c.dtype == "float64")
    for bad in (True, "1.5", {}):
        errors = _errors(schema, {**example, nested_field: {float_field: bad}})
        assert _locs(errors) == [("body", nested_field, float_field)], bad
    parse_request(schema, {**example, nested_field: {float_field: 3}})  # an int is a number


def test_bounds_enum_pattern_and_string_length(schema, example, spec):
    columns = spec.events_source.columns
    bounded = next(n for n in schema.fields if columns[n].le is not None and columns[n].dtype == "int64")
    assert _errors(schema, {**example, bounded: int(columns[bounded].le) + 1})[0]["type"] == "less_than_equal"
    enum = next(n for n in schema.fields if columns[n].isin)
    errors = _errors(schema, {**example, enum: "ZZZ"})
    assert errors[0]["type"] == "literal_error" and _locs(errors) == [("body", enum)]
    assert schema.record.model_json_schema()["properties"][enum]["enum"] == columns[enum].isin
    patterned = next(n for n in schema.fields if columns[n].pattern and not columns[n].nullable)
    assert _errors(schema, {**example, patterned: "a b"})[0]["type"] == "string_pattern_mismatch"
    errors = _errors(schema, {**example, patterned: "A" * (MAX_STRING_LENGTH + 1)})
    assert errors[0]["type"] == "string_too_long"


@pytest.mark.parametrize("value", [1e308, -1e308, UNBOUNDED_LIMIT * 10, 10**25])
def test_huge_numbers_are_refused_in_every_numeric_field(schema, example, spec, value):
    numeric = [n for n in schema.fields if spec.events_source.columns[n].dtype in ("int64", "float64")]
    for name in numeric:
        assert _locs(_errors(schema, {**example, name: value})) == [("body", name)], name
    for field, source in spec.serving.nested.items():
        for name, c in nested_columns(spec, source).items():
            if c.dtype in ("int64", "float64"):
                errors = _errors(schema, {**example, field: {name: value}})
                assert _locs(errors) == [("body", field, name)], (field, name)


def test_unknown_fields_and_outcomes_are_refused_by_name(schema, example, spec):
    outcome = spec.outcome_columns[0]
    errors = _errors(schema, {**example, outcome: 1, "surprise": 2})
    assert set(_locs(errors)) == {("body", outcome), ("body", "surprise")}
    assert any("outcome" in e["msg"] for e in errors if e["loc"][-1] == outcome)
    excluded = spec.serving.exclude[0]
    assert _locs(_errors(schema, {**example, excluded: 1})) == [("body", excluded)]
    field = next(iter(spec.serving.nested))
    assert _locs(_errors(schema, {**example, field: {"nope": 1}})) == [("body", field, "nope")]


def test_nullable_fields_are_optional(schema, example, spec):
    nullable = [n for n in schema.fields if spec.events_source.columns[n].nullable]
    assert nullable
    body = {k: v for k, v in example.items() if k not in nullable and k not in spec.serving.nested}
    rows = parse_request(schema, body)
    assert rows.events.select(nullable).row(0) == (None,) * len(nullable)
    assert rows.nested == {}


def test_derive_fills_the_excluded_columns_with_sql_over_the_request(schema, example, spec):
    rows = parse_request(schema, example)
    import polars as pl

    plain = pl.DataFrame([{k: v for k, v in example.items() if k in schema.fields}])
    expected = plain.select(pl.sql_expr(e).alias(c) for c, e in spec.serving.derive.items())
    assert expected.height == 1 and expected.null_count().sum_horizontal().item() == 0
    assert rows.events.select(list(spec.serving.derive)).rows() == expected.rows()
    assert list(rows.events.columns) == list(spec.events_source.columns)


def test_a_derived_column_outside_its_rule_is_refused(schema, example, spec):
    # sched_dep_time 1299 derives minute 99 (outside 0..59): the batch path's raw schema would refuse it too
    derived = {c for c in spec.serving.derive if spec.events_source.columns[c].le is not None}
    assert derived
    source_field = "sched_dep_time"
    errors = _errors(schema, {**example, source_field: 1299})
    assert any("minute" in e["msg"] for e in errors) and _locs(errors)[0][-1] == source_field


def test_a_date_that_is_not_on_the_calendar_is_refused(schema, example, spec):
    y, m, d = spec.replay.date_parts
    errors = _errors(schema, [example, {**example, m: 2, d: 30}])
    assert _locs(errors) == [("body", 1, d)] and "calendar" in errors[0]["msg"]


def test_a_nested_object_needs_its_join_key(schema, example, spec):
    # the plane object joins on tailnum: without one it would silently join nothing
    field = next(f for f, s in spec.serving.nested.items() if s in spec.reference)
    join = next(j for j in spec.joins if j.source == spec.serving.nested[field])
    key_field = next(iter(join.keys.values()))
    errors = _errors(schema, {**{k: v for k, v in example.items() if k != key_field}, field: {}})
    assert _locs(errors) == [("body", field)]


def test_batches_empty_too_long_and_located_errors(schema, example):
    assert _errors(schema, [])[0]["type"] == "too_short"
    assert _errors(schema, [example] * 6)[0]["type"] == "too_long"
    rows = parse_request(schema, [example] * 5)
    assert rows.height == 5 and not rows.single
    errors = _errors(schema, [example, {**example, "flight": "1"}, example])
    assert _locs(errors) == [("body", 1, "flight")]
    for body in (None, 1, "x", True):
        assert _errors(schema, body)[0]["type"] == "model_type"


# ---------------------------------------------------------------------------------------------- strict JSON


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999", "-1e400"])
def test_nan_and_infinity_literals_are_refused_naming_the_field(literal):
    with pytest.raises(HD.Refusal) as info:
        HD.parse_json(f'[{{"a": 1}}, {{"b": {{"temp": {literal}}}}}]'.encode())
    assert info.value.status == 422
    assert [tuple(e["loc"]) for e in info.value.errors] == [("body", 1, "b", "temp")]


@pytest.mark.parametrize("body,kind", [
    (b"", "missing"), (b"   ", "missing"), (b"{", "json_invalid"), (b"{'a': 1}", "json_invalid"),
    (b"\xff\xfe", "json_invalid"), (b'{"a": 1} x', "json_invalid"), (b"1" * 400, "finite_number"),
    (b'{"a": "\\ud800"}', "string_unicode"), (b'{"\\udfff": 1}', "string_unicode"),
    (b"[" * 100 + b"]" * 100, "too_deep"), (b"[" * 100_000 + b"]" * 100_000, "too_deep"),
])
def test_malformed_bodies_are_422_with_a_reason(body, kind):
    with pytest.raises(HD.Refusal) as info:
        HD.parse_json(body)
    assert info.value.status == 422 and info.value.errors[0]["type"] == kind


def test_valid_json_passes_through():
    assert HD.parse_json(b'{"a": [1, 2.5, "\\u00e9", null, true]}') == {"a": [1, 2.5, "é", None, True]}


def test_error_bodies_are_bounded():
    huge = "x" * 500_000
    errors = [{"type": "t" * 1000, "loc": ("body", i, huge), "msg": huge, "input": {"k": [huge] * 1000}}
              for i in range(500)]
    body = HD.bounded(errors)
    assert len(body["detail"]) == HD.MAX_ERRORS and body["error_count"] == 500 and body["truncated"]
    for item in body["detail"]:
        assert len(item["msg"]) <= HD.MAX_CHARS + 3 and len(item["input"]) <= HD.MAX_CHARS + 3
        assert len(item["type"]) <= 63 and all(len(str(x)) <= 63 for x in item["loc"])
    assert len(json.dumps(body)) < 20 * 1000
    deep: list = []
    for _ in range(10_000):
        deep = [deep]
    assert len(HD.excerpt(deep)) <= HD.MAX_CHARS + 3
    assert HD.excerpt("\ud800abc").isascii()  # a lone surrogate never breaks the JSON response
    assert len(HD.excerpt(10**5000)) < 100
