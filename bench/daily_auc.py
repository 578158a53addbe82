"""Mean daily AUC of the project's daily retraining vs the plain polars+xgboost baseline, same run.

Replays [start, end] day by day through the project's own functions (features -> trailing window ->
candidate training -> holdout AUC on day D), then runs ../shared/baselines/plain_daily_retrain.py on the
same range and window, and prints both with the difference and the time ratio. JSON last line.

    .venv/bin/python bench/daily_auc.py --start 2013-02-01 --end 2013-12-31 [--families xgboost mlp]
"""
import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

from ml_assets.core.evaluation import roc_auc
from ml_assets.core.features import LABEL, build_features
from ml_assets.core.landing import source_tables
from ml_assets.core.training import families
from ml_assets.core.training.window import split_window

BASELINE = Path(__file__).resolve().parents[2] / "shared" / "baselines" / "plain_daily_retrain.py"


def project_daily_auc(start: dt.date, end: dt.date, window: int, family: str) -> dict:
    t0 = time.time()
    t = source_tables()
    features = build_features(t["flights"], t["weather"], t["planes"])
    rows, day = [], start
    while day <= end:
        train, valid = split_window(features, day, window)
        test = features.filter((pl.col("date") == day) & pl.col(LABEL).is_not_null())
        if test.height and test[LABEL].n_unique() == 2 and train.height:
            model = families.train(family, train, valid, None, seed=0)
            p = families.predict(model, test)
            rows.append((day, roc_auc(test[LABEL].cast(pl.Int8).to_numpy(), p), test.height))
        day += dt.timedelta(days=1)
    aucs = np.array([r[1] for r in rows])
    return {"family": family, "mean_daily_auc": round(float(aucs.mean()), 4), "days": len(rows),
            "rows": int(sum(r[2] for r in rows)), "seconds": round(time.time() - t0, 1)}


def baseline(start: str, end: str, window: int) -> dict:
    out = subprocess.run([sys.executable, str(BASELINE), "--start", start, "--end", end, "--window", str(window)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--start", default="2013-02-01")
    ap.add_argument("--end", default="2013-12-31")
    ap.add_argument("--window", type=int, default=28)
    ap.add_argument("--families", nargs="+", default=["xgboost"], choices=families.FAMILIES)
    a = ap.parse_args()
    start, end = dt.date.fromisoformat(a.start), dt.date.fromisoformat(a.end)
    base = baseline(a.start, a.end, a.window)
    print(json.dumps(base))
    results = []
    for family in a.families:
        r = project_daily_auc(start, end, a.window, family)
        r["auc_minus_baseline"] = round(r["mean_daily_auc"] - base["mean_daily_auc"], 4)
        r["time_ratio_vs_baseline"] = round(r["seconds"] / base["seconds"], 2)
        print(json.dumps(r))
        results.append(r)
    print(json.dumps({"bench": "daily_auc", "start": a.start, "end": a.end, "window": a.window,
                      "baseline": base, "project": results}))


if __name__ == "__main__":
    main()
