"""Freshness in data days: the champion decision against the newest fully landed day."""
import datetime as dt

from ml_assets.core.freshness import assess, newest_complete_day

D = dt.date.fromisoformat


def test_the_newest_complete_day_needs_flights_and_weather():
    flights, weather = [D("2013-01-01"), D("2013-01-03")], [D("2013-01-01"), D("2013-01-02")]
    assert newest_complete_day(flights, weather) == D("2013-01-01")
    assert newest_complete_day([D("2013-01-01")], []) is None


def test_nothing_to_be_fresh_about_before_a_model_can_exist():
    assert assess(None, None).passed
    first = assess(D("2013-01-01"), None)
    assert first.passed and "no history" in first.reason


def test_at_most_one_day_behind_passes_and_two_fails():
    assert assess(D("2013-01-10"), D("2013-01-10")).passed
    one = assess(D("2013-01-10"), D("2013-01-09"))
    assert one.passed and one.lag_days == 1
    two = assess(D("2013-01-10"), D("2013-01-08"))
    assert not two.passed and two.lag_days == 2 and "stale" in two.reason


def test_no_decision_while_models_could_exist_fails_and_the_first_day_is_never_required():
    missing = assess(D("2013-01-05"), None)
    assert not missing.passed and "no candidate" in missing.reason
    # with two days landed the only possible candidate is for 01-02: "one day behind" cannot mean 01-01
    assert assess(D("2013-01-02"), D("2013-01-02")).passed
    assert assess(D("2013-01-02"), None).required == D("2013-01-02")
