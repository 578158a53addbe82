"""P1: the project's asset graph backfilled over [start, end] vs the plain daily-retrain baseline, same run.

The data is landed first (land_days, not timed: it stands in for the upstream), into a temp ML_ASSETS_HOME with
a temp SQLite-backed DagsterInstance and the project's real IO managers and MLflow (SQLite). Then planes once;
the data layer as one run over the whole range when its assets have ``BackfillPolicy.single_run()`` (a day
refused by a blocking check stops that run's downstream steps for every day: they are started again for the
days not refused, as the automation sensor would; else one run per day with the models); the models one run per day (their policy is one partition per run; the first
day has no history: no models). Start at 2013-01-01 for like-for-like windows: the baseline reads the whole
package, so it would train day ``start`` on earlier days.

Two passes, each in a fresh home and instance:
  xgboost   like-for-like with the baseline: data layer + training_set + xgboost_model. model_evaluation and
            onnx_model take both candidates as inputs, so they cannot run without torch_model.
  full      every asset of build_assets() by name (deployment/serving assets excluded).

Where the time goes: exclusive wall time in the Dagster instance's storage writes, the project's IO managers,
MLflow logging and core functions (timers patched around them, nested calls counted once); what is left is
Dagster itself (planning, events, checks) and asset glue. Step (= asset) durations come from the run events.
``--instance postgres`` stores runs and events in PostgreSQL, as the production profile does; ``--instance
memory`` runs without instance storage; ``--cprofile`` adds cProfile self time per package
(slower; use on a short range).

    .venv/bin/python bench/backfill.py --start 2013-01-01 --end 2013-12-31 [--passes xgboost full] [--cprofile]
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import cProfile
import datetime as dt
import functools
import importlib
import json
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

# On a shared machine, OpenMP threads that spin while they wait (libgomp's default) slow xgboost and torch
# down up to tenfold (measured: the plain baseline, 10 days, 368 s spinning vs 34 s passive, same load). Every
# side of every comparison here runs with the same passive policy; set OMP_WAIT_POLICY yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# The project's assets pass data_version= to Output, a beta parameter: one warning per step otherwise.
warnings.filterwarnings("ignore", message=".*is currently in beta.*")

BASELINE = Path(__file__).resolve().parents[2] / "shared" / "baselines" / "plain_daily_retrain.py"
DATA_KEYS = ["raw_flights", "raw_weather", "flight_features", "data_profile"]  # planes: unpartitioned, once
MODEL_KEYS = {"xgboost": ["training_set", "xgboost_model"],
              "full": ["training_set", "xgboost_model", "torch_model", "model_evaluation", "onnx_model"]}

# (bucket, module, attribute): exclusive time inside these is attributed to the bucket.
SQLITE_EVENTS = "dagster._core.storage.event_log.sqlite.sqlite_event_log"
TIMED = [
    ("dagster: instance storage writes", SQLITE_EVENTS, "SqliteEventLogStorage.store_event"),
    ("dagster: instance storage writes", "dagster_postgres.event_log.event_log", "PostgresEventLogStorage.store_event"),
    ("dagster: instance storage writes", "dagster._core.storage.runs.sql_run_storage", "SqlRunStorage.add_run"),
    ("dagster: instance storage writes", "dagster._core.storage.runs.sql_run_storage",
     "SqlRunStorage.handle_run_event"),
    ("io: parquet", "ml_assets.resources.storage", "PolarsParquetIOManager.handle_output"),
    ("io: parquet", "ml_assets.resources.storage", "PolarsParquetIOManager.load_input"),
    ("io: model files", "ml_assets.resources.models", "ModelFilesIOManager.handle_output"),
    ("io: model files", "ml_assets.resources.models", "ModelFilesIOManager.load_input"),
    ("io: landing read", "ml_assets.core.landing", "read_landed"),
    ("mlflow", "ml_assets.resources.tracking", "MLflowTracking.log_run"),
    ("mlflow", "ml_assets.resources.tracking", "MLflowTracking.log_to_run"),
    ("mlflow", "ml_assets.resources.tracking", "MLflowTracking.register_bundle"),
    ("mlflow", "ml_assets.resources.tracking", "MLflowTracking.set_champion"),
    ("io: bundle write/verify", "ml_assets.core.bundle", "write_bundle"),
    ("io: bundle write/verify", "ml_assets.core.bundle", "load_bundle"),
    ("validation (pandera)", "ml_assets.core.schemas", "schema_violations"),
    ("features", "ml_assets.core.features", "build_features"),
    ("profile + drift", "ml_assets.core.profile", "drift"),
    ("profile + drift", "ml_assets.core.profile", "numeric_stats"),
    ("profile + drift", "ml_assets.core.profile", "categorical_stats"),
    ("plots", "ml_assets.core.plots", "drift_bars"),
    ("plots", "ml_assets.core.evaluation", "evaluation_plots"),
    ("training", "ml_assets.core.training.families", "train"),
    ("predict", "ml_assets.core.training.families", "predict"),
    ("predict", "ml_assets.core.onnx_export", "score_session"),
    ("behavior checks", "ml_assets.core.behavior", "run_behavior_checks"),
    ("evaluation", "ml_assets.core.evaluation", "evaluate"),
    ("evaluation", "ml_assets.core.evaluation", "classification_metrics"),
    ("evaluation", "ml_assets.core.evaluation", "measure_latency"),
    ("evaluation", "ml_assets.core.evaluation", "report_markdown"),
    ("evaluation", "ml_assets.core.promotion", "decide"),
    ("onnx export + parity", "ml_assets.core.onnx_export", "export_onnx"),
    ("onnx export + parity", "ml_assets.core.onnx_export", "score_onnx"),
    ("hashing", "ml_assets.core.versioning", "frame_hash"),
    ("hashing", "ml_assets.core.versioning", "files_hash"),
    ("metadata tables", "ml_assets.defs.metadata", "markdown_table"),
    ("metadata tables", "ml_assets.defs.metadata", "frame_metadata"),
]
# What P2 calls raw compute: the model work itself, not IO, tracking, metadata or orchestration.
COMPUTE_BUCKETS = ("features", "training", "predict", "behavior checks", "evaluation", "onnx export + parity")


class ExclusiveTimers:
    """Wall time per bucket, exclusive: time in a nested timed call counts for the inner bucket only."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = collections.defaultdict(float)
        self._child_time: list[float] = []

    def wrap(self, bucket: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            self._child_time.append(0.0)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                self.seconds[bucket] += elapsed - self._child_time.pop()
                if self._child_time:
                    self._child_time[-1] += elapsed

        return timed


@contextlib.contextmanager
def timed_project_functions(timers: ExclusiveTimers):
    """Wrap each TIMED function wherever it is referenced: its module, its class, and every ml_assets module
    that imported it by name (``from ... import frame_hash``); everything is restored on exit. Functions the
    code base does not have (yet) are skipped."""
    restore = []
    for bucket, module_name, attribute in TIMED:
        try:
            owner = importlib.import_module(module_name)
        except ImportError:
            continue
        *path, name = attribute.split(".")
        for part in path:
            owner = getattr(owner, part)
        original = owner.__dict__.get(name) if path else getattr(owner, name, None)
        if original is None:
            continue
        wrapped = timers.wrap(bucket, original)
        targets = [owner] + ([] if path else [m for n, m in list(sys.modules.items())
                                              if n.startswith("ml_assets") and m is not owner
                                              and getattr(m, name, None) is original])
        for target in targets:
            setattr(target, name, wrapped)
            restore.append((target, name, original))
    try:
        yield timers
    finally:
        for target, name, original in reversed(restore):
            setattr(target, name, original)


def step_seconds(result) -> dict[str, float]:
    """Step (= asset) durations from the run's STEP_SUCCESS events: input load + compute + output store."""
    out: dict[str, float] = collections.defaultdict(float)
    for event in result.all_events:
        if event.event_type_value == "STEP_SUCCESS":
            out[event.step_key] += event.event_specific_data.duration_ms / 1000
    return out


def cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def run_baseline(start: str, end: str, window: int) -> dict:
    """The plain script as a subprocess; its own ``seconds`` excludes its imports, like ours."""
    cpu0, t0 = cpu_seconds(resource.RUSAGE_CHILDREN), time.time()
    out = subprocess.run([sys.executable, str(BASELINE), "--start", start, "--end", end, "--window", str(window)],
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_wall_seconds"] = round(time.time() - t0, 1)
    result["cpu_seconds"] = round(cpu_seconds(resource.RUSAGE_CHILDREN) - cpu0, 1)
    return result


def selectable(assets: list, names: list[str]) -> list[str]:
    present = {key.to_user_string() for a in assets for key in a.keys}
    missing = [n for n in names if n not in present]
    if missing:
        raise SystemExit(f"assets {missing} are not in build_assets(): the graph changed, update the bench")
    return names


def single_run_backfill(assets: list, names: list[str]) -> bool:
    """True when every named asset can materialize a range of days in one run (BackfillPolicy.single_run())."""
    policies = {key.to_user_string(): a.backfill_policy for a in assets for key in a.keys}
    return all(policies[n] is not None and policies[n].max_partitions_per_run is None for n in names)


def range_tags(start: dt.date, end: dt.date) -> dict[str, str]:
    return {"dagster/asset_partition_range_start": start.isoformat(),
            "dagster/asset_partition_range_end": end.isoformat()}


def contiguous(days: list[dt.date]) -> list[list[dt.date]]:
    """Sorted days as runs of consecutive days."""
    out: list[list[dt.date]] = []
    for day in days:
        if out and day - out[-1][-1] == dt.timedelta(days=1):
            out[-1].append(day)
        else:
            out.append([day])
    return out


def stored(home: str, asset: str, day: dt.date) -> bool:
    """Whether the parquet IO manager holds the asset's partition (``assets/<asset>/<day>.parquet``)."""
    return os.path.exists(os.path.join(home, "assets", asset, f"{day.isoformat()}.parquet"))


def land(home: str, start: dt.date, end: dt.date) -> float:
    from ml_assets.core.landing import land_days
    from ml_assets.core.storage import make_path

    t0 = time.time()
    land_days(make_path(home), start, end)
    return time.time() - t0


PG = {"hostname": os.environ.get("ML_ASSETS_BENCH_PG_HOST", "127.0.0.1"),
      "port": int(os.environ.get("ML_ASSETS_BENCH_PG_PORT", "5432")),
      "username": os.environ.get("ML_ASSETS_BENCH_PG_USER", "postgres"), "password": "",
      "scheme": "postgresql+psycopg2"}  # as deploy/production/dagster.yaml: SQLAlchemy 2.1 would pick psycopg 3


@contextlib.contextmanager
def postgres_database():
    """A fresh database on the local PostgreSQL (the production instance's storage), dropped afterwards."""
    import uuid

    import psycopg2

    name = f"ml_assets_bench_{uuid.uuid4().hex[:10]}"
    conn = psycopg2.connect(host=PG["hostname"], port=PG["port"], user=PG["username"], dbname="test")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield name
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


def make_instance(kind: str, dagster_home: str, stack: contextlib.ExitStack):
    """``sqlite``: what the project's dagster.yaml configures (SQLite under DAGSTER_HOME); ``postgres``: what
    deploy/production/dagster.yaml configures, on a fresh database; ``memory``: no storage, to see how much of
    the orchestration cost is the instance's writes."""
    import dagster as dg

    if kind == "memory":
        return dg.DagsterInstance.ephemeral()
    os.makedirs(dagster_home, exist_ok=True)
    overrides = None
    if kind == "postgres":
        db = stack.enter_context(postgres_database())
        overrides = {"storage": {"postgres": {"postgres_db": {**PG, "db_name": db}}}}
    return dg.DagsterInstance.local_temp(tempdir=dagster_home, overrides=overrides)


# Dagster's console logger prints every event at DEBUG; the events are stored in the instance either way.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def project_pass(name: str, start: dt.date, end: dt.date, window: int, workdir: str, instance_kind: str = "sqlite",
                 profiler=None) -> dict:
    """Land (untimed), then planes once and one run per day through the selected assets; time everything."""
    import dagster as dg

    from ml_assets.definitions import build_assets, build_resources

    home = os.path.join(workdir, name, "home")
    landing_seconds = land(home, start, end)
    timers, steps, runs = ExclusiveTimers(), collections.defaultdict(float), []
    cpu0, t0 = cpu_seconds(), time.time()
    with contextlib.ExitStack() as stack, timed_project_functions(timers), (profiler or contextlib.nullcontext()):
        instance = make_instance(instance_kind, os.path.join(workdir, name, "dagster"), stack)
        assets, resources = build_assets(window), build_resources(home, "local")
        data = selectable(assets, DATA_KEYS)
        models = selectable(assets, MODEL_KEYS[name])
        data_in_one_run = single_run_backfill(assets, data)

        def run(selection: list[str], partition: str | None, tags: dict | None = None) -> set[str]:
            """One run; returns the days refused by a blocking check."""
            result = dg.materialize(assets, selection=selection, partition_key=partition, instance=instance,
                                    resources=resources, run_config=QUIET, tags=tags, raise_on_error=False)
            seconds = step_seconds(result)
            for step, s in seconds.items():
                steps[step] += s
            done = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
            evaluations = result.get_asset_check_evaluations()
            failed = [f"{e.asset_key.to_user_string()}:{e.check_name}" for e in evaluations if not e.passed]
            runs.append({"partition": partition or "..".join((tags or {}).values()), "ok": result.success,
                         "missing": sorted(set(selection) - done), "checks_not_passed": failed,
                         "data_layer": bool(set(selection) & set(DATA_KEYS))})
            return {e.partition or partition for e in evaluations
                    if not e.passed and e.blocking and e.severity == dg.AssetCheckSeverity.ERROR}

        def data_layer_over(first: dt.date, last: dt.date, selection: list[str]) -> None:
            """One run for the range. A blocking check failing on one day (2013-12-31 has no weather) stops
            the downstream steps of that run for every day; as the automation sensor does, the steps that did
            not run are then started again for the days that were not refused, one run per contiguous
            stretch. Should that fail too, the stretch is split in halves, down to single days."""
            days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
            if first == last:
                run(selection, first.isoformat())
                return
            refused = run(selection, None, range_tags(first, last))
            not_done = [n for n in selection if not all(stored(home, n, d) for d in days)]
            todo = [d for d in days if d.isoformat() not in refused and not stored(home, "data_profile", d)]
            if not todo:
                return
            if not refused:  # failed without a refusal: halve
                middle = first + (last - first) // 2
                data_layer_over(first, middle, selection)
                data_layer_over(middle + dt.timedelta(days=1), last, selection)
                return
            for stretch in contiguous(todo):
                data_layer_over(stretch[0], stretch[-1], not_done)

        run(["planes"], None)
        if data_in_one_run:
            data_layer_over(start, end, data)
        day = start
        while day <= end:
            # The first day has no earlier features to learn from: data layer only.
            selection = ([] if data_in_one_run else data) + (models if day > start else [])
            if selection:
                run(selection, day.isoformat())
            day += dt.timedelta(days=1)
        instance.dispose()
    wall, cpu = time.time() - t0, cpu_seconds() - cpu0
    r = summarize(name, instance_kind, wall, cpu, landing_seconds, runs, steps, timers, home)
    r["data_layer"] = "one run for the range" if data_in_one_run else "one run per day"
    r["data_layer_runs"] = sum(1 for x in runs if x["data_layer"])
    return r


def holdout_auc(home: str) -> dict:
    """Mean daily holdout AUC per candidate from the stored model_evaluation partitions (full pass only)."""
    import polars as pl

    folder = Path(home) / "assets" / "model_evaluation"
    if not folder.exists():
        return {}
    table = pl.read_parquet(sorted(folder.glob("*.parquet")))
    per = table.group_by("candidate").agg(pl.col("roc_auc").mean(), pl.len().alias("days"), pl.col("chosen").sum())
    return {r["candidate"]: {"mean_daily_auc": round(r["roc_auc"], 4), "days": r["days"], "chosen_days": r["chosen"]}
            for r in per.sort("candidate").iter_rows(named=True)}


def summarize(name, instance_kind, wall, cpu, landing_seconds, runs, steps, timers, home) -> dict:
    timed = dict(sorted(timers.seconds.items(), key=lambda kv: -kv[1]))
    breakdown = {**timed, "dagster: the rest (planning, events, checks, asset glue)": wall - sum(timed.values())}
    in_steps = sum(steps.values())
    failed = [r for r in runs if not r["ok"] or r["missing"]]
    return {
        "pass": name, "instance": instance_kind, "seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
        "runs": len(runs), "mean_run_seconds": round(wall / len(runs), 2),
        "landing_seconds_not_counted": round(landing_seconds, 1),
        "in_steps_seconds": round(in_steps, 1), "outside_steps_seconds": round(wall - in_steps, 1),
        "step_seconds": {k: round(v, 1) for k, v in sorted(steps.items(), key=lambda kv: -kv[1])},
        "breakdown_seconds": {k: round(v, 1) for k, v in breakdown.items()},
        "breakdown_share": {k: round(v / wall, 3) for k, v in breakdown.items()},
        "compute_share": round(sum(timers.seconds.get(b, 0.0) for b in COMPUTE_BUCKETS) / wall, 3),
        "runs_not_complete": [{k: r[k] for k in ("partition", "missing", "checks_not_passed")} for r in failed][:10],
        "n_runs_not_complete": len(failed),
        "holdout_auc": holdout_auc(home),
    }


def package_of(filename: str) -> str:
    if "site-packages/" in filename:
        return filename.split("site-packages/")[1].split("/")[0].removesuffix(".py")
    if "/ml_assets/" in filename:
        return "ml_assets." + filename.split("/ml_assets/")[1].split("/")[0].removesuffix(".py")
    return "python stdlib/builtins" if filename.startswith(("/", "~", "<")) else filename


def self_time_by_package(profiler: cProfile.Profile, top: int = 12) -> dict[str, float]:
    totals: dict[str, float] = collections.defaultdict(float)
    for (filename, _, _), (_, _, self_time, _, _) in pstats.Stats(profiler).stats.items():
        totals[package_of(filename)] += self_time
    return {k: round(v, 1) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])[:top]}


