"""Hostile requests for the serving soak (test_soak.py, bench/soak.py): everything a client could send.

``hostile_cases(spec, n, seed)`` returns ``n`` prepared requests (kind, content type, body bytes) cycling through
NaN/Infinity literals, huge numbers, wrong types, bools for ints, deep nesting, huge strings within the size limit,
unknown and outcome fields, unicode (including lone surrogates), empty arrays and objects, 1001-record batches,
malformed JSON and bytes, wrong content types, oversized bodies, and valid requests (which must be 200).
"""
from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass

from ml_assets.core.spec import DatasetSpec
from ml_assets.serving.request import nested_columns, request_schema


@dataclass(frozen=True)
class Case:
    kind: str
    content_type: str | None
    body: bytes


def _dump(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def hostile_cases(spec: DatasetSpec, n: int = 1000, seed: int = 0, max_body_bytes: int = 1_048_576) -> list[Case]:
    rng = random.Random(seed)
    schema = request_schema(spec)
    example = json.loads(json.dumps(spec.serving.example))
    events = spec.events_source.columns
    numeric = [f for f in schema.fields if events[f].dtype in ("int64", "float64")]
    ints = [f for f in schema.fields if events[f].dtype == "int64"]
    strings = [f for f in schema.fields if events[f].dtype == "string"]
    nested = {field: nested_columns(spec, source) for field, source in schema.nested_sources.items()}
    nested_numeric = [(f, c) for f, cols in nested.items() for c, col in cols.items()
                      if col.dtype in ("int64", "float64")]
    nested_strings = [(f, c) for f, cols in nested.items() for c, col in cols.items()
                      if col.dtype == "string" and col.pattern is None and col.isin is None]

    def record(**changes) -> dict:
        return {**example, **changes}

    def in_nested(field: str, column: str, value) -> dict:
        return record(**{field: {**(example.get(field) or {}), column: value}})

    def literal(value: str) -> bytes:  # a JSON text with a bare literal where a number goes
        if rng.random() < 0.5:
            name = rng.choice(numeric)
            return _dump(record(**{name: "__X__"})).replace(b'"__X__"', value.encode())
        field, column = rng.choice(nested_numeric)
        return _dump(in_nested(field, column, "__X__")).replace(b'"__X__"', value.encode())

    def deep(depth: int) -> bytes:
        return _dump(record(**{rng.choice(schema.fields): "__X__"})).replace(
            b'"__X__"', b"[" * depth + b"1" + b"]" * depth)

    unicode_samples = ["é", "日本語", "🛫✈️", "\u202eRTL", "\x00", "\ufeff", "Ω" * 300, "A\u0301"]

    def valid() -> dict:
        r = record(flight=rng.randint(1, 9999), day=rng.randint(1, 28), month=rng.randint(1, 12))
        if rng.random() < 0.3:
            r.pop("weather", None)
        return r

    makers: list[tuple[str, Callable[[], Case]]] = [
        ("nan", lambda: Case("nan", "application/json", literal(rng.choice(["NaN", "Infinity", "-Infinity"])))),
        ("huge_number", lambda: Case("huge_number", "application/json",
                                     literal(rng.choice(["1e308", "-1e308", "1e999", "-1e999", "1" + "0" * 40,
                                                         "123456789012345678901234567890123"])))),
        ("bool_for_int", lambda: Case("bool_for_int", "application/json",
                                      _dump(record(**{rng.choice(ints): rng.choice([True, False])})))),
        ("wrong_type", lambda: Case("wrong_type", "application/json", _dump(record(**{
            rng.choice(schema.fields): rng.choice(["12", 1.5, [], {}, None, [1, 2], {"a": 1}, "", "NaN"])})))),
        ("nested_wrong_type", lambda: Case("nested_wrong_type", "application/json", _dump(in_nested(
            *rng.choice(nested_numeric), rng.choice(["1.0", True, [], {"x": 1}]))))),
        ("deep_nesting", lambda: Case("deep_nesting", "application/json", deep(rng.choice([40, 1000, 100_000])))),
        ("huge_string", lambda: Case("huge_string", "application/json", _dump(record(**{
            rng.choice(strings + ["unknown"]): "S" * rng.randint(10_000, max_body_bytes - 10_000)})))),
        ("huge_key", lambda: Case("huge_key", "application/json",
                                  _dump(record(**{"K" * rng.randint(1000, 500_000): 1})))),
        ("unknown_field", lambda: Case("unknown_field", "application/json",
                                       _dump(record(**{rng.choice(["x", "__proto__", "constructor", "$where"]): 1})))),
        ("outcome_field", lambda: Case("outcome_field", "application/json",
                                       _dump(record(**{rng.choice(spec.outcome_columns): 5})))),
        ("unicode", lambda: Case("unicode", "application/json", json.dumps(record(**{
            rng.choice(strings): rng.choice(unicode_samples)}), ensure_ascii=False).encode("utf-8"))),
        ("unicode_accepted", lambda: Case("unicode_accepted", "application/json", json.dumps(
            in_nested(*rng.choice(nested_strings), rng.choice([u for u in unicode_samples if len(u) <= 256]))
            if nested_strings else example,
            ensure_ascii=False).encode("utf-8"))),
        ("lone_surrogate", lambda: Case("lone_surrogate", "application/json",
                                        _dump(record(**{rng.choice(strings): "__X__"})).replace(b"__X__", b"\\udc00x"))),
        ("empty", lambda: Case("empty", "application/json", rng.choice([b"[]", b"{}", b"", b"  ", b"null", b"0",
                                                                       b'""', b"[[]]", b"[{}]", b"true"]))),
        ("batch_1001", lambda: Case("batch_1001", "application/json", _dump([example] * 1001))),
        ("bad_json", lambda: Case("bad_json", "application/json", rng.choice([
            b"{", b"}", b'{"year": }', b"{'year': 2013}", b'{"year": 2013,}', b"[1, 2", b"\xff\xfe\xfd",
            _dump(example)[:-3], b'{"year": 0x10}', b'{"year": 01}', b'{"year": +1}', b'{"a":1}{"b":2}',
            bytes(rng.getrandbits(8) for _ in range(200))]))),
        ("content_type", lambda: Case("content_type", rng.choice([None, "text/plain", "application/xml",
                                                                  "multipart/form-data", "application/jsonx"]),
                                      _dump(example))),
        ("oversize", lambda: Case("oversize", "application/json", b"[" + b"1," * (max_body_bytes // 2 + 10) + b"1]")),
        ("valid", lambda: Case("valid", "application/json", _dump(valid()))),
        ("valid_batch", lambda: Case("valid_batch", "application/json",
                                     _dump([valid() for _ in range(rng.randint(2, 50))]))),
    ]
    return [makers[i % len(makers)][1]() for i in range(n)]
