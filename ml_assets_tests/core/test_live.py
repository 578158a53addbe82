import datetime as dt
import json
import math

import polars as pl
import pytest

from ml_assets.core import live

D = dt.date(2013, 1, 10)


def _outcomes(labels):
    n = len(labels)
    return pl.DataFrame({"date": [D] * n, "carrier": ["UA"] * n, "flight": list(range(1, n + 1)),
                         "origin": ["EWR"] * n, "sched_dep_time": [800] * n, "dep_hour": [8] * n,
                         "is_late": labels})


def _predictions(p):
    n = len(p)
    return pl.DataFrame({"date": [D] * n, "carrier": ["UA"] * n, "flight": list(range(1, n + 1)),
                         "origin": ["EWR"] * n, "sched_dep_time": [800] * n, "dest": ["ORD"] * n,
                         "p_late": p, "model_version": ["m/1.0.0"] * n})


def test_known_auc_and_cancelled_flights_left_out():
    outcomes = _outcomes([True, False, True, False, None])
    joined = live.join_outcomes(_predictions([0.9, 0.1, 0.8, 0.2, 0.99]), outcomes)
    assert joined.height == 4  # the cancelled flight has no outcome
    assert live.live_metrics(joined)["overall"]["roc_auc"] == pytest.approx(1.0)
    reversed_ = live.join_outcomes(_predictions([0.1, 0.9, 0.2, 0.8, 0.5]), outcomes)
    m = live.live_metrics(reversed_)["overall"]
    assert m["roc_auc"] == pytest.approx(0.0) and m["brier"] == pytest.approx((0.81 + 0.81 + 0.64 + 0.64) / 4)


def test_auc_drop_warns_beyond_tolerance():
    assert live.auc_drop(0.70, 0.72, 0.05)["passed"]
    drop = live.auc_drop(0.60, 0.72, 0.05)
    assert not drop["passed"] and drop["drop"] == pytest.approx(0.12)
    assert live.auc_drop(math.nan, 0.72, 0.05)["passed"]  # nothing to judge yet


def test_online_log_lines_for_the_day_latest_answer_wins():
    def line(flight, p, ts, day=D):
        return json.dumps({"ts": ts, "model_version": "1.0.0", "p_late": p, "features": {
            "date": day.isoformat(), "carrier": "UA", "flight": flight, "origin": "EWR", "sched_dep_time": 800,
            "dest": "ORD"}})

    lines = [line(1, 0.2, "2013-01-09T20:00Z"), line(1, 0.9, "2013-01-09T21:00Z"), line(2, 0.1, "a"),
             line(3, 0.5, "b", D + dt.timedelta(days=1)), ""]
    online = live.online_predictions(lines, D)
    assert sorted(online["flight"].to_list()) == [1, 2]
    assert online.filter(pl.col("flight") == 1)["p_late"].item() == 0.9
    joined = live.join_outcomes(online, _outcomes([True, False]))
    assert joined.height == 2
    assert live.online_predictions([], D).is_empty()
