"""HTTP scoring that follows production: the champion of the newest champion state, hot-swapped without a restart.

- ``POST /predict``: one record or a list (the request model is derived from the dataset spec:
  ``serving.request``); features through the batch path's ``build_features`` over the stored context of the
  event's day (``serving.context``); scored by the champion's bundle with onnxruntime (no torch, no xgboost,
  no dagster in this process). The answer names the version that answered.
- Every answered request is logged before the response (``core.prediction_log``, one object per batch, local
  or S3); a log that cannot be written fails the request with 503: no prediction is ever returned unlogged.
- The champion is followed (``serving.models``): a background poll reads the newest champion state every
  ``poll_seconds``; a promotion or rollback loads and verifies the new bundle, then swaps it in atomically.
  ``bundle=PATH`` pins one bundle instead.
- Shadow mode: a challenger (default: the newest deployment bundle that is not the champion) scores each request
  in a worker thread, off the response path; its score is logged (``shadow``), never returned.
- ``GET /health`` (cheap: no model work), ``GET /model``, offline ``/docs`` and ``/redoc`` (assets served here;
  a same-origin Content-Security-Policy keeps the pages from reaching out).
- Hardening (``serving.hardening``): 413 before parsing, strict JSON (no NaN/Infinity), strict types and spec
  bounds, bounded 422 bodies; only genuine server faults are 5xx (logged).

Run: ``ml-assets serve`` or ``python -m ml_assets.serving.app --home .ml_assets [--bundle PATH]``.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import logging
import math
import sys
import uuid
from collections.abc import Callable
from typing import Any

import polars as pl
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, create_model
from starlette.exceptions import HTTPException as StarletteHTTPException

from ml_assets.core import prediction_log as LOG
from ml_assets.core.features import with_date
from ml_assets.core.spec import DatasetSpec
from ml_assets.core.storage import make_path
from ml_assets.serving.context import BatchTooVaried, ContextCache, online_features
from ml_assets.serving.hardening import (BodyLimit, Refusal, SameOriginOnly, bounded, is_json_content_type,
                                        parse_json)
from ml_assets.serving.models import ModelManager, Served
from ml_assets.serving.request import MAX_BATCH, RequestInvalid, RequestRows, parse_request, request_schema
from ml_assets.serving.shadow import ShadowJob, ShadowWorker, log_lines

log = logging.getLogger("ml_assets.serving")
SHADOW_PART = "shadow"


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class ErrorItem(BaseModel):
    type: str
    loc: list[str | int]
    msg: str
    input: str | None = None


class ErrorBody(BaseModel):
    detail: list[ErrorItem] | str
    error_count: int | None = None
    truncated: bool | None = None


class ModelVersion(BaseModel):
    model_version: str = Field(description="<model line>/<version> of the bundle that answered")
    line: str
    version: str


def _response_models(spec: DatasetSpec) -> tuple[type[BaseModel], type[BaseModel]]:
    prediction = create_model(
        "Prediction", __config__=ConfigDict(extra="forbid"),
        **{spec.prediction: (float, Field(ge=0, le=1, description=f"the probability that {spec.label.positive}")),
           spec.label.name: (bool | None, Field(description="the prediction is at or above the model's decision "
                                                            "threshold (null: the bundle has none)"))})
    response = create_model(
        "PredictResponse", __config__=ConfigDict(extra="forbid"),
        request_id=(str, Field(description="names this request's lines in the prediction log")),
        model_version=(str, Field(description="<model line>/<version> of the bundle that answered")),
        model=(ModelVersion, ...),
        predictions=(list[prediction], Field(description="one per record, in request order")))
    return prediction, response


def _error_response(status: int, errors: list[dict[str, Any]] | str, headers: dict | None = None) -> JSONResponse:
    body = {"detail": errors} if isinstance(errors, str) else bounded(errors)
    return JSONResponse(body, status_code=status, headers=headers)


def _check_ranges(spec: DatasetSpec, features: pl.DataFrame, single: bool) -> list[dict[str, Any]]:
    """Feature values outside the spec's ``features.ranges`` (the batch path refuses such rows too)."""
    errors = []
    for column, (low, high) in spec.features.ranges.items():
        if column not in features.columns:
            continue
        values = features[column].to_list()
        for i, v in enumerate(values):
            if v is not None and not (low <= v <= high):
                loc = ("body",) if single else ("body", i)
                errors.append({"type": "feature_range", "loc": (*loc, column),
                               "msg": f"feature {column} = {v:g} is outside its range [{low:g}, {high:g}]",
                               "input": v})
    return errors


