"""HTTP scoring of one deployment bundle: raw flight records in, ``p_late`` out, every prediction logged.

- The bundle is loaded once through ``load_bundle`` (MANIFEST verified; a tampered bundle never serves) and
  scored with onnxruntime only: no torch, no xgboost, nothing unpickled.
- Records become features through the SAME ``build_features`` used for training: the request is turned into
  the three raw frames (flights, weather, planes) that function takes. Weather and plane data are optional
  parts of a record; what is not given is missing (NaN), exactly as for a flight without a weather reading.
  A record's features never depend on the other records of a batch (see ``_independent_groups``).
- ``POST /predict`` takes one record or a list; ``GET /health``; ``GET /model`` (version, metrics, lineage).
- Validation errors are 422 with pydantic's detail (field path and message); an origin the model was not
  trained on is refused the same way.
- Each prediction is one JSON line in ``<log_dir>/predictions-YYYY-MM-DD.jsonl`` (UTC day of the request):
  request id, UTC timestamp, model version, the raw record, its features and ``p_late``; appended with a
  single write per request and flushed before the response is sent.

Run: ``ml-assets serve`` (the champion), or ``python -m ml_assets.serving.app --bundle
.ml_assets/bundles/flight_delay_xgboost/1.0.0 --log-dir .ml_assets/predictions``
(binds 127.0.0.1:8000 by default).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import threading
import uuid
from pathlib import Path
from typing import Annotated, Any, Callable

import polars as pl
from fastapi import Body, FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from ml_assets.core.bundle import Bundle, load_bundle
from ml_assets.core.features import FEATURES, KEY_COLUMNS, WEATHER_COLUMNS, build_features

MAX_BATCH = 1000
DEFAULT_ORIGINS = ("EWR", "JFK", "LGA")  # the landing contract (core.schemas.ORIGINS), without importing pandera
LOG_PREFIX = "predictions-"

HHMM = Annotated[int, Field(ge=0, le=2359, description="local time as HHMM, e.g. 1345")]


class Weather(BaseModel):
    """Origin weather at the scheduled departure hour (a forecast, in production). Every field optional."""

    model_config = ConfigDict(extra="forbid")
    temp: float | None = Field(None, ge=-60, le=130, description="°F")
    dewp: float | None = Field(None, ge=-80, le=100, description="dew point, °F")
    humid: float | None = Field(None, ge=0, le=100, description="relative humidity, %")
    wind_dir: float | None = Field(None, ge=0, le=360, description="degrees")
    wind_speed: float | None = Field(None, ge=0, description="mph (above 150 treated as a sensor fault)")
    wind_gust: float | None = Field(None, ge=0, description="mph")
    precip: float | None = Field(None, ge=0, description="inches")
    pressure: float | None = Field(None, ge=900, le=1100, description="millibars")
    visib: float | None = Field(None, ge=0, description="miles")


class Plane(BaseModel):
    """The aircraft (requires the record's ``tailnum``). Every field optional."""

    model_config = ConfigDict(extra="forbid")
    year_of_manufacture: int | None = Field(None, ge=1900, le=2100)
    seats: int | None = Field(None, ge=0, le=1000)
    engines: int | None = Field(None, ge=0, le=8)


class FlightRecord(BaseModel):
    """One scheduled flight as known the evening before. Outcome fields (delays, actual times) are refused."""

    model_config = ConfigDict(extra="forbid")
    year: int = Field(ge=2000, le=2100)
    month: int = Field(ge=1, le=12)
    day: int = Field(ge=1, le=31)
    sched_dep_time: HHMM
    sched_arr_time: HHMM
    carrier: str = Field(pattern=r"^[A-Z0-9]{2}$", description="two-character carrier code, e.g. UA")
    flight: int = Field(ge=1, le=99999)
    tailnum: str | None = Field(None, pattern=r"^[A-Z0-9]{1,10}$")
    origin: str = Field(pattern=r"^[A-Z0-9]{3}$", description="origin airport the model knows (see GET /model)")
    dest: str = Field(pattern=r"^[A-Z0-9]{3}$")
    distance: int = Field(ge=0, le=10_000, description="miles")
    weather: Weather | None = None
    plane: Plane | None = None

    @field_validator("sched_dep_time", "sched_arr_time")
    @classmethod
    def _hhmm(cls, value: int) -> int:
        if value % 100 > 59:
            raise ValueError(f"{value} is not HHMM (minutes above 59)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FlightRecord:
        problems = []
        try:
            dt.date(self.year, self.month, self.day)
        except ValueError as exc:
            problems.append(f"year/month/day is not a calendar date: {exc}")
        if self.plane is not None and self.tailnum is None:
            problems.append("plane data needs the tailnum it belongs to")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Prediction(BaseModel):
    p_late: float
    late: bool | None = Field(description="p_late >= the model's threshold (null when the bundle has none)")


class PredictResponse(BaseModel):
    model_version: str
    request_id: str
    predictions: list[Prediction]


_ONE = TypeAdapter(FlightRecord)
_MANY = TypeAdapter(list[FlightRecord])


def parse_records(body: Any, max_batch: int = MAX_BATCH) -> list[FlightRecord]:
    """One record or a list of records -> list; errors located as ``body[, index], field``."""
    try:
        if isinstance(body, list):
            if not body:
                raise RequestValidationError([_error(("body",), "at least one record is required", body)])
            if len(body) > max_batch:
                raise RequestValidationError([_error(("body",), f"at most {max_batch} records per request",
                                                     len(body))])
            return _MANY.validate_python(body)
        return [_ONE.validate_python(body)]
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False, include_context=False)]
        ) from None


