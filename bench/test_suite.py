"""P5: wall time of the whole test suite against the 300 s goal, and its 15 slowest tests.

Runs ``.venv/bin/pytest --durations=15`` from the repository root as ``make test`` does (the pyproject's options:
two xdist workers; ``ML_ASSETS_HOME`` and ``DAGSTER_HOME`` defaulted as the Makefile exports them) and parses
pytest's own summary and durations. It does not install anything: ``make test`` first builds ``.venv`` and
installs Chromium for the UI test; whether Chromium is present is reported. The load average (1, 5, 15 min)
is recorded before and after: on a shared machine the wall time is only comparable with the load beside it.
JSON last line.

    .venv/bin/python bench/test_suite.py [--goal 300] [-- extra pytest args, e.g. a subset of the tests]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SLOWEST = 15
DURATION = re.compile(r"^(\d+\.\d+)s\s+(call|setup|teardown)\s+(\S+)")
OUTCOME = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected|warnings?)")


def slowest(output: str) -> list[dict]:
    return [{"seconds": float(m.group(1)), "phase": m.group(2), "test": m.group(3)}
            for line in output.splitlines() if (m := DURATION.match(line.strip()))]


def outcomes(output: str) -> dict[str, int]:
    """Counts from pytest's final line, e.g. '3 failed, 120 passed, 2 skipped in 250.1s'."""
    final = next((line for line in reversed(output.splitlines()) if re.search(r" in \d+(\.\d+)?s", line)), "")
    singular = {"errors": "error", "warnings": "warning"}
    return {singular.get(m.group(2), m.group(2)): int(m.group(1)) for m in OUTCOME.finditer(final)}


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--goal", type=float, default=300.0, help="seconds")
    ap.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    a = ap.parse_args()
    command = [str(ROOT / ".venv" / "bin" / "pytest"), f"--durations={SLOWEST}", *a.pytest_args]
    env = dict(os.environ)  # the Makefile's `export X ?= ...`: a value already set wins
    env.setdefault("ML_ASSETS_HOME", str(ROOT / ".ml_assets"))
    env.setdefault("DAGSTER_HOME", str(ROOT / ".dagster_home"))
    load0 = loadavg()
    t0 = time.time()
    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    load1 = loadavg()
    # CPU of pytest and the processes it waited for: far below 2 x wall means the suite waited (I/O, services,
    # or other work on the machine).
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = out.stdout + out.stderr
    failures = [line for line in output.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    print("\n".join(output.splitlines()[-(SLOWEST + 25):]), file=sys.stderr)
    print(json.dumps({"bench": "test_suite", "command": " ".join(command), "subset": bool(a.pytest_args),
                      "seconds": round(wall, 1), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
                      "goal_seconds": a.goal, "ratio_vs_goal": round(wall / a.goal, 2), "goal_met": wall <= a.goal,
                      "exit_code": out.returncode, "outcomes": outcomes(output), "failures": failures[:20],
                      "chromium": shutil.which("chromium") is not None, "slowest": slowest(output)[:SLOWEST],
                      "loadavg_start": load0, "loadavg_end": load1, "loadavg_1min_start_end": [load0[0], load1[0]]}))


if __name__ == "__main__":
    main()
