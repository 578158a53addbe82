"""P4: one synthetic day of N flights (default 10M) through features + batch scoring in bounded memory,
vs a plain eager polars read + xgboost predict, same run. JSON last line.

1. generate  (subprocess) ml_assets.core.synthetic writes the day into a temp landing zone, chunk by chunk
             (flights as one parquet file, one row group per chunk; weather; planes).
2. model     an xgboost candidate trained by ml_assets.core.training on a real 14-day window before the day,
             exported to ONNX and written as a bundle (ml_assets.core.bundle.write_bundle); a plain
             xgboost.XGBClassifier trained on the same rows (plain features) for the baseline.
3. project   (subprocess) scan_parquet(...).collect_batches(): build_features + Bundle.score per batch of
             --batch-rows, predictions appended to a parquet file. Peak RSS from getrusage in that process.
4. baseline  (subprocess) pl.read_parquet of the whole day, a join with the weather, to_pandas with
             categories, XGBClassifier.predict_proba, predictions written at once (--baseline-rows, default N).

    .venv/bin/python bench/big_day.py --rows 10000000 [--batch-rows 500000] [--baseline-rows N]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# On a shared machine, OpenMP threads that spin while they wait (libgomp's default) slow xgboost and torch
# down up to tenfold (measured: the plain baseline, 10 days, 368 s spinning vs 34 s passive, same load). Every
# side of every comparison here runs with the same passive policy; set OMP_WAIT_POLICY yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

DAY = dt.date(2013, 6, 15)
TRAIN_DAYS = 14
GOAL_PEAK_RSS_GIB = 4.0
THREADS = 2  # the machine's cores: onnxruntime and xgboost alike
PLAIN_FEATURES = ["carrier", "origin", "dest", "sched_dep_time", "sched_arr_time", "distance", "hour",
                  "temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"]
PLAIN_CATEGORICAL = ["carrier", "origin", "dest"]
KEYS = ["carrier", "flight", "origin", "sched_dep_time"]


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is KiB on Linux


def flights_file(landing_root: Path) -> Path:
    return landing_root / "landing" / "flights" / f"date={DAY}" / "v0001.parquet"


# ---------------------------------------------------------------- 1. generate (subprocess)


def generate(work: Path, rows: int, chunk_rows: int, seed: int) -> dict:
    """Land the synthetic day: flights appended chunk by chunk (temp file, then rename, as landing does)."""
    import pyarrow.parquet as pq

    from ml_assets.core import synthetic
    from ml_assets.core.landing import source_tables
    from ml_assets.core.storage import make_path, write_parquet

    t0 = time.time()
    profile = synthetic.fit_profile(source_tables())
    target = flights_file(work)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(".v0001.parquet.tmp")
    writer = None
    for chunk in synthetic.flight_chunks(profile, DAY, rows, seed=seed, chunk_rows=chunk_rows):
        table = chunk.to_arrow()
        writer = writer or pq.ParquetWriter(tmp, table.schema, compression="zstd")
        writer.write_table(table, row_group_size=chunk_rows)
    writer.close()
    os.replace(tmp, target)
    root = make_path(str(work))
    write_parquet(root / "landing" / "weather" / f"date={DAY}" / "v0001.parquet", synthetic.synthetic_weather(profile, DAY, seed))
    write_parquet(root / "landing" / "planes" / "v0001.parquet", profile.planes)
    return {"rows": rows, "bytes": target.stat().st_size, "seconds": round(time.time() - t0, 1),
            "peak_rss_gib": round(peak_rss_gib(), 3)}


# ---------------------------------------------------------------- 2. models (parent)


def real_window():
    import polars as pl

    from ml_assets.core.features import build_features
    from ml_assets.core.landing import source_tables

    t = source_tables()
    start = DAY - dt.timedelta(days=TRAIN_DAYS)
    flights = t["flights"].filter(pl.date("year", "month", "day").is_between(start, DAY, closed="left"))
    return flights, t["weather"], t["planes"], build_features(flights, t["weather"], t["planes"])


def build_models(work: Path) -> dict:
    """The project's bundle and the plain XGBClassifier, both learned from the same real 14 days."""
    import polars as pl
    import xgboost as xgb

    from ml_assets.core.bundle import write_bundle
    from ml_assets.core.onnx_export import export_onnx
    from ml_assets.core.training.window import split_window
    from ml_assets.core.training.xgb import train_xgboost

    flights, weather, _, features = real_window()
    train, valid = split_window(features, DAY, TRAIN_DAYS)
    # No validation rows = no early stopping: 200 trees of depth 6 like the plain model, so both score the
    # same amount of trees (early stopping keeps ~10 on this window, which would flatter the project).
    model = train_xgboost(pl.concat([train, valid]), valid.head(0), seed=0, nthread=THREADS)
    bundle = write_bundle(work / "home", "1.0.0", export_onnx(model), model.spec, metrics={},
                          lineage={"note": "bench/big_day.py: real window before the synthetic day"})
    labelled = flights.filter(flights["arr_delay"].is_not_null())
    plain, y = plain_frame(labelled, weather), (labelled["arr_delay"] > 15).to_numpy()
    clf = xgb.XGBClassifier(n_estimators=200, max_depth=6, learning_rate=0.1, tree_method="hist",
                            enable_categorical=True, n_jobs=THREADS, random_state=0)
    clf.fit(to_pandas(plain), y)
    clf.save_model(work / "plain.ubj")
    return {"bundle": str(bundle), "plain_model": str(work / "plain.ubj"), "train_rows": train.height,
            "trees": model.spec["n_trees"]}


