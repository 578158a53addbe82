"""Live performance: predictions made before a day, joined with what really happened, as a daily series.

Monitoring is judged on rolling windows with intervals, never on one noisy day: the mean of the within-day AUCs
over the last ``window`` days (with its DeLong-based interval, ``core.stats.rolling_auc``) is compared with the
mean over the ``reference`` days before that window; a drop is reported only when it is significant.

Significant against what the series does on its own. Rows of one day are not independent draws of one
population: weather and traffic make whole days easier or harder, so daily AUCs move by ~0.04 on normal data
while each day's sampling error is ~0.02. A test that knows only the sampling error fired on 10% of normal days;
both tests below therefore use the larger of the sampling error and the reference days' own day-to-day spread.
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
        return {"days": 0, "mean": math.nan, "se": math.nan, "sd": math.nan}
    k = len(usable)
    aucs = [r["auc"] for r in usable]
    return {"days": k, "mean": float(np.mean(aucs)), "se": math.sqrt(sum(r["variance"] for r in usable)) / k,
            "sd": float(np.std(aucs, ddof=1)) if k > 1 else math.nan}


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

    The standard error of the difference is the larger of the within-day (DeLong) one and the one implied by the
    reference days' spread of daily AUCs (which holds sampling noise and real day effects), with a t
    distribution on the reference's degrees of freedom. ``evaluated`` is False when there are too few days to
    judge (the start of the feed): not a pass, not a fail."""
    recent = _mean(days[-window:])
    base = _mean(days[-(window + reference):-window]) if len(days) > window else _mean([])
    result = {"window": recent, "reference": base, "alpha": alpha}
    if recent["days"] < min_window_days or base["days"] < min_reference_days:
        return {**result, "evaluated": False, "passed": None,
                "reason": f"{recent['days']} day(s) in the window and {base['days']} in the reference: too few"}
    diff = recent["mean"] - base["mean"]
    sampling = math.sqrt(recent["se"] ** 2 + base["se"] ** 2)
    spread = base["sd"] * math.sqrt(1 / recent["days"] + 1 / base["days"])
    se = max(sampling, spread)
    t = diff / se if se > 0 else 0.0
    from scipy.stats import t as student

    p = float(student.cdf(t, df=base["days"] - 1))
    passed = p >= alpha
    return {**result, "evaluated": True, "passed": passed, "drop": -diff, "se": se, "day_to_day_sd": base["sd"],
            "t": t, "p_value": p,
            "reason": (f"rolling {window}-day AUC {recent['mean']:.3f} vs {base['mean']:.3f} over the "
                       f"{base['days']} days before (drop {-diff:+.3f} ± {se:.3f}, one-sided p={p:.2g})")}


def label_balance(positives: int, n: int, reference: Sequence[tuple[int, int]], band: float,
                  alpha: float = 0.01) -> dict[str, Any]:
    """Warn when the day's positive share moved by ``band`` or more (inclusive) from the trailing days' pooled
    share and the move is significant, judged against binomial noise plus the trailing days' own day-to-day
    spread of shares (a stormy day is late more often; a broken label feed is beyond that).

    ``reference`` holds (positives, rows) of each trailing day."""
    ref_pos, ref_n = sum(p for p, _ in reference), sum(m for _, m in reference)
    if n <= 0 or ref_n <= 0:
        raise ValueError(f"label_balance needs rows on the day and in the reference, got {n} and {ref_n}")
    share, ref_share = positives / n, ref_pos / ref_n
    shift = share - ref_share
    between = _between_day_share_variance(reference)
    se = math.sqrt(ref_share * (1 - ref_share) * (1 / n + 1 / ref_n) + between)
    z = shift / se if se > 0 else 0.0
    p_value = float(2 * stats._norm().sf(abs(z)))
    big = abs(shift) >= band - 1e-9  # inclusive: 0.5 -> 0.7 (0.19999... in floats) is a move of 0.2
    passed = not (big and p_value < alpha)
    return {"passed": passed, "share": share, "reference_share": ref_share, "shift": shift, "band": band,
            "day_to_day_sd": math.sqrt(between), "p_value": p_value, "ci": [shift - 1.96 * se, shift + 1.96 * se]}


def _between_day_share_variance(reference: Sequence[tuple[int, int]]) -> float:
    """The spread of daily shares beyond binomial noise (a method-of-moments random effect; 0 below 3 days)."""
    days = [(p / m, m) for p, m in reference if m > 0]
    if len(days) < 3:
        return 0.0
    shares = np.array([s for s, _ in days])
    sampling = np.mean([s * (1 - s) / m for s, m in days])
    return float(max(0.0, shares.var(ddof=1) - sampling))


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
