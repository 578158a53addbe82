"""The scheduled search: out of sample, adopted only when clearly better than the defaults, window lengths honoured."""
import datetime as dt

import numpy as np
import polars as pl
import pytest

from ml_assets.core import families as FAM
from ml_assets.core.tuning import recent_days, search, split_last_days

INPUTS = FAM.ModelInputs([], ["x"], "y", "p")


def rows(days: int = 20, per_day: int = 200, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n = days * per_day
    x = rng.normal(size=n)
    y = rng.random(n) < 1 / (1 + np.exp(-x))
    dates = [dt.date(2013, 3, 1) + dt.timedelta(days=i // per_day) for i in range(n)]
    return pl.DataFrame({"date": dates, "x": x, "y": y})


def fake_family(seen: list, quality: dict[int, float]) -> FAM.Family:
    """A family whose parameter ``k`` sets how much of x its scores use (the rest is noise): k=3 is clearly best."""
    def train(train_rows, valid_rows, inputs, params=None, seed=0):
        seen.append((train_rows["date"].max(), train_rows["date"].n_unique(), valid_rows.height))
        return {"k": int(params["k"])}

    def predict(model, frame):
        noise = np.random.default_rng(len(frame)).normal(size=frame.height)
        w = quality[model["k"]]
        return w * frame["x"].to_numpy() + (1 - w) * 3 * noise

    return FAM.Family(name="fake", default_params={"k": 0}, train=train, predict=predict, save=None, load=None,
                      export_onnx=None, tune_space=lambda trial: {"k": trial.suggest_int("k", 0, 3)})


def test_the_registry_of_tunable_families_matches_their_search_spaces():
    assert {n for n in FAM.names() if FAM.get(n).tune_space is not None} == set(FAM.TUNABLE)


def test_trials_never_see_the_validation_days_and_a_clear_winner_is_adopted():
    data, seen = rows(), []
    found = search(fake_family(seen, {0: 0.05, 1: 0.1, 2: 0.2, 3: 0.9}), data, INPUTS, n_trials=12,
                   timeout_seconds=None, validation_days=5, min_train_days=5)
    _, valid = split_last_days(data, 5)
    assert seen and all(last < valid["date"].min() and n_valid == 0 for last, _, n_valid in seen)
    s = found["search"]
    assert s["adopted"] and found["params"]["k"] == 3
    assert s["gain_vs_default"] > s["gain_se"] > 0  # the rule it states, on the numbers it reports


def test_a_winner_within_the_noise_is_not_adopted():
    seen = []
    found = search(fake_family(seen, {0: 0.30, 1: 0.31, 2: 0.305, 3: 0.30}), rows(), INPUTS, n_trials=8,
                   timeout_seconds=None, validation_days=5, min_train_days=5, adopt_se=1000.0)
    assert found["search"]["trials"] == 8 and not found["search"]["adopted"]
    assert found["params"] == {"k": 0}  # the defaults stay


def test_window_choices_train_on_the_most_recent_days_only():
    seen = []
    search(fake_family(seen, {0: 0.1, 1: 0.2, 2: 0.3, 3: 0.4}), rows(days=20), INPUTS, n_trials=10,
           timeout_seconds=None, validation_days=5, min_train_days=5, window_choices=(None, 7))
    assert {n_days for _, n_days, _ in seen} == {15, 7}
    assert recent_days(rows(days=20), 7)["date"].n_unique() == 7


@pytest.mark.parametrize("trials,days,reason", [(0, 20, "budget 0"), (5, 6, "training day(s)")])
def test_no_search_without_a_budget_or_enough_days(trials, days, reason):
    found = search(fake_family([], {0: 0.1, 1: 0.1, 2: 0.1, 3: 0.1}), rows(days=days), INPUTS, n_trials=trials,
                   timeout_seconds=None, validation_days=5, min_train_days=5)
    assert found["search"]["trials"] == 0 and reason in found["search"]["reason"] and found["params"] == {"k": 0}
