"""Live performance: predictions joined with what happened, judged on rolling windows with intervals."""
from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from ml_assets.core import live

D = dt.date(2013, 1, 10)
KEY = ["date", "carrier", "flight", "origin", "sched_dep_time"]


def _labelled(labels):
    n = len(labels)
    return pl.DataFrame({"date": [D] * n, "carrier": ["UA"] * n, "flight": list(range(1, n + 1)),
                         "origin": ["EWR"] * n, "sched_dep_time": [800] * n, "dep_hour": [8.0] * n,
                         "is_late": labels}, schema_overrides={"is_late": pl.Boolean})


def _predictions(p):
    n = len(p)
    return pl.DataFrame({"date": [D.isoformat()] * n, "carrier": ["UA"] * n, "flight": list(range(1, n + 1)),
                         "origin": ["EWR"] * n, "sched_dep_time": [800] * n, "p_late": p,
                         "model_version": ["1.0.0"] * n}).with_columns(pl.col("date").str.to_date())


def _day(day: int, auc_target: str, rows: int = 600, seed: int = 0) -> dict:
    """A day's estimate from scores that rank well ("good") or at random ("bad")."""
    rng = np.random.default_rng([seed, day])
    y = (rng.random(rows) < 0.25).astype(float)
    p = y * (1.0 if auc_target == "good" else 0.0) + rng.normal(0, 1, rows)
    joined = pl.DataFrame({"is_late": y.astype(bool), "p_late": p})
    return {"day": (D + dt.timedelta(days=day)).isoformat(), **live.day_estimate(joined, "is_late", "p_late")}


def test_known_auc_and_unlabelled_events_left_out():
    labelled = _labelled([True, False, True, False, None])
    joined = live.join_labels(_predictions([0.9, 0.1, 0.8, 0.2, 0.99]), labelled, KEY, "is_late", "p_late")
    assert joined.height == 4  # the cancelled flight has no outcome
    estimate = live.day_estimate(joined, "is_late", "p_late")
    assert estimate["rows"] == 4 and estimate["auc"] == pytest.approx(1.0) and estimate["positive_share"] == 0.5
    reversed_ = live.join_labels(_predictions([0.1, 0.9, 0.2, 0.8, 0.5]), labelled, KEY, "is_late", "p_late")
    assert live.day_estimate(reversed_, "is_late", "p_late")["auc"] == pytest.approx(0.0)
    # events without a prediction or without a matching key are dropped, never guessed
    missing = _predictions([0.9, None, 0.8, 0.2, 0.5]).with_columns(pl.col("p_late").cast(pl.Float64))
    assert live.join_labels(missing, labelled, KEY, "is_late", "p_late").height == 3


def test_a_day_with_one_class_or_too_few_rows_has_no_auc():
    one_class = pl.DataFrame({"is_late": [True] * 10, "p_late": np.linspace(0, 1, 10)})
    assert math.isnan(live.day_estimate(one_class, "is_late", "p_late")["auc"])
    tiny = pl.DataFrame({"is_late": [True, False, True], "p_late": [0.9, 0.1, 0.8]})
    estimate = live.day_estimate(tiny, "is_late", "p_late")
    assert estimate["rows"] == 3 and math.isnan(estimate["auc"]) and math.isnan(estimate["variance"])


def test_drop_test_is_not_evaluated_with_few_days():
    days = [_day(k, "good") for k in range(5)]
    result = live.drop_test(days, window=3, reference=7)
    assert result["evaluated"] is False and result["passed"] is None and "too few" in result["reason"]
    # holes (days without an AUC) do not count as days
    holes = [_day(k, "good") for k in range(7)] + [{"day": "x", "rows": 0, "auc": math.nan, "variance": math.nan}] * 3
    assert live.drop_test(holes, window=3, reference=7)["evaluated"] is False


def test_a_significant_drop_fails_and_a_stable_series_passes():
    stable = [_day(k, "good") for k in range(14)]
    ok = live.drop_test(stable, window=7, reference=7)
    assert ok["evaluated"] and ok["passed"], ok["reason"]
    assert ok["window"]["days"] == ok["reference"]["days"] == 7
    dropped = [_day(k, "good") for k in range(7)] + [_day(k, "bad") for k in range(7, 14)]
    bad = live.drop_test(dropped, window=7, reference=7)
    assert bad["evaluated"] and not bad["passed"]
    assert bad["drop"] > 0.1 and bad["p_value"] < 0.01 and "drop +" in bad["reason"]


def test_rolling_means_have_intervals():
    days = [_day(k, "good") for k in range(5)]
    rows = live.rolling(days, window=3)
    assert [r["day"] for r in rows] == [d["day"] for d in days]
    assert rows[0]["mean"] == pytest.approx(days[0]["auc"])
    assert rows[4]["mean"] == pytest.approx(np.mean([d["auc"] for d in days[2:5]]))
    assert all(r["low"] < r["mean"] < r["high"] for r in rows)
    assert (rows[4]["high"] - rows[4]["low"]) < (rows[0]["high"] - rows[0]["low"])  # more days: narrower


