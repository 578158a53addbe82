"""The honest timeline, replayed through the user's path (``ml-assets demo`` = land --as-of + an automation tick
per simulated evening and morning): each day's predictions exist before its outcomes are delivered, its live
performance only after; the champion that predicts D was decided before the evening of D-1."""
import datetime as dt
import json
import shutil

import dagster as dg
import pytest

from ml_assets import cli

pytestmark = pytest.mark.cost(28)  # seconds alone (see conftest)

DAYS = 6
FIRST_CHAMPION = 2  # (index of 01-03) the first day with a champion: its candidates had two labelled days


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    base = tmp_path_factory.mktemp("timeline")
    (base / "dagster").mkdir()
    shutil.copy("dagster.yaml", base / "dagster" / "dagster.yaml")
    mp = pytest.MonkeyPatch()
    mp.setenv("ML_ASSETS_HOME", str(base / "home"))
    mp.setenv("DAGSTER_HOME", str(base / "dagster"))
    mp.setenv("ML_ASSETS_FAMILIES", "xgboost")
    mp.setenv("ML_ASSETS_WINDOW_DAYS", "5")
    try:
        assert cli.main(["demo", "--days", str(DAYS)]) == 0
        yield base
    finally:
        mp.undo()


def _first(instance, name: str, day: str) -> float | None:
    records = instance.fetch_materializations(dg.AssetRecordsFilter(
        asset_key=dg.AssetKey(["flights", name]), asset_partitions=[day]), limit=1, ascending=True).records
    return records[0].timestamp if records else None


def test_predictions_come_before_the_outcomes_and_live_performance_after(replay):
    with dg.DagsterInstance.get() as instance:
        for i in range(DAYS):
            day = (dt.date(2013, 1, 1) + dt.timedelta(days=i)).isoformat()
            predicted, delivered = _first(instance, "batch_predictions", day), _first(instance, "landing_outcomes", day)
            live = _first(instance, "live_performance", day)
            assert predicted is not None and delivered is not None and live is not None, day
            assert predicted < delivered < live, day
            assert delivered < _first(instance, "labelled_features", day)


def test_the_champion_that_predicts_a_day_was_decided_two_days_before(replay):
    import polars as pl

    home = replay / "home" / "assets" / "flights"
    for i in range(FIRST_CHAMPION + 2, DAYS):  # the days predicted by a champion: 01-05 and 01-06
        day = dt.date(2013, 1, 1) + dt.timedelta(days=i)
        predictions = pl.read_parquet(home / "batch_predictions" / f"{day}.parquet")
        state = json.loads((home / "champion" / f"{day - dt.timedelta(days=2)}.json").read_text())["value"]
        champion = state["champion"]
        assert champion is not None, day
        assert set(predictions["model_version"]) == {f"{champion['model_line']}/{champion['version']}"}
        # trained only on days whose outcomes had landed by the evening before the day it predicts
        assert dt.date.fromisoformat(champion["trained_through"]) <= day - dt.timedelta(days=3)


def test_automation_computes_every_asset_day_once(replay):
    """Nothing is computed twice over the replay. (Dagster 1.13 requested champion D-1 again with every champion D,
    and batch_predictions D+1 with it, until the champion became subsettable: both came out twice.)"""
    from collections import Counter

    with dg.DagsterInstance.get() as instance:
        computed = Counter((e.dagster_event.asset_key.to_user_string(), e.dagster_event.partition)
                           for run in instance.get_runs()
                           for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION))
    assert ("flights/champion", "2013-01-04") in computed
    assert {k: n for k, n in computed.items() if n > 1} == {}