def _error(loc: tuple, msg: str, value: Any) -> dict[str, Any]:
    return {"type": "value_error", "loc": loc, "msg": msg, "input": value}


# ---------------------------------------------------------------- records -> raw frames -> build_features

_FLIGHTS_SCHEMA = {"year": pl.Int64, "month": pl.Int64, "day": pl.Int64, "sched_dep_time": pl.Int64,
                   "sched_arr_time": pl.Int64, "carrier": pl.String, "flight": pl.Int64, "tailnum": pl.String,
                   "origin": pl.String, "dest": pl.String, "distance": pl.Int64}
_WEATHER_SCHEMA = {"origin": pl.String, "year": pl.Int64, "month": pl.Int64, "day": pl.Int64, "hour": pl.Int64,
                   **{c: pl.Float64 for c in WEATHER_COLUMNS}}
_PLANES_SCHEMA = {"tailnum": pl.String, "year": pl.Int64, "seats": pl.Int64, "engines": pl.Int64}


def _weather_key(r: FlightRecord) -> tuple:
    return (r.origin, r.year, r.month, r.day, r.sched_dep_time // 100)


def _independent_groups(records: list[FlightRecord]) -> list[list[int]]:
    """Split a batch so that within a group no two records disagree about the weather at the same
    (origin, day, hour) or about the same plane: ``build_features`` joins weather and planes by those keys,
    so without this a record could pick up another record's weather. Usually one group."""
    groups: list[tuple[list[int], dict, dict]] = []
    for i, r in enumerate(records):
        weather, plane = (r.weather.model_dump() if r.weather else None), (r.plane.model_dump() if r.plane else None)
        wkey = _weather_key(r)
        for members, weathers, planes in groups:
            if weathers.get(wkey, weather) == weather and (r.tailnum is None or planes.get(r.tailnum, plane) == plane):
                break
        else:
            members, weathers, planes = [], {}, {}
            groups.append((members, weathers, planes))
        members.append(i)
        weathers[wkey] = weather
        if r.tailnum is not None:
            planes[r.tailnum] = plane
    return [members for members, _, _ in groups]


def raw_frames(records: list[FlightRecord]) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The flights, weather and planes frames ``build_features`` takes, from request records."""
    flights = pl.DataFrame([{k: getattr(r, k) for k in _FLIGHTS_SCHEMA} for r in records], schema=_FLIGHTS_SCHEMA)
    weather_rows = [{"origin": r.origin, "year": r.year, "month": r.month, "day": r.day,
                     "hour": r.sched_dep_time // 100, **r.weather.model_dump()} for r in records if r.weather]
    plane_rows = [{"tailnum": r.tailnum, "year": r.plane.year_of_manufacture, "seats": r.plane.seats,
                   "engines": r.plane.engines} for r in records if r.plane and r.tailnum]
    weather = pl.DataFrame(weather_rows, schema=_WEATHER_SCHEMA)
    planes = pl.DataFrame(plane_rows, schema=_PLANES_SCHEMA)
    return flights, weather, planes


def record_features(records: list[FlightRecord]) -> pl.DataFrame:
    """One feature row per record, in request order, through ``build_features``."""
    parts, order = [], []
    for group in _independent_groups(records):
        parts.append(build_features(*raw_frames([records[i] for i in group])))
        order += group
    frame = pl.concat(parts, how="vertical") if len(parts) > 1 else parts[0]
    if frame.height != len(records):
        raise RuntimeError(f"build_features returned {frame.height} rows for {len(records)} records")
    if len(parts) > 1:
        position = {original: row for row, original in enumerate(order)}
        frame = frame.select(pl.all().gather([position[i] for i in range(len(records))]))
    return frame


# ---------------------------------------------------------------- prediction log


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class PredictionLog:
    """JSON lines appended to ``<dir>/predictions-YYYY-MM-DD.jsonl`` (UTC day), one write + flush per request."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def path_for(self, when: dt.datetime) -> Path:
        return self.directory / f"{LOG_PREFIX}{when.astimezone(dt.timezone.utc).date().isoformat()}.jsonl"

    def append(self, lines: list[dict[str, Any]], when: dt.datetime) -> Path:
        data = "".join(json.dumps(line, default=str, allow_nan=False, separators=(",", ":")) + "\n"
                       for line in lines)
        path = self.path_for(when)
        with self._lock, open(path, "a", encoding="utf-8") as fh:
            fh.write(data)
            fh.flush()
        return path


def _feature_rows(features: pl.DataFrame) -> list[dict[str, Any]]:
    columns = list(dict.fromkeys(KEY_COLUMNS + FEATURES))
    rows = features.select(columns).with_columns(pl.col("date").cast(pl.String)).to_dicts()
    return [{k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()} for row in rows]


# ---------------------------------------------------------------- the app


def create_app(
    bundle_path: str | os.PathLike,
    prediction_log_dir: str | os.PathLike,
    *,
    max_batch: int = MAX_BATCH,
    clock: Callable[[], dt.datetime] = _utc_now,
) -> FastAPI:
    """A FastAPI app serving the bundle at ``bundle_path`` (verified on load; raises ``BundleIntegrityError``)."""
    bundle: Bundle = load_bundle(bundle_path)
    session = bundle.session()
    log = PredictionLog(prediction_log_dir)
    origins = sorted(bundle.vocabularies.get("origin") or DEFAULT_ORIGINS)
    threshold = bundle.threshold

    app = FastAPI(title="ml_assets flight delay model", version=bundle.version,
                  description="p_late: probability that a scheduled flight arrives more than 15 minutes late.")
    app.state.bundle = bundle
    app.state.prediction_log = log

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model_version": bundle.version}

    @app.get("/model")
    def model() -> dict[str, Any]:
        return {"version": bundle.version, "model_line": bundle.model_line, "family": bundle.family,
                "feature_code_version": bundle.features.get("feature_code_version"), "threshold": threshold,
                "origins": origins, "inputs": bundle.features["inputs"], "metrics": bundle.metrics,
                "lineage": bundle.lineage}

    @app.post("/predict", response_model=PredictResponse)
    def predict(
        body: Annotated[Any, Body(description="one flight record, or a list of them (see FlightRecord)")],
    ) -> PredictResponse:
        records = parse_records(body, max_batch)
        unknown = [_error(("body", *(() if not isinstance(body, list) else (i,)), "origin"),
                          f"unknown origin {r.origin!r}: this model serves {', '.join(origins)}", r.origin)
                   for i, r in enumerate(records) if r.origin not in origins]
        if unknown:
            raise RequestValidationError(unknown)
        features = record_features(records)
        p = bundle.score(features, session)
        now, request_id = clock(), uuid.uuid4().hex
        stamp = now.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
        log.append([{"ts": stamp, "request_id": request_id, "model_version": bundle.version,
                     "request": r.model_dump(), "features": f, "p_late": float(pi)}
                    for r, f, pi in zip(records, _feature_rows(features), p)], now)
        return PredictResponse(model_version=bundle.version, request_id=request_id, predictions=[
            Prediction(p_late=float(pi), late=None if threshold is None else bool(pi >= threshold)) for pi in p])

    _document_request_body(app)
    return app


def _document_request_body(app: FastAPI) -> None:
    """The body is validated by hand (clean error locations); describe it in the OpenAPI schema anyway."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            body = TypeAdapter(FlightRecord | list[FlightRecord]).json_schema(
                ref_template="#/components/schemas/{model}")
            schema.setdefault("components", {}).setdefault("schemas", {}).update(body.pop("$defs", {}))
            content = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
            content["schema"] = body
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


def serve(bundle_path: str | os.PathLike, log_dir: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the app with uvicorn (one process; loopback only unless ``host`` says otherwise)."""
    import uvicorn

    uvicorn.run(create_app(bundle_path, log_dir), host=host, port=port, log_level="info")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ml_assets.serving.app", description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", required=True, help="bundle folder, e.g. .ml_assets/bundles/flight_delay_xgboost/1.0.0")
    parser.add_argument("--log-dir", required=True, help="folder for predictions-YYYY-MM-DD.jsonl")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    serve(args.bundle, args.log_dir, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
