"""P5: wall time of the whole test suite against the 300 s goal, and its 10 slowest tests.

Runs ``.venv/bin/pytest -q -p no:cacheprovider --durations=10`` from the repository root (the suite as CI runs
it, with the pyproject's options) and parses pytest's own summary and durations. JSON last line.

    .venv/bin/python bench/test_suite.py [--goal 300] [-- extra pytest args]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DURATION = re.compile(r"^(\d+\.\d+)s\s+(call|setup|teardown)\s+(\S+)")
OUTCOME = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected)")


def slowest(output: str) -> list[dict]:
    return [{"seconds": float(m.group(1)), "phase": m.group(2), "test": m.group(3)}
            for line in output.splitlines() if (m := DURATION.match(line.strip()))]


def outcomes(output: str) -> dict[str, int]:
    """Counts from pytest's final line, e.g. '3 failed, 120 passed, 2 skipped in 250.1s'."""
    final = next((line for line in reversed(output.splitlines()) if re.search(r" in \d+(\.\d+)?s", line)), "")
    return {m.group(2).rstrip("s") if m.group(2).startswith("error") else m.group(2): int(m.group(1))
            for m in OUTCOME.finditer(final)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--goal", type=float, default=300.0, help="seconds")
    ap.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    a = ap.parse_args()
    command = [str(ROOT / ".venv" / "bin" / "pytest"), "-q", "-p", "no:cacheprovider", "--durations=10",
               *a.pytest_args]
    load0 = os.getloadavg()[0]
    t0 = time.time()
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.time() - t0
    # CPU of pytest and the processes it waited for: far below 2 x wall means the suite waited (I/O, services,
    # or other work on the machine).
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = out.stdout + out.stderr
    failures = [line for line in output.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    print("\n".join(output.splitlines()[-40:]), file=sys.stderr)
    print(json.dumps({"bench": "test_suite", "command": " ".join(command), "seconds": round(wall, 1),
                      "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1), "goal_seconds": a.goal,
                      "ratio_vs_goal": round(wall / a.goal, 2), "goal_met": wall <= a.goal,
                      "exit_code": out.returncode, "outcomes": outcomes(output), "failures": failures[:20],
                      "slowest": slowest(output),
                      "loadavg_1min_start_end": [round(load0, 2), round(os.getloadavg()[0], 2)]}))


if __name__ == "__main__":
    main()