FIFTY_FIFTY = [(500, 1000)] * 10


def test_label_balance_warns_on_a_large_significant_shift():
    moved = live.label_balance(700, 1000, FIFTY_FIFTY, band=0.1)  # 50/50 -> 70/30
    assert not moved["passed"] and moved["shift"] == pytest.approx(0.2) and moved["p_value"] < 0.01
    assert moved["share"] == 0.7 and moved["reference_share"] == 0.5
    assert moved["ci"][0] < 0.2 < moved["ci"][1]
    assert live.label_balance(510, 1000, FIFTY_FIFTY, band=0.1)["passed"]  # small shift
    assert live.label_balance(7, 10, [(5, 10)], band=0.1)["passed"]  # large but not significant on 10 rows


def test_the_label_balance_band_is_inclusive():
    # 0.5 -> 0.7 is 0.19999... in floats: a move of exactly the band still warns
    assert not live.label_balance(700, 1000, FIFTY_FIFTY, band=0.2)["passed"]
    assert live.label_balance(700, 1000, FIFTY_FIFTY, band=0.2 + 1e-6)["passed"]


def test_label_balance_knows_the_days_own_spread():
    """Real late rates move from 10% to 45% between calm and stormy days: a stormy day is not a broken feed,
    a share beyond anything the trailing days do is. (With binomial noise alone both warned.)"""
    rng = np.random.default_rng(3)
    shares = np.clip(rng.normal(0.22, 0.1, 28), 0.05, 0.6)
    trailing = [(int(round(s * 900)), 900) for s in shares]
    stormy = live.label_balance(420, 900, trailing, band=0.2)  # 0.47 against ~0.22
    assert stormy["shift"] > 0.2 and stormy["passed"], stormy
    assert stormy["day_to_day_sd"] > 0.05
    broken = live.label_balance(900, 900, trailing, band=0.2)  # every flight late: the label feed is wrong
    assert not broken["passed"], broken


def _series(rng, days: int, day_sd: float, auc: float = 0.68, within_se: float = 0.02) -> list[dict]:
    return [{"day": str(k), "auc": auc + rng.normal(0, day_sd), "variance": within_se ** 2} for k in range(days)]


def test_live_auc_drop_rarely_fires_on_normal_days_with_real_day_effects():
    """Daily AUCs that move by 0.04 from day to day (weather) with a within-day error of 0.02: on 300 normal
    35-day series the 1% test fires on few (a test on row noise alone: 13%); a sustained drop of 0.08 for a week
    is found nearly always."""
    rng = np.random.default_rng(7)
    normal = [live.drop_test(_series(rng, 35, 0.04), window=7, reference=28) for _ in range(300)]
    assert all(r["evaluated"] for r in normal)
    false_alarms = sum(not r["passed"] for r in normal) / len(normal)
    assert false_alarms <= 0.03, false_alarms
    dropped = []
    for _ in range(100):
        series = _series(rng, 35, 0.04)
        for r in series[-7:]:
            r["auc"] -= 0.08
        dropped.append(live.drop_test(series, window=7, reference=28))
    assert sum(not r["passed"] for r in dropped) / len(dropped) >= 0.9
    one_bad_day = _series(rng, 35, 0.0)
    one_bad_day[-1]["auc"] -= 0.05
    assert live.drop_test(one_bad_day, window=7, reference=28)["passed"]


def test_serving_skew_counts_rows_whose_inputs_differ():
    """Logged rows come from JSON (dates as text); key columns may be model inputs too (carrier, origin)."""
    stored = _labelled([True, False, True, False]).with_columns(temp=pl.Series([30.0, 31.0, None, 33.0]))
    logged = stored.drop("is_late").with_columns(pl.col("date").cast(pl.String))
    same = live.skew(logged, stored, KEY, ["dep_hour", "temp", "carrier"])
    assert same["rows"] == 4 and same["differing_rows"] == 0 and same["share"] == 0.0
    changed = logged.with_columns(temp=pl.Series([30.0, 35.0, 1.0, 33.0]))
    skew = live.skew(changed, stored, KEY, ["dep_hour", "temp"])
    assert skew["differing_rows"] == 2 and skew["share"] == 0.5 and skew["columns"] == {"temp": 2}
    one_sided = live.skew(logged.with_columns(temp=pl.Series([30.0, 31.0, 32.0, None])), stored, KEY, ["temp"])
    assert one_sided["differing_rows"] == 2  # missing on one side only is a difference
    nan = live.skew(logged.with_columns(temp=pl.Series([30.0, 31.0, float("nan"), 33.0])), stored, KEY, ["temp"])
    assert nan["differing_rows"] == 0  # NaN and null are both "missing"
    assert live.skew(logged.head(0), stored, KEY, ["temp"])["rows"] == 0
