"""Live performance: predictions made before a day, joined with what really happened that day.

A scheduled flight is identified by ``FLIGHT_KEY`` (date, carrier, flight number, origin, scheduled departure):
the same key the landing data is checked unique on. Cancelled flights have no outcome and are left out.
"""
from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any, Iterable

import polars as pl

from ml_assets.core.evaluation import evaluate
from ml_assets.core.features import LABEL

FLIGHT_KEY = ["date", "carrier", "flight", "origin", "sched_dep_time"]
PREDICTION_COLUMNS = [*FLIGHT_KEY, "dest", "p_late", "model_version"]
_KEY_TYPES = {"date": pl.Date, "carrier": pl.String, "flight": pl.Int64, "origin": pl.String,
              "sched_dep_time": pl.Int64}


def _keyed(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns([pl.col(c).cast(t) for c, t in _KEY_TYPES.items()])


def online_predictions(lines: Iterable[str], day: dt.date) -> pl.DataFrame:
    """Logged online predictions (JSON lines of the serving log) for flights scheduled on ``day``.

    A flight asked about several times counts once, with its latest answer (what a user last saw)."""
    rows = []
    for line in lines:
        if not line.strip():
            continue
        entry = json.loads(line)
        f = entry["features"]
        if f.get("date") != day.isoformat():
            continue
        rows.append({**{k: f[k] for k in FLIGHT_KEY}, "dest": f.get("dest"), "p_late": entry["p_late"],
                     "model_version": entry["model_version"], "ts": entry["ts"]})
    if not rows:
        return pl.DataFrame(schema={**_KEY_TYPES, "dest": pl.String, "p_late": pl.Float64,
                                    "model_version": pl.String})
    frame = _keyed(pl.DataFrame(rows).with_columns(pl.col("date").str.to_date()))
    return frame.sort("ts").unique(FLIGHT_KEY, keep="last", maintain_order=True).drop("ts")


def join_outcomes(predictions: pl.DataFrame, outcomes: pl.DataFrame) -> pl.DataFrame:
    """Predictions with the realized label (and the slice columns evaluation needs); unresolved rows dropped."""
    columns = [*FLIGHT_KEY, "dep_hour", LABEL]
    realized = _keyed(outcomes.select(columns)).filter(pl.col(LABEL).is_not_null())
    return _keyed(predictions.select(*FLIGHT_KEY, "p_late", "model_version")).join(
        realized, on=FLIGHT_KEY, how="inner")


def live_metrics(joined: pl.DataFrame, threshold: float | None = None) -> dict[str, Any]:
    """``evaluation.evaluate`` on the joined rows: the same metrics and slices as the offline report."""
    if joined.is_empty():
        return {"overall": {"rows": 0, "roc_auc": math.nan}, "slices": [], "flagged_slices": []}
    return evaluate(joined, joined.get_column("p_late").to_numpy(), threshold)


def auc_drop(live_auc: float, evaluation_auc: float, tolerance: float) -> dict[str, Any]:
    """Warn when live AUC falls below the AUC the model showed at evaluation by more than ``tolerance``."""
    drop = evaluation_auc - live_auc
    known = not (math.isnan(live_auc) or math.isnan(evaluation_auc))
    return {"live_auc": live_auc, "evaluation_auc": evaluation_auc, "drop": drop if known else math.nan,
            "tolerance": tolerance, "passed": (not known) or drop <= tolerance}
