"""The daily backstop's decisions, on plain values: which asset-days should exist and do not."""
from __future__ import annotations

import datetime as dt

from ml_assets.core.catchup import plan_missing

# A small graph in topological order: (asset, day offsets of each parent it reads).
GRAPH = {
    "raw_schedule": [],
    "raw_outcomes": [],
    "features": [("raw_schedule", 0), ("delay_history", -2)],
    "delay_history": [("raw_outcomes", 0)],
    "labelled_features": [("features", 0), ("raw_outcomes", 0)],
    "training_set": [("labelled_features", -1)],
}
ORDER = list(GRAPH)
FIRST = "2013-01-01"


def _shift(day: str, offset: int) -> str:
    return (dt.date.fromisoformat(day) + dt.timedelta(days=offset)).isoformat()


def parents(asset: str, day: str):
    """Parent asset-days that exist in the feed (the feed starts on FIRST)."""
    return [(p, _shift(day, k)) for p, k in GRAPH[asset] if _shift(day, k) >= FIRST]


def everything(*days: str) -> set:
    return {(a, d) for a in ORDER for d in days}


def plan(days, materialized, in_progress=(), limit=31):
    return plan_missing(days, ORDER, parents, set(materialized), set(in_progress), limit)


def test_nothing_missed_nothing_requested():
    days = ["2013-01-01", "2013-01-02", "2013-01-03"]
    result = plan(days, everything(*days))
    assert result.requests == [] and result.skipped == {}


def test_a_day_never_processed_gets_every_asset_in_graph_order():
    done = everything("2013-01-01", "2013-01-02")
    result = plan(["2013-01-01", "2013-01-02", "2013-01-03"], done)
    assert [(r.day, r.assets) for r in result.requests] == [("2013-01-03", ORDER)]


def test_an_asset_waits_for_a_parent_day_that_is_neither_there_nor_due():
    # 01-03's features read the history of 01-01, which is missing and is not due on 01-03's run.
    done = everything("2013-01-02") | {("raw_schedule", "2013-01-01"), ("raw_outcomes", "2013-01-01")}
    result = plan(["2013-01-03"], done)
    (request,) = result.requests
    # training_set reads 01-02's labelled features, which exist; features (and so labelled_features) wait
    assert request.assets == ["raw_schedule", "raw_outcomes", "delay_history", "training_set"]
    # planning the older day too puts it first; a day never counts on another day's due assets (the next run does)
    both = plan(["2013-01-03", "2013-01-01"], done)
    assert [r.day for r in both.requests] == ["2013-01-01", "2013-01-03"]
    assert both.requests[0].assets == ["features", "delay_history", "labelled_features", "training_set"]
    assert both.requests[1].assets == request.assets


def test_only_the_missing_assets_of_an_incomplete_day_are_requested():
    day = "2013-01-02"
    done = everything("2013-01-01") | {(a, day) for a in ["raw_schedule", "raw_outcomes", "delay_history", "features"]}
    (request,) = plan([day], done).requests
    assert request.assets == ["labelled_features", "training_set"]


def test_a_refused_day_is_materialized_and_needs_nothing():
    """Refusal is data: a refused day (and its consumers) are materialized as refused."""
    days = ["2013-01-01", "2013-01-02"]
    assert plan(days, everything(*days)).requests == []


def test_days_in_progress_are_left_alone_and_the_rest_is_capped():
    days = ["2013-01-02", "2013-01-03", "2013-01-04", "2013-01-05"]
    result = plan(days, everything(FIRST), in_progress={"2013-01-02"}, limit=2)
    assert [r.day for r in result.requests] == ["2013-01-03", "2013-01-04"]
    assert "in progress" in result.skipped["2013-01-02"]
    assert "deferred" in result.skipped["2013-01-05"]


def test_oldest_day_first_whatever_the_input_order():
    days = ["2013-01-03", "2013-01-01", "2013-01-02"]
    assert [r.day for r in plan(days, set()).requests] == sorted(days)