# ---------------------------------------------------------------- 3. project (subprocess)


def project(work: Path, bundle_path: str, batch_rows: int) -> dict:
    """Streaming: batches from scan_parquet, the project's feature function and the bundle per batch."""
    import polars as pl
    import pyarrow.parquet as pq

    from ml_assets.core import landing
    from ml_assets.core.bundle import load_bundle
    from ml_assets.core.features import build_features
    from ml_assets.core.storage import make_path

    root = make_path(str(work))
    t0 = time.time()
    weather = landing.read_landed(landing.latest_file(root, "weather", DAY))
    planes = landing.read_landed(landing.planes_file(root))
    bundle = load_bundle(bundle_path)
    session = bundle.session(threads=THREADS)
    seconds = {"read": 0.0, "features": 0.0, "score": 0.0, "write": 0.0}
    rows, writer, out = 0, None, work / "project_predictions.parquet"
    batches = pl.scan_parquet(landing.latest_file(root, "flights", DAY)).collect_batches(chunk_size=batch_rows)
    while True:
        t = time.perf_counter()
        batch = next(batches, None)
        seconds["read"] += time.perf_counter() - t
        if batch is None:
            break
        t = time.perf_counter()
        features = build_features(batch, weather, planes)
        seconds["features"] += time.perf_counter() - t
        t = time.perf_counter()
        p = bundle.score(features, session)
        seconds["score"] += time.perf_counter() - t
        t = time.perf_counter()
        table = features.select(KEYS).with_columns(p_late=pl.Series(p, dtype=pl.Float32)).to_arrow()
        writer = writer or pq.ParquetWriter(out, table.schema, compression="zstd")
        writer.write_table(table)
        seconds["write"] += time.perf_counter() - t
        rows += batch.height
    writer.close()
    wall = time.time() - t0
    return {"rows": rows, "seconds": round(wall, 1), "rows_per_s": round(rows / wall),
            "peak_rss_gib": round(peak_rss_gib(), 3), "batch_rows": batch_rows,
            "seconds_by_stage": {k: round(v, 1) for k, v in seconds.items()}}


# ---------------------------------------------------------------- 4. baseline (subprocess)


def plain_frame(flights, weather):
    """The plain path's features: the flight columns plus origin weather at the scheduled hour."""
    import polars as pl

    wx = weather.unique(["origin", "year", "month", "day", "hour"], keep="first").drop("time_hour", strict=False)
    joined = flights.join(wx, on=["origin", "year", "month", "day", "hour"], how="left", maintain_order="left")
    return joined.select(PLAIN_FEATURES).with_columns(
        pl.col(c).cast(pl.Float64) for c in PLAIN_FEATURES if c not in PLAIN_CATEGORICAL)


