"""Nothing a client sends makes the server answer 5xx, and no error body echoes more than a bounded excerpt.

- ``BodyLimit``: an ASGI middleware answering 413 before anything is parsed when the Content-Length is above
  the limit, or when the streamed bytes exceed it (chunked bodies, lying headers); 400 for a malformed
  Content-Length.
- ``parse_json``: strict JSON. Python's json module accepts ``NaN``, ``Infinity`` and ``-Infinity`` and turns
  ``1e999`` into inf: each is refused (422) naming where it is; so are integers of more than ``MAX_INT_DIGITS``
  digits, lone UTF-16 surrogates (not encodable), nesting deeper than ``MAX_DEPTH``, invalid UTF-8 and an empty
  body.
- ``SameOriginOnly``: every response carries a Content-Security-Policy that lets a page load only from this
  server, so the offline ``/docs`` and ``/redoc`` pages never reach out (ReDoc's bundle links a logo on a CDN: the
  browser refuses it instead of trying the network).
- ``bounded``: at most ``MAX_ERRORS`` errors, each field at most ``MAX_CHARS`` characters (ASCII-escaped), so a
  1 MB string is never sent back.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

MAX_ERRORS = 20
MAX_CHARS = 200
MAX_DEPTH = 32
MAX_INT_DIGITS = 30


class Refusal(Exception):
    """An answer other than 200 with pydantic-style ``errors`` (type, loc, msg, input) or a message."""

    def __init__(self, status: int, errors: list[dict[str, Any]] | str):
        super().__init__(errors if isinstance(errors, str) else f"{len(errors)} error(s)")
        self.status = status
        self.errors = errors


# ---------------------------------------------------------------------------------------------- bounded bodies


def safe_text(value: Any, limit: int = MAX_CHARS) -> str:
    """Printable ASCII, at most ``limit`` characters (+ an ellipsis)."""
    text = value if isinstance(value, str) else str(value)
    text = text[: limit * 2]
    text = json.dumps(text, ensure_ascii=True)[1:-1]  # escapes surrogates and control characters
    return text if len(text) <= limit else text[:limit] + "..."


def excerpt(value: Any, limit: int = MAX_CHARS) -> str:
    """A JSON-ish excerpt of any parsed input, built within ``limit`` characters (never a full dump)."""
    out: list[str] = []
    size = 0

    def emit(text: str) -> bool:
        nonlocal size
        out.append(text)
        size += len(text)
        return size <= limit

    def walk(v: Any, depth: int) -> bool:
        if isinstance(v, dict):
            if depth > 3:
                return emit("{...}")
            if not emit("{"):
                return False
            for n, (k, item) in enumerate(v.items()):
                if n and not emit(", "):
                    return False
                if not emit(json.dumps(safe_text(k, 60)) + ": ") or not walk(item, depth + 1):
                    return False
            return emit("}")
        if isinstance(v, (list, tuple)):
            if depth > 3:
                return emit("[...]")
            if not emit("["):
                return False
            for n, item in enumerate(v):
                if n and not emit(", "):
                    return False
                if not walk(item, depth + 1):
                    return False
            return emit("]")
        if isinstance(v, str):
            return emit(json.dumps(safe_text(v, limit)))
        if isinstance(v, bool) or v is None:
            return emit(json.dumps(v))
        if isinstance(v, int):
            text = str(v) if v.bit_length() < 200 else f"<an integer of about {int(v.bit_length() * 0.30103)} digits>"
            return emit(text)
        if isinstance(v, float):
            return emit(repr(v))
        return emit(safe_text(repr(v), 60))

    walk(value, 0)
    text = "".join(out)
    return text if len(text) <= limit else text[:limit] + "..."


def bounded(errors: Iterable[dict[str, Any]], max_errors: int = MAX_ERRORS, max_chars: int = MAX_CHARS
            ) -> dict[str, Any]:
    """The 422 body: ``detail`` (at most ``max_errors`` entries, each bounded) and the total count."""
    errors = list(errors)
    detail = []
    for e in errors[:max_errors]:
        item = {"type": safe_text(e.get("type", "value_error"), 60),
                "loc": [x if isinstance(x, int) and not isinstance(x, bool) else safe_text(x, 60)
                        for x in list(e.get("loc", ()))[:10]],
                "msg": safe_text(e.get("msg", ""), max_chars)}
        if "input" in e:
            item["input"] = excerpt(e["input"], max_chars)
        detail.append(item)
    return {"detail": detail, "error_count": len(errors), "truncated": len(errors) > max_errors}


# ---------------------------------------------------------------------------------------------- strict JSON


class _Bad:
    """A value JSON parsing produced that no field may hold (NaN, an infinite or huge number)."""

    __slots__ = ("text", "why")

    def __init__(self, text: str, why: str):
        self.text, self.why = text, why


def _constant(text: str) -> _Bad:
    return _Bad(text, f"{text} is not a number JSON allows (no NaN or Infinity)")


def _float(text: str) -> float | _Bad:
    value = float(text)
    if not math.isfinite(value):
        return _Bad(text[:40], f"{text[:40]} is out of the range of a number")
    return value


def _int(text: str) -> int | _Bad:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        return _Bad(text[:40], f"an integer of {digits} digits is out of range")
    return int(text)


def _bad_values(value: Any, max_depth: int) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = []
    stack: list[tuple[tuple, Any, int]] = [(("body",), value, 0)]
    while stack and len(errors) <= MAX_ERRORS:
        loc, v, depth = stack.pop()
        if isinstance(v, _Bad):
            errors.append({"type": "finite_number", "loc": loc, "msg": v.why, "input": v.text})
        elif isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                errors.append({"type": "string_unicode", "loc": loc,
                               "msg": "the string holds a lone UTF-16 surrogate: not valid Unicode", "input": v})
        elif isinstance(v, (dict, list)):
            if depth >= max_depth:
                errors.append({"type": "too_deep", "loc": loc, "msg": f"nested deeper than {max_depth} levels",
                               "input": "..."})
                continue
            items = v.items() if isinstance(v, dict) else enumerate(v)
            for k, item in items:
                if isinstance(k, str):
                    try:
                        k.encode("utf-8")
                    except UnicodeEncodeError:
                        errors.append({"type": "string_unicode", "loc": loc, "input": k,
                                       "msg": "a key holds a lone UTF-16 surrogate: not valid Unicode"})
                        continue
                stack.append(((*loc, k), item, depth + 1))
    errors.sort(key=lambda e: [str(x) for x in e["loc"]])
    return errors


def parse_json(body: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """Strict JSON -> Python; raises ``Refusal(422)`` naming what and where."""
    if not body.strip():
        raise Refusal(422, [{"type": "missing", "loc": ("body",), "msg": "empty body: send a JSON object (one "
                                                                       "record) or a list of records"}])
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refusal(422, [{"type": "json_invalid", "loc": ("body", exc.start),
                             "msg": f"the body is not UTF-8 (byte {exc.start})"}]) from None
    try:
        value = json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except json.JSONDecodeError as exc:
        raise Refusal(422, [{"type": "json_invalid", "loc": ("body", exc.pos),
                             "msg": f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"}]) from None
    except RecursionError:
        raise Refusal(422, [{"type": "too_deep", "loc": ("body",),
                             "msg": f"nested far deeper than {max_depth} levels"}]) from None
    except ValueError as exc:  # e.g. a number Python refuses to convert
        raise Refusal(422, [{"type": "json_invalid", "loc": ("body",), "msg": f"invalid JSON: {exc}"}]) from None
    errors = _bad_values(value, max_depth)
    if errors:
        raise Refusal(422, errors)
    return value


def is_json_content_type(value: str | None) -> bool:
    if not value:
        return False
    media = value.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


# ---------------------------------------------------------------------------------------------- same origin

CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'")


class SameOriginOnly:
    """ASGI middleware: adds ``Content-Security-Policy: CSP`` to every HTTP response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_policy(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"content-security-policy", CSP.encode())]}
            await send(message)

        return await self.app(scope, receive, with_policy)


# ---------------------------------------------------------------------------------------------- body size


class BodyLimit:
    """ASGI middleware: 413 for a body over ``max_bytes`` (declared or streamed) before the app reads it.

    The body is buffered here (at most ``max_bytes``) and replayed to the app, so the app never sees a
    partial body and the limit holds whatever the client claims."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def _reply(self, send, status: int, message: str) -> None:
        body = json.dumps({"detail": [{"type": "body_size" if status == 413 else "content_length",
                                       "loc": ["body"], "msg": message}]}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        lengths = [v for k, v in scope.get("headers", []) if k.lower() == b"content-length"]
        if lengths:
            text = lengths[0].decode("latin-1").strip()
            if len(set(lengths)) > 1 or not text.isdigit() or len(text) > 18:
                return await self._reply(send, 400, "malformed Content-Length header")
            if int(text) > self.max_bytes:
                return await self._reply(send, 413, f"the body ({int(text)} bytes) is larger than "
                                                    f"{self.max_bytes} bytes")
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            if message["type"] != "http.request":
                continue
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return await self._reply(send, 413, f"the body is larger than {self.max_bytes} bytes")
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as the server would

        return await self.app(scope, replay, send)
