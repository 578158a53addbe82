"""Live performance: predictions made before a day, joined with what really happened, as a daily series.

Monitoring is judged on rolling windows with intervals, never on one noisy day: the mean of the within-day AUCs
over the last ``window`` days (with its DeLong-based interval, ``core.stats.rolling_auc``) is compared with the
mean over the ``reference`` days before that window; a drop is reported only when it is significant.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from ml_assets.core import stats


def join_labels(predictions: pl.DataFrame, labelled: pl.DataFrame, key: list[str], label: str,
                prediction: str) -> pl.DataFrame:
    """Predictions with the realized label; events without an outcome are dropped."""
    realized = labelled.select(*key, label).filter(pl.col(label).is_not_null())
    left = predictions.with_columns(pl.col(c).cast(realized.schema[c]) for c in key)
    return left.join(realized, on=key, how="inner").filter(pl.col(prediction).is_not_null())


def day_estimate(joined: pl.DataFrame, label: str, prediction: str) -> dict[str, Any]:
    y = joined[label].cast(pl.Float64).to_numpy()
    p = joined[prediction].to_numpy()
    if y.size < 4 or y.min() == y.max():
        return {"rows": int(y.size), "auc": math.nan, "variance": math.nan}
    est = stats.auc_with_variance(y, p)
    return {"rows": int(y.size), "auc": est.auc, "variance": est.variance, "positive_share": float(y.mean())}


def _mean(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    usable = [r for r in records if not math.isnan(r["auc"]) and not math.isnan(r["variance"])]
    if not usable:
        return {"days": 0, "mean": math.nan, "se": math.nan}
    k = len(usable)
    return {"days": k, "mean": float(np.mean([r["auc"] for r in usable])),
            "se": math.sqrt(sum(r["variance"] for r in usable)) / k}


def rolling(days: Sequence[Mapping[str, Any]], window: int, z: float = 1.96) -> list[dict[str, Any]]:
    """Each day's AUC beside the mean of the last ``window`` days and its interval (for the trend plot)."""
    out = []
    for i, day in enumerate(days):
        m = _mean(days[max(0, i - window + 1): i + 1])
        out.append({"day": day["day"], "auc": day["auc"], "mean": m["mean"], "low": m["mean"] - z * m["se"],
                    "high": m["mean"] + z * m["se"]})
    return out


def drop_test(days: Sequence[Mapping[str, Any]], window: int, reference: int, alpha: float = 0.01,
              min_window_days: int = 3, min_reference_days: int = 7) -> dict[str, Any]:
    """The last ``window`` days' mean AUC against the ``reference`` days before them (oldest first in ``days``).

    ``evaluated`` is False when there are too few days to judge (the start of the feed): not a pass, not a fail."""
    recent = _mean(days[-window:])
    base = _mean(days[-(window + reference):-window]) if len(days) > window else _mean([])
    result = {"window": recent, "reference": base, "alpha": alpha}
    if recent["days"] < min_window_days or base["days"] < min_reference_days:
        return {**result, "evaluated": False, "passed": None,
                "reason": f"{recent['days']} day(s) in the window and {base['days']} in the reference: too few"}
    diff = recent["mean"] - base["mean"]
    se = math.sqrt(recent["se"] ** 2 + base["se"] ** 2)
    z = diff / se if se > 0 else 0.0
    p = float(stats._norm().cdf(z))
    passed = p >= alpha
    return {**result, "evaluated": True, "passed": passed, "drop": -diff, "z": z, "p_value": p,
            "reason": (f"rolling {window}-day AUC {recent['mean']:.3f} vs {base['mean']:.3f} over the "
                       f"{base['days']} days before (drop {-diff:+.3f}, one-sided p={p:.2g})")}


def label_balance(positives: int, n: int, reference_positives: int, reference_n: int, band: float,
                  alpha: float = 0.01) -> dict[str, Any]:
    """Warn when the day's positive share moved by ``band`` or more (inclusive) and the move is significant."""
    test = stats.two_proportion_test(positives, n, reference_positives, reference_n)
    shift = test["difference"]
    big = abs(shift) >= band - 1e-9  # inclusive: 0.5 -> 0.7 (0.19999... in floats) is a move of 0.2
    passed = not (big and test["p_value"] < alpha)
    return {"passed": passed, "share": test["p_a"], "reference_share": test["p_b"], "shift": shift, "band": band,
            "p_value": test["p_value"], "ci": test["ci"]}


def _cast(column: str, source: pl.DataType, target: pl.DataType) -> pl.Expr:
    """A logged (JSON) value as the stored dtype; dates arrive as ISO text (polars 2 has no string -> date cast)."""
    if source == pl.String and target == pl.Date:
        return pl.col(column).str.to_date(strict=False)
    return pl.col(column).cast(target, strict=False)


def skew(logged: pl.DataFrame, stored: pl.DataFrame, key: list[str], columns: list[str], tol: float = 1e-6
         ) -> dict[str, Any]:
    """Share of logged request rows whose model inputs differ from the stored features of the same events."""
    # Key columns (carrier, origin, ... are often model inputs too) are what rows are matched on: they cannot differ.
    present = [c for c in dict.fromkeys(columns) if c in logged.columns and c in stored.columns and c not in key]
    if logged.is_empty() or not present:
        return {"rows": 0, "differing_rows": 0, "share": math.nan, "columns": {}}
    left = logged.select(*key, *present).with_columns(_cast(c, logged.schema[c], stored.schema[c])
                                                      for c in [*key, *present])
    joined = left.join(stored.select(*key, *present), on=key, how="inner", suffix="__stored")
    differs = {}
    any_diff = pl.lit(False)
    for c in present:
        if stored.schema[c].is_numeric():
            # missing on both sides (null, or NaN) is the same input; missing on one side only is a difference
            a, b = (pl.col(x).cast(pl.Float64).fill_nan(None) for x in (c, f"{c}__stored"))
            d = (pl.when(a.is_null() & b.is_null()).then(False).when(a.is_null() | b.is_null()).then(True)
                 .otherwise((a - b).abs() > tol))
        else:
            d = pl.col(c).fill_null("") != pl.col(f"{c}__stored").fill_null("")
        differs[c] = int(joined.select(d.sum()).item() or 0)
        any_diff = any_diff | d
    count = int(joined.select(any_diff.sum()).item() or 0) if joined.height else 0
    return {"rows": joined.height, "differing_rows": count, "share": count / joined.height if joined.height else math.nan,
            "columns": {c: n for c, n in differs.items() if n}}