def print_breakdown(r: dict) -> None:
    print(f"\n{r['pass']} ({r['instance']} instance): {r['seconds']} s wall, {r['cpu_seconds']} s CPU, {r['runs']} runs "
          f"({r['mean_run_seconds']} s/run; {r['outside_steps_seconds']} s outside steps); "
          f"landing {r['landing_seconds_not_counted']} s not counted")
    for k, v in r["breakdown_seconds"].items():
        print(f"  {k:45s} {v:8.1f} s  {100 * r['breakdown_share'][k]:5.1f} %")
    print("  per step (asset):", ", ".join(f"{k} {v}" for k, v in r["step_seconds"].items()))
    if r["n_runs_not_complete"]:
        print(f"  {r['n_runs_not_complete']} run(s) incomplete, e.g. {r['runs_not_complete'][:3]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--start", default="2013-01-01")
    ap.add_argument("--end", default="2013-12-31")
    ap.add_argument("--window", type=int, default=28)
    ap.add_argument("--passes", nargs="+", default=["xgboost", "full"], choices=list(MODEL_KEYS))
    ap.add_argument("--instance", default="sqlite", choices=["sqlite", "postgres", "memory"],
                    help="sqlite = the project's dagster.yaml storage (default); postgres = the production "
                         "dagster.yaml's storage on 127.0.0.1:5432 (ML_ASSETS_BENCH_PG_*); memory = none")
    ap.add_argument("--cprofile", action="store_true", help="also cProfile self time per package (slower)")
    ap.add_argument("--goal", type=float, default=1.5, help="goal: project seconds / baseline seconds")
    a = ap.parse_args()
    start, end = dt.date.fromisoformat(a.start), dt.date.fromisoformat(a.end)
    load0 = os.getloadavg()[0]
    # The machine may be shared: the baseline runs before and after the project passes, ratios use the mean.
    before = run_baseline(a.start, a.end, a.window)
    print(json.dumps(before), flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_backfill_") as workdir:
        for name in a.passes:
            profiler = cProfile.Profile() if a.cprofile else None
            r = project_pass(name, start, end, a.window, workdir, a.instance, profiler)
            if profiler:
                r["cprofile_self_seconds_by_package"] = self_time_by_package(profiler)
            print_breakdown(r)
            print(json.dumps(r), flush=True)
            results.append(r)
    after = run_baseline(a.start, a.end, a.window)
    print(json.dumps(after), flush=True)
    base = {**before, "seconds_before_after": [before["seconds"], after["seconds"]],
            "seconds": round((before["seconds"] + after["seconds"]) / 2, 1),
            "cpu_seconds": round((before["cpu_seconds"] + after["cpu_seconds"]) / 2, 1)}
    for r in results:
        r["time_ratio_vs_baseline"] = round(r["seconds"] / base["seconds"], 2)
        r["cpu_ratio_vs_baseline"] = round(r["cpu_seconds"] / base["cpu_seconds"], 2)
        r["goal_met"] = r["time_ratio_vs_baseline"] <= a.goal
    print(json.dumps({"bench": "backfill", "start": a.start, "end": a.end, "window": a.window,
                      "goal_ratio": a.goal, "instance": a.instance, "cprofile": a.cprofile,
                      "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                      "loadavg_1min_start_end": [round(load0, 2), round(os.getloadavg()[0], 2)],
                      "baseline": base,
                      "project": [{k: r[k] for k in ("pass", "seconds", "cpu_seconds", "runs", "mean_run_seconds",
                                                     "time_ratio_vs_baseline", "cpu_ratio_vs_baseline", "goal_met",
                                                     "compute_share",
                                                     "n_runs_not_complete", "breakdown_share", "holdout_auc")}
                                  for r in results],
                      "data_layer": results[0]["data_layer"] if results else None,
                      "data_layer_runs": [r["data_layer_runs"] for r in results]}))


if __name__ == "__main__":
    main()
