"""The daily backstop's decisions, on plain values."""
from ml_assets.core.catchup import DayState, plan_backstop

DATA = ["raw_flights", "raw_weather", "flight_features", "data_profile"]
CHAIN = ["training_set", "xgboost_model", "torch_model", "model_evaluation", "onnx_model", "deployment_bundle"]
FILES = {"flights": "f/v0001", "weather": "w/v0001"}


def day(d, read=FILES, materialized=DATA + CHAIN, **kw):
    return DayState(day=d, landed=FILES, read=read, materialized=frozenset(materialized), **kw)


def plan(*states, limit=31):
    return plan_backstop(list(states), DATA, CHAIN, limit=limit)


def test_nothing_missed_nothing_requested():
    assert plan(day("2013-01-02"), day("2013-01-03")).requests == []


def test_a_landed_day_never_stored_gets_its_data_layer():
    p = plan(day("2013-01-02"), day("2013-01-03", read={}, materialized=[]))
    assert [(r.day, r.assets, r.reason) for r in p.requests] == [
        ("2013-01-03", DATA, "landed, never processed")]


def test_a_redelivered_day_is_processed_again():
    p = plan(day("2013-01-02", read={"flights": "f/v0000", "weather": "w/v0001"}), day("2013-01-03"))
    assert [(r.day, r.reason) for r in p.requests] == [("2013-01-02", "new delivery of flights")]


def test_an_incomplete_day_gets_what_is_missing_unless_its_delivery_was_refused():
    partial = DATA[:2] + CHAIN
    p = plan(day("2013-01-02", materialized=partial), day("2013-01-03"),
             day("2013-01-04", materialized=partial, blocked_by=("raw_flights:schema",)))
    assert [(r.day, r.assets) for r in p.requests] == [("2013-01-02", ["flight_features", "data_profile"])]
    assert "refused by raw_flights:schema" in p.skipped["2013-01-04"]


def test_the_newest_day_gets_its_model_chain_once_its_data_is_complete():
    p = plan(day("2013-01-02"), day("2013-01-03", materialized=DATA + CHAIN[:2]))
    assert [(r.day, r.assets) for r in p.requests] == [("2013-01-03", CHAIN[2:])]
    # not while its data layer is requested in the same run, nor for the first day (no history)
    assert plan(day("2013-01-03", read={}, materialized=[])).requests[0].assets == DATA
    assert plan(day("2013-01-01", materialized=DATA)).requests == []


def test_days_in_progress_are_left_alone_and_the_rest_is_capped():
    p = plan(day("2013-01-02", read={}, materialized=[], in_progress=True),
             *[day(f"2013-01-{d:02d}", read={}, materialized=[]) for d in (3, 4, 5)], limit=2)
    assert [r.day for r in p.requests] == ["2013-01-03", "2013-01-04"]
    assert "in progress" in p.skipped["2013-01-02"] and "deferred" in p.skipped["2013-01-05"]
