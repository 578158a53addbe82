"""Bundle scoring (onnxruntime) vs native XGBoost predict of the same model on the same rows, same run.

A candidate is trained by ml_assets.core.training on the real window before --day, exported to ONNX and
written as a bundle (write_bundle, then load_bundle: manifest verified). Then, on that day's real feature rows
(and on a month of rows for a larger batch):

  batch         rows/s of Bundle.score (feed conversion + session.run) vs predict_xgboost (rates, design
                matrix, DMatrix, predict) vs booster.inplace_predict on a prepared matrix (the model alone);
  single row    p50/p99 latency per row of the same three, one row at a time (1 thread each), plus
                predict_xgboost with the booster left at its training thread count (2), as the project
                calls it: its ``nthread`` reaches only the DMatrix.

Ratios are bundle / native (throughput: > 1 means the bundle is faster; latency: < 1 means faster).

    .venv/bin/python bench/scoring.py [--day 2013-03-01] [--window 28] [--rows-single 1000]
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

from ml_assets.core.bundle import load_bundle, write_bundle  # noqa: E402
from ml_assets.core.features import build_features  # noqa: E402
from ml_assets.core.landing import source_tables  # noqa: E402
from ml_assets.core.onnx_export import export_onnx  # noqa: E402
from ml_assets.core.training.window import HistoryRates, apply_history_rates, split_window  # noqa: E402
from ml_assets.core.training.xgb import design_matrix, predict_xgboost, train_xgboost  # noqa: E402

BATCH_THREADS = 2    # the machine's cores
SINGLE_THREADS = 1   # a server scoring one request per worker
MIN_SECONDS = 2.0    # repeat a batch until at least this long, for a stable rate


def rows_per_second(score, frame) -> float:
    score(frame)  # warm-up: first-call allocations and lazy initialization are not throughput
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < MIN_SECONDS:
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


def model_matrix(model, frame: pl.DataFrame) -> np.ndarray:
    """What the booster itself receives: history rates attached, categoricals coded, float32."""
    return design_matrix(apply_history_rates(frame, HistoryRates.from_json(model.spec["history_rates"])), model.spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--day", default="2013-03-01")
    ap.add_argument("--window", type=int, default=28)
    ap.add_argument("--rows-single", type=int, default=1000)
    a = ap.parse_args()
    day = dt.date.fromisoformat(a.day)
    load0 = os.getloadavg()[0]
    t = source_tables()
    features = build_features(t["flights"], t["weather"], t["planes"])
    train, valid = split_window(features, day, a.window)
    model = train_xgboost(train, valid, seed=0, nthread=BATCH_THREADS)
    day_rows = features.filter(pl.col("date") == day)
    month_rows = features.filter((pl.col("date").dt.month() == day.month))

    with tempfile.TemporaryDirectory(prefix="bench_scoring_") as tmp:
        path = write_bundle(tmp, "1.0.0", export_onnx(model), model.spec, metrics={}, lineage={})
        bundle = load_bundle(path)
    batch_session, single_session = bundle.session(BATCH_THREADS), bundle.session(SINGLE_THREADS)
    parity = float(np.max(np.abs(bundle.score(day_rows, batch_session) - predict_xgboost(model, day_rows))))

    def native(nthread: int):
        """predict_xgboost passes nthread to the DMatrix only: the booster keeps the thread count it was
        trained with unless set here, so it is set explicitly for each measurement."""
        model.booster.set_param({"nthread": nthread})
        return lambda f: predict_xgboost(model, f, nthread=nthread)

    def inplace(nthread: int):
        model.booster.set_param({"nthread": nthread})
        return lambda x: model.booster.inplace_predict(x)

    batch = {}
    for name, frame in (("day", day_rows), ("month", month_rows)):
        prepared = model_matrix(model, frame)
        batch[name] = {
            "rows": frame.height,
            "bundle_rows_per_s": round(rows_per_second(lambda f: bundle.score(f, batch_session), frame)),
            "native_predict_rows_per_s": round(rows_per_second(native(BATCH_THREADS), frame)),
            "native_inplace_model_only_rows_per_s": round(rows_per_second(inplace(BATCH_THREADS), prepared)),
        }
        b = batch[name]
        b["throughput_ratio_bundle_vs_native_predict"] = round(b["bundle_rows_per_s"] / b["native_predict_rows_per_s"], 2)
        b["throughput_ratio_bundle_vs_inplace"] = round(b["bundle_rows_per_s"] / b["native_inplace_model_only_rows_per_s"], 2)

    singles = [day_rows.slice(i % day_rows.height, 1) for i in range(a.rows_single)]
    prepared_singles = [model_matrix(model, r) for r in singles]
    single = {
        "bundle": latency_ms(lambda r: bundle.score(r, single_session), singles),
        "native_predict": latency_ms(native(SINGLE_THREADS), singles),
        "native_inplace_model_only": latency_ms(inplace(SINGLE_THREADS), prepared_singles),
        # As the project's predict_xgboost runs it by default: the booster at its training threads.
        "native_predict_booster_at_training_threads": latency_ms(native(BATCH_THREADS), singles),
    }
    for ref in ("native_predict", "native_inplace_model_only"):
        single[f"p50_ratio_bundle_vs_{ref}"] = round(single["bundle"]["p50_ms"] / single[ref]["p50_ms"], 2)
        single[f"p99_ratio_bundle_vs_{ref}"] = round(single["bundle"]["p99_ms"] / single[ref]["p99_ms"], 2)
    print(json.dumps({"batch": batch}))
    print(json.dumps({"single_row": single}))
    print(json.dumps({"bench": "scoring", "day": a.day, "window": a.window, "trees": model.spec["n_trees"],
                      "onnx_vs_native_max_abs_diff": parity, "batch_threads": BATCH_THREADS,
                      "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                      "single_threads": SINGLE_THREADS, "batch": batch, "single_row": single,
                      "loadavg_1min_start_end": [round(load0, 2), round(os.getloadavg()[0], 2)]}))


if __name__ == "__main__":
    main()