def to_pandas(frame):
    pdf = frame.to_pandas()
    for c in PLAIN_CATEGORICAL:
        pdf[c] = pdf[c].astype("category")
    return pdf


def baseline(work: Path, rows: int) -> dict:
    """Eager: the whole day read at once, joined, to pandas, predicted, written."""
    import polars as pl
    import xgboost as xgb

    t0 = time.time()
    flights = pl.read_parquet(flights_file(work), n_rows=rows)
    weather = pl.read_parquet(work / "landing" / "weather" / f"date={DAY}" / "v0001.parquet")
    clf = xgb.XGBClassifier(n_jobs=THREADS)
    clf.load_model(work / "plain.ubj")
    p = clf.predict_proba(to_pandas(plain_frame(flights, weather)))[:, 1]
    flights.select(KEYS).with_columns(p_late=pl.Series(p, dtype=pl.Float32)).write_parquet(
        work / "baseline_predictions.parquet")
    wall = time.time() - t0
    return {"rows": flights.height, "seconds": round(wall, 1), "rows_per_s": round(flights.height / wall),
            "peak_rss_gib": round(peak_rss_gib(), 3)}


# ---------------------------------------------------------------- driver


def in_subprocess(role: str, work: Path, *args: str) -> dict:
    """Each measured role runs alone in a fresh process, so ru_maxrss is that role's own peak."""
    out = subprocess.run([sys.executable, __file__, "--role", role, "--work", str(work), *args],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return {"failed": True, "returncode": out.returncode, "stderr_tail": out.stderr[-1500:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--batch-rows", type=int, default=500_000)
    ap.add_argument("--baseline-rows", type=int, help="rows for the eager baseline (default: --rows)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--role", choices=["generate", "project", "baseline"], help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--bundle", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.role:  # a measured child process
        work = Path(a.work)
        result = {"generate": lambda: generate(work, a.rows, a.batch_rows, a.seed),
                  "project": lambda: project(work, a.bundle, a.batch_rows),
                  "baseline": lambda: baseline(work, a.baseline_rows or a.rows)}[a.role]()
        print(json.dumps(result))
        return
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_big_day_") as tmp:
        work = Path(tmp)
        gen = in_subprocess("generate", work, "--rows", str(a.rows), "--batch-rows", str(a.batch_rows),
                            "--seed", str(a.seed))
        print(json.dumps({"generate": gen}), flush=True)
        models = build_models(work)
        print(json.dumps({"models": models}), flush=True)
        proj = in_subprocess("project", work, "--batch-rows", str(a.batch_rows), "--bundle", models["bundle"])
        print(json.dumps({"project": proj}), flush=True)
        base = in_subprocess("baseline", work, "--rows", str(a.rows), "--baseline-rows", str(a.baseline_rows or a.rows))
        print(json.dumps({"baseline": base}), flush=True)
    ok = not proj.get("failed") and not base.get("failed")
    summary = {"bench": "big_day", "rows": a.rows, "batch_rows": a.batch_rows, "day": str(DAY),
               "parquet_bytes": gen.get("bytes"), "project": proj, "baseline": base,
               "goal_peak_rss_gib": GOAL_PEAK_RSS_GIB, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
               "goal_met": bool(ok and proj["peak_rss_gib"] < GOAL_PEAK_RSS_GIB and proj["rows"] == a.rows),
               "loadavg_1min_start_end": [round(load0, 2), round(os.getloadavg()[0], 2)]}
    if ok:
        summary["peak_rss_ratio_vs_baseline"] = round(proj["peak_rss_gib"] / base["peak_rss_gib"], 3)
        summary["rows_per_s_ratio_vs_baseline"] = round(proj["rows_per_s"] / base["rows_per_s"], 3)
        summary["baseline_scaled"] = base["rows"] != a.rows
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
