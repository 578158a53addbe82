import datetime as dt

import pytest
from upath import UPath

from ml_assets.core import champion as C

D = dt.date(2013, 1, 10)


def _promote(root, version, day, line="flight_delay_xgboost"):
    return C.promote(root, line, version, f"bundles/{line}/{version}", day, "test")


def test_as_of_is_the_champion_the_evening_before(tmp_path):
    root = UPath(tmp_path)
    _promote(root, "1.0.0", D)
    _promote(root, "1.1.0", D + dt.timedelta(days=1))
    events = C.read_history(root)
    assert C.as_of(events, D - dt.timedelta(days=1)) is None
    assert C.as_of(events, D)["version"] == "1.0.0"
    assert C.as_of(events, D + dt.timedelta(days=5))["version"] == "1.1.0"


def test_backfilled_older_promotion_does_not_become_current(tmp_path):
    root = UPath(tmp_path)
    _promote(root, "1.1.0", D)
    _promote(root, "1.0.0", D - dt.timedelta(days=3))  # recorded later, for an older day
    events = C.read_history(root)
    assert C.current(events)["version"] == "1.1.0"
    assert C.as_of(events, D - dt.timedelta(days=1))["version"] == "1.0.0"


def test_rollback_round_trip_walks_back(tmp_path):
    root = UPath(tmp_path)
    _promote(root, "1.0.0", D)
    _promote(root, "1.1.0", D + dt.timedelta(days=1))
    _promote(root, "1.2.0", D + dt.timedelta(days=2))
    later = D + dt.timedelta(days=3)
    C.rollback(root, C.rollback_target(C.read_history(root)), later, "bad")
    assert C.current(C.read_history(root))["version"] == "1.1.0"
    C.rollback(root, C.rollback_target(C.read_history(root)), later, "still bad")
    assert C.current(C.read_history(root))["version"] == "1.0.0"
    with pytest.raises(C.RollbackError, match="first one"):
        C.rollback_target(C.read_history(root))
    C.rollback(root, C.rollback_target(C.read_history(root), version="1.2.0"), later, "forward again")
    assert C.current(C.read_history(root))["version"] == "1.2.0"
    assert [e["action"] for e in C.read_history(root)] == ["promote"] * 3 + ["rollback"] * 3


def test_rollback_to_unknown_version_names_the_known_ones(tmp_path):
    root = UPath(tmp_path)
    with pytest.raises(C.RollbackError, match="no champion"):
        C.rollback_target(C.read_history(root))
    _promote(root, "1.0.0", D)
    with pytest.raises(C.RollbackError, match="never champion.*flight_delay_xgboost 1.0.0"):
        C.rollback_target(C.read_history(root), version="3.0.0")
