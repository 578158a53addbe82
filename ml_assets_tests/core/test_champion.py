"""The champion state: a daily chain of promotions, keeps and rollbacks, and how fresh the champion is."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from ml_assets.core import champion as C

LINE = "flight_delay_xgboost"


def _bundle(version: str, day: str, line: str = LINE, trained_through: str | None = None) -> dict:
    family = line.rsplit("_", 1)[-1]
    return {"model_line": line, "version": version, "bundle": f"bundles/{line}/{version}", "family": family,
            "day": day, "trained_through": trained_through or day, "parity_passed": True, "size_bytes": 10}


def _day(k: int) -> str:
    return (dt.date(2013, 1, 1) + dt.timedelta(days=k)).isoformat()


def _chain(*versions: str) -> dict:
    """Promote each version on its own day, starting 2013-01-02."""
    state = C.empty_state()
    for k, version in enumerate(versions, start=1):
        state = C.next_state(state, _day(k), action="promote", reason=f"promote {version}",
                             champion=_bundle(version, _day(k)))
    return state


def _rollback(state: dict, day: str, version: str | None = None, line: str | None = None) -> dict:
    target, parent = C.rollback_target(state, line, version)
    return C.next_state(state, day, action="rollback", reason="bad", champion=target, parent=parent)


def test_empty_state_has_no_champion():
    state = C.empty_state()
    assert state["champion"] is None and state["history"] == [] and C.name(state["champion"]) == "none"
    assert C.freshness_lag(state, _day(3)) is None


def test_a_promotion_records_the_pointer_and_the_parent():
    first = C.next_state(C.empty_state(), _day(1), action="promote", reason="first", champion=_bundle("1.0.0", _day(1)))
    assert first["champion"] == C.pointer(_bundle("1.0.0", _day(1)))
    assert set(first["champion"]) == set(C.POINTER_KEYS)  # only the pointer, not the bundle's other fields
    assert first["since"] == _day(1) and first["action"] == "promote"
    assert first["history"][-1]["parent"] is None
    second = C.next_state(first, _day(2), action="promote", reason="better", champion=_bundle("1.1.0", _day(2)))
    assert second["history"][-1]["parent"]["version"] == "1.0.0"
    assert first["history"] == [first["history"][0]]  # the previous day's state is not mutated
    json.dumps(second)  # a JSON record


def test_keep_and_none_leave_the_champion_and_record_evidence():
    state = _chain("1.0.0")
    kept = C.next_state(state, _day(2), action="keep", reason="candidate refused",
                        evidence={"xgboost": {"delta": -0.01, "variance": 1e-4},
                                  "mlp": {"delta": 0.0, "variance": 1e-4}},
                        decision=[{"check": "auc", "passed": False}])
    assert kept["champion"] == state["champion"] and kept["since"] == _day(1)
    assert kept["history"] == state["history"] and kept["decision"] == [{"check": "auc", "passed": False}]
    assert kept["evidence"]["xgboost"] == [{"day": _day(2), "delta": -0.01, "variance": 1e-4}]
    later = C.next_state(kept, _day(3), action="keep", reason="again",
                         evidence={"xgboost": {"delta": 0.02, "variance": 1e-4}})
    assert [e["day"] for e in later["evidence"]["xgboost"]] == [_day(2), _day(3)]
    assert len(later["evidence"]["mlp"]) == 1 and later["decision"] == []
    assert kept["evidence"]["xgboost"] == [{"day": _day(2), "delta": -0.01, "variance": 1e-4}]  # not mutated


def test_history_and_evidence_are_capped():
    state = C.empty_state()
    for k in range(C.HISTORY_LIMIT + 5):
        state = C.next_state(state, _day(k % 300), action="promote", reason="x", champion=_bundle(f"1.{k}.0", _day(k)),
                             evidence={"xgboost": {"delta": 0.0, "variance": 1.0}})
    assert len(state["history"]) == C.HISTORY_LIMIT and state["history"][-1]["version"] == f"1.{C.HISTORY_LIMIT + 4}.0"
    assert len(state["evidence"]["xgboost"]) == C.EVIDENCE_LIMIT


def test_served_holds_the_distinct_recent_champions():
    state = _chain("1.0.0", "1.1.0")
    for k in range(3, 6):
        state = C.next_state(state, _day(k), action="keep", reason="x")
    assert [(s["version"], s["last_day"]) for s in state["served"]] == [("1.0.0", _day(1)), ("1.1.0", _day(5))]
    for k in range(6, 17):
        state = C.next_state(state, _day(k), action="keep", reason="x", keep_days=14)
    assert [s["version"] for s in state["served"]] == ["1.1.0"]  # 1.0.0 last served more than 14 days ago


def test_rollback_walks_back_two_promotions_then_stops():
    state = _chain("1.0.0", "1.1.0", "1.2.0")
    state = _rollback(state, _day(4))
    assert state["champion"]["version"] == "1.1.0" and state["action"] == "rollback"
    assert state["history"][-1]["parent"]["version"] == "1.0.0"  # what 1.1.0 originally replaced
    state = _rollback(state, _day(4))
    assert state["champion"]["version"] == "1.0.0"
    with pytest.raises(C.RollbackError, match="first one"):
        C.rollback_target(state)
    # forward again to a named version
    state = _rollback(state, _day(5), version="1.2.0")
    assert state["champion"]["version"] == "1.2.0"
    assert [e["action"] for e in state["history"]] == ["promote"] * 3 + ["rollback"] * 3
    assert state["since"] == _day(5)


def test_rollback_errors_name_what_is_known():
    with pytest.raises(C.RollbackError, match="no champion"):
        C.rollback_target(C.empty_state())
    state = _chain("1.0.0")
    with pytest.raises(C.RollbackError, match="never champion.*flight_delay_xgboost 1.0.0"):
        C.rollback_target(state, version="3.0.0")
    with pytest.raises(ValueError, match="MAJOR.MINOR.PATCH"):
        C.rollback_target(state, version="latest")


def test_a_version_in_two_lines_needs_the_line():
    state = _chain("1.0.0")
    state = C.next_state(state, _day(2), action="promote", reason="mlp", champion=_bundle("1.0.0", _day(2),
                                                                                          "flight_delay_mlp"))
    state = C.next_state(state, _day(3), action="promote", reason="x", champion=_bundle("1.1.0", _day(3)))
    with pytest.raises(C.RollbackError, match="several model lines"):
        C.rollback_target(state, version="1.0.0")
    target, parent = C.rollback_target(state, line="flight_delay_mlp", version="1.0.0")
    assert (target["model_line"], target["version"]) == ("flight_delay_mlp", "1.0.0")
    assert parent["model_line"] == LINE and parent["version"] == "1.0.0"


def test_freshness_lag_counts_days_behind_the_newest_possible_training_data():
    state = C.next_state(C.empty_state(), _day(5), action="promote", reason="x",
                         champion=_bundle("1.0.0", _day(5), trained_through=_day(4)))
    assert C.freshness_lag(state, _day(5)) == 0  # trained through the day before: fresh
    assert C.freshness_lag(state, _day(6)) == 1
    assert C.freshness_lag(state, _day(8)) == 3
    no_span = C.next_state(C.empty_state(), _day(5), action="promote", reason="x",
                           champion={**_bundle("1.0.0", _day(5)), "trained_through": None})
    assert C.freshness_lag(no_span, _day(6)) is None