def create_app(home: str, spec: DatasetSpec, *, bundle: str | None = None, challenger: str | None = "auto",
               poll_seconds: float = 2.0, max_body_bytes: int = 1_048_576,
               clock: Callable[[], dt.datetime] = _utc_now, max_batch: int = MAX_BATCH,
               context_ttl_seconds: float = 5.0) -> FastAPI:
    """The serving app over the storage root ``home`` (a folder or s3://...).

    ``bundle``: pin this bundle folder (default: follow the newest champion state). ``challenger``: "auto" (the
    newest deployment bundle that is not the champion), a bundle folder, or None (no shadow). A pinned bundle
    that fails verification raises ``BundleIntegrityError``; a followed one that fails is refused with a
    warning in /health (the previous one keeps serving)."""
    from fastapi_offline import FastAPIOffline

    root = make_path(home)
    schema = request_schema(spec, max_batch)
    manager = ModelManager(root, spec, bundle=bundle, challenger=challenger, clock=clock)
    manager.refresh()
    contexts = ContextCache(root, spec, ttl_seconds=context_ttl_seconds)
    contexts_by_spec: dict[int, ContextCache] = {}

    def context_for(served_spec: DatasetSpec) -> ContextCache:
        if served_spec == spec:
            return contexts
        return contexts_by_spec.setdefault(id(served_spec), ContextCache(root, served_spec,
                                                                         ttl_seconds=context_ttl_seconds))

    def write_shadow(lines: list[dict[str, Any]], request_id: str, when: dt.datetime) -> None:
        LOG.write_batch(root, spec.name, lines, request_id, when, part=SHADOW_PART)

    shadow = ShadowWorker(write_shadow)
    prediction_model, response_model = _response_models(spec)
    positive_field = spec.label.name

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        # everything loaded so far lives as long as the process: keep it out of the collector's full scans,
        # which would otherwise pause the event loop (and /health) for ~100 ms after a large request
        gc.collect()
        gc.freeze()
        # request work runs in worker threads; hand the GIL back to the event loop (which answers /health)
        # every millisecond rather than every 5
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
        manager.start(poll_seconds)
        try:
            yield
        finally:
            manager.stop()
            shadow.stop(timeout=5)

    app = FastAPIOffline(
        title=f"{spec.title}: {spec.prediction}", version="2", lifespan=lifespan,
        description=f"{spec.task} `{spec.prediction}`: the probability that {spec.label.positive}. Served by the "
                    "champion bundle (followed without a restart; see GET /model); every answer is logged.")
    app.state.manager = manager
    app.state.shadow = shadow
    app.state.schema = schema
    app.state.contexts = contexts
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(SameOriginOnly)

    # ------------------------------------------------------------------ errors: bounded, never an echo of the input

    @app.exception_handler(Refusal)
    async def _refusal(_request: Request, exc: Refusal) -> JSONResponse:
        return _error_response(exc.status, exc.errors)

    @app.exception_handler(RequestInvalid)
    async def _invalid(_request: Request, exc: RequestInvalid) -> JSONResponse:
        return _error_response(exc.status, exc.errors)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_response(422, list(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error_response(exc.status_code, str(exc.detail)[:200], headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _fault(request: Request, exc: Exception) -> JSONResponse:
        log.error("server fault on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal server error (logged)"}, status_code=500)

    # ------------------------------------------------------------------ the endpoints

    @app.get("/health", summary="Liveness and what answers (no model work)")
    async def health() -> JSONResponse:
        champion = manager.champion
        warnings = manager.warnings
        status = "unavailable" if champion is None else "degraded" if warnings else "ok"
        challenger_ = manager.challenger
        return JSONResponse({"status": status, "model_version": champion.model_version if champion else None,
                             "challenger_version": challenger_.model_version if challenger_ else None,
                             "following": manager.pinned is None, "state_day": manager.state_day,
                             "polled_at": manager.polled_at, "warnings": warnings, "shadow": shadow.stats()},
                            status_code=200 if champion is not None else 503)

    @app.get("/model", summary="Which bundle answers, since when, and the challenger")
    async def model() -> JSONResponse:
        champion = manager.champion
        if champion is None:
            raise Refusal(503, "no model to serve yet: " + "; ".join(manager.warnings))
        challenger_ = manager.challenger
        return JSONResponse({**champion.describe(), "following": manager.pinned is None,
                             "newest_state_day": manager.state_day, "polled_at": manager.polled_at,
                             "metrics": champion.bundle.metrics.get("overall"),
                             "inputs": champion.bundle.input_names,
                             "challenger": challenger_.describe() if challenger_ else None,
                             "warnings": manager.warnings})

    def features_for(served: Served, rows: RequestRows) -> pl.DataFrame:
        return online_features(served.spec, rows.events, rows.nested, context_for(served.spec))

    def answer(body: bytes) -> dict[str, Any]:
        data = parse_json(body)
        rows = parse_request(schema, data)
        served = manager.champion  # once: this request finishes on this model whatever is swapped meanwhile
        if served is None:
            raise Refusal(503, "no model to serve yet: " + "; ".join(manager.warnings))
        challenger_ = manager.challenger
        try:
            features = features_for(served, rows)
        except BatchTooVaried as exc:
            raise RequestInvalid([{"type": "too_varied", "loc": ("body",), "msg": str(exc)}]) from None
        errors = _check_ranges(served.spec, features, rows.single)
        if errors:
            raise RequestInvalid(errors)
        p = served.bundle.score(features, served.session)
        if len(p) != rows.height or not all(math.isfinite(x) for x in p):
            raise RuntimeError(f"{served.model_version} returned {len(p)} scores for {rows.height} rows, "
                               "or a non-finite one")
        request_id, when = uuid.uuid4().hex, clock()
        days = with_date(spec, rows.events).collect()["date"].to_list()
        lines = log_lines(served.spec, features, days, list(p), served.model_version, request_id, when)
        try:
            LOG.write_batch(root, spec.name, lines, request_id, when)
        except Exception as exc:  # noqa: BLE001 - any storage failure: refuse to answer unlogged
            log.error("prediction log write failed for request %s: %s", request_id, exc)
            raise Refusal(503, "the prediction log cannot be written: not answered (retry later)") from None
        if challenger_ is not None and challenger_.key != served.key:
            same = challenger_.spec == served.spec
            shadow.submit(ShadowJob(challenger=challenger_, features=features if same else None,
                                    build=None if same else (lambda: features_for(challenger_, rows)),
                                    lines=lines, request_id=request_id, when=when))
        threshold = served.bundle.threshold
        return {"request_id": request_id, "model_version": served.model_version,
                "model": {"model_version": served.model_version, "line": served.line, "version": served.version},
                "predictions": [{spec.prediction: float(x),
                                 positive_field: None if threshold is None else bool(x >= threshold)} for x in p]}

    error_responses = {status: {"model": ErrorBody, "description": text} for status, text in {
        413: "the body is larger than the limit", 415: "the body is not application/json",
        422: "the body is not valid JSON or not a valid request (each error names its field)",
        503: "no model yet, or the prediction log cannot be written (nothing was answered)"}.items()}

    @app.post("/predict", summary=f"{spec.prediction} for one record or a list of records",
              response_model=response_model, responses=error_responses,
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": {"$ref": "#/components/schemas/PredictBody"},
                  "example": spec.serving.example}}}})
    async def predict(request: Request):
        if not is_json_content_type(request.headers.get("content-type")):
            raise Refusal(415, "send the body as application/json")
        body = await request.body()
        result = await run_in_threadpool(answer, body)
        return JSONResponse(result)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            document = get_openapi(title=app.title, version=app.version, description=app.description,
                                   routes=app.routes)
            body = schema.body_json_schema()
            components = document.setdefault("components", {}).setdefault("schemas", {})
            components.update(body.pop("$defs", {}))
            body["title"] = "PredictBody"
            body["description"] = f"one {schema.record.__name__}, or a list of 1..{max_batch} of them"
            components["PredictBody"] = body
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi
    return app


