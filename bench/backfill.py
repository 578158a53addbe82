"""The user's path, timed: `ml-assets land` + `ml-assets backfill --assets all --wait` over [start, end] in a fresh
home and instance, beside the plain daily-retrain script (../shared/baselines/plain_daily_retrain.py) over the
same days, in one run; and optionally the day-by-day production path (`ml-assets demo`: each delivery landed,
then automation), with the time of a day's cycle (its deliveries landed and carried through predictions,
training and the bundle).

    .venv/bin/python bench/backfill.py --start 2013-01-01 --end 2013-12-31 [--families xgboost] [--keep DIR]
        [--scaled-baseline]
    .venv/bin/python bench/backfill.py --demo-days 14 [--families xgboost,mlp]

Prints where the time goes (per asset, from the run's step events; the instance's event count), the per-day
summary the CLI printed, and a JSON line: backfill seconds, the baseline's, their ratio, the load average. The
families are a setting (ML_ASSETS_FAMILIES), so the xgboost-only graph compares with the xgboost-only script.
`--keep DIR` keeps the home and instance for bench/quality.py and bench/decisions.py.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASELINE = REPO.parent / "shared" / "baselines" / "plain_daily_retrain.py"
BIN = Path(sys.executable).parent


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def fresh_env(base: Path, families: str, window: int | None) -> dict[str, str]:
    """A new home and instance; ``window`` None: the project's default training window."""
    (base / "dagster").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", base / "dagster" / "dagster.yaml")
    env = {**os.environ, "ML_ASSETS_HOME": str(base / "home"), "DAGSTER_HOME": str(base / "dagster"),
           "ML_ASSETS_FAMILIES": families, "OMP_WAIT_POLICY": "PASSIVE"}
    env.pop("ML_ASSETS_WINDOW_DAYS", None)
    return env | ({"ML_ASSETS_WINDOW_DAYS": str(window)} if window else {})


def timed(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, int, str, float]:
    """Seconds, exit code, output, and the peak RSS (GiB) of the largest process of the command's tree."""
    started = time.time()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # the child's usage, its waited-for descendants included
        proc.returncode = os.waitstatus_to_exitcode(status)
    return time.time() - started, proc.returncode, log.read_text(), round(usage.ru_maxrss / 2**20, 2)


def baseline(start: str, end: str, window: int | None, per_day: Path, trees: int | None = None) -> dict:
    """The plain script over [start, end]; ``window``/``trees`` None: its own defaults (28 days, 200 trees)."""
    out = subprocess.run([sys.executable, str(BASELINE), "--start", start, "--end", end,
                          *(["--window", str(window)] if window else []), *(["--trees", str(trees)] if trees else []),
                          "--threads", "2", "--per-day", str(per_day)], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def recipe_scale(window: int | None) -> tuple[int, int]:
    """(trees, window days) of the graph's xgboost fits: the dataset's recipe and the training window."""
    from ml_assets import settings
    from ml_assets.core.spec import load_spec

    return int(load_spec().models["xgboost"]["n_estimators"]), window or settings.DEFAULT_WINDOW_DAYS


def where_the_time_goes(env: dict[str, str]) -> dict:
    """Per asset: seconds of its steps (every run of the backfill); the instance's event count."""
    code = """
import json, collections, dagster as dg
seconds, events = collections.Counter(), 0
with dg.DagsterInstance.get() as instance:
    for run in instance.get_runs():
        for record in instance.all_logs(run.run_id):
            events += 1
            e = record.dagster_event
            if e is not None and e.event_type == dg.DagsterEventType.STEP_SUCCESS:
                seconds[e.step_key.split('__')[-1]] += e.event_specific_data.duration_ms / 1000
print(json.dumps({"step_seconds": dict(seconds.most_common()), "events": events}))
"""
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--start", default="2013-01-01")
    ap.add_argument("--end", default="2013-12-31")
    ap.add_argument("--families", default="xgboost", help="ML_ASSETS_FAMILIES for the graph")
    ap.add_argument("--window", type=int, help="the graph's training window (default: the project's, 56 days)")
    ap.add_argument("--baseline-window", type=int, help="the plain script's window (default: its own, 28 days)")
    ap.add_argument("--keep", help="keep the home and instance in this folder (for quality.py, decisions.py)")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--scaled-baseline", action="store_true",
                    help="also run the plain script with as many trees and window days as the graph's xgboost fits "
                         "(what the recipe costs, apart from what the graph adds)")
    ap.add_argument("--demo-days", type=int, help="time `ml-assets demo --days N` instead of a backfill")
    a = ap.parse_args()
    base = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    if a.keep and base.exists():
        shutil.rmtree(base)
    env = fresh_env(base, a.families, a.window)
    result: dict = {"bench": "backfill", "families": a.families, "window": a.window, "load_start": loadavg()}
    if a.demo_days:
        seconds, code, text, peak = timed([str(BIN / "ml-assets"), "demo", "--days", str(a.demo_days)], env,
                                          base / "demo.log")
        cycle = re.search(r"a day's cycle .*: median ([\d.]+) s, max ([\d.]+) s", text)
        result.update(path="ml-assets demo", days=a.demo_days, seconds=round(seconds, 1), exit_code=code,
                      peak_rss_gib=peak, seconds_per_day=round(seconds / a.demo_days, 2),
                      day_cycle_median_seconds=float(cycle[1]) if cycle else None,
                      day_cycle_max_seconds=float(cycle[2]) if cycle else None)
        print("\n".join(text.splitlines()[-a.demo_days - 8:]))
    else:
        land, code, _, _ = timed([str(BIN / "ml-assets"), "land", "--start", a.start, "--end", a.end], env,
                                 base / "land.log")
        assert code == 0, (base / "land.log").read_text()[-2000:]
        seconds, code, text, peak = timed([str(BIN / "ml-assets"), "backfill", "--start", a.start, "--end", a.end,
                                           "--assets", "all", "--wait"], env, base / "backfill.log")
        print("\n".join(line for line in text.splitlines() if not line.startswith("20") and "dagster -" not in line))
        result.update(path="ml-assets backfill --assets all --wait", start=a.start, end=a.end,
                      land_seconds=round(land, 1), backfill_seconds=round(seconds, 1), exit_code=code,
                      backfill_peak_rss_gib=peak,
                      days=next((line for line in text.splitlines() if line.startswith("days:")), ""),
                      **where_the_time_goes(env))
        if not a.skip_baseline:
            plain = baseline(a.start, a.end, a.baseline_window, base / "baseline_per_day.csv")
            result.update(baseline_seconds=plain["seconds"], baseline_mean_daily_auc=plain["mean_daily_auc"],
                          ratio=round(seconds / plain["seconds"], 2),
                          ratio_with_landing=round((seconds + land) / plain["seconds"], 2))
        if a.scaled_baseline:
            trees, window = recipe_scale(a.window)
            scaled = baseline(a.start, a.end, window, base / "baseline_scaled_per_day.csv", trees=trees)
            result.update(scaled_baseline={"trees": trees, "window": window, "seconds": scaled["seconds"],
                                           "mean_daily_auc": scaled["mean_daily_auc"],
                                           "ratio": round(seconds / scaled["seconds"], 2)})
    result["load_end"] = loadavg()
    result["home"] = str(base)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