def serve(home: str, spec: DatasetSpec, bundle: str | None = None, host: str = "127.0.0.1",
          port: int = 8000) -> None:
    """Run the app with uvicorn (one process; loopback only unless ``host`` says otherwise)."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(home, spec, bundle=bundle), host=host, port=port, log_level="info")


def main(argv: list[str] | None = None) -> None:
    from ml_assets import settings
    from ml_assets.core.spec import load_spec

    parser = argparse.ArgumentParser(prog="python -m ml_assets.serving.app", description=__doc__.split("\n")[0])
    parser.add_argument("--home", default=None, help="storage root (default: $ML_ASSETS_HOME or ./.ml_assets)")
    parser.add_argument("--dataset", default=None, help="dataset spec name or file (default: $ML_ASSETS_DATASET)")
    parser.add_argument("--bundle", default=None, help="serve this bundle folder only (default: follow the champion)")
    parser.add_argument("--challenger", default="auto", help="auto (default), none, or a bundle folder to shadow")
    parser.add_argument("--poll-seconds", type=float, default=2.0)
    parser.add_argument("--max-body-bytes", type=int, default=1_048_576)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    home = args.home or settings.home()
    app = create_app(home, load_spec(args.dataset), bundle=args.bundle,
                     challenger=None if args.challenger == "none" else args.challenger,
                     poll_seconds=args.poll_seconds, max_body_bytes=args.max_body_bytes)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
