"""champion_freshness on constructed instance states: data days, not wall clock."""
import datetime as dt

import dagster as dg

from ml_assets.core.landing import land_days
from ml_assets.definitions import build_definitions
from ml_assets.defs.automation.freshness import evaluate_champion_freshness
from ml_assets.resources.storage import StorageRoot
from ml_assets_tests.conftest import FIRST

CHECK = dg.AssetCheckKey(dg.AssetKey("champion"), "champion_freshness")


def bundle(instance, day):
    instance.report_runless_asset_event(dg.AssetMaterialization("deployment_bundle", partition=day))
    return instance.fetch_materializations(dg.AssetKey("deployment_bundle"), limit=1).records[0].storage_id


def champion(instance, applied_through, data_day):
    instance.report_runless_asset_event(dg.AssetMaterialization("champion", metadata={
        "applied_through": applied_through, "data_day": data_day, "champion": "flight_delay_xgboost 1.2.0"}))


def test_fails_on_a_stale_champion_and_passes_on_a_fresh_one(root):
    land_days(root, FIRST, FIRST + dt.timedelta(days=4))  # 01-01..01-05
    storage = StorageRoot(root=str(root))
    with dg.instance_for_test() as instance:
        none_yet = evaluate_champion_freshness(instance, storage)
        assert not none_yet.passed and "no candidate" in none_yet.description

        bundle(instance, "2013-01-02")
        through = bundle(instance, "2013-01-03")
        champion(instance, through, "2013-01-02")
        stale = evaluate_champion_freshness(instance, storage)
        assert not stale.passed
        assert stale.metadata["lag_days"].value == 2 and stale.metadata["considered_through"].value == "2013-01-03"

        # a newer bundle the champion has not applied yet does not make it fresh ...
        bundle(instance, "2013-01-04")
        assert not evaluate_champion_freshness(instance, storage).passed
        # ... its decision on it does, even when the candidate lost and the champion stayed
        champion(instance, bundle(instance, "2013-01-05"), "2013-01-02")
        fresh = evaluate_champion_freshness(instance, storage)
        assert fresh.passed and fresh.metadata["lag_days"].value == 0
        assert fresh.metadata["champion_data_day"].value == "2013-01-02"


def test_runs_as_an_asset_check_of_the_champion(root):
    land_days(root, FIRST, FIRST)
    defs = build_definitions(str(root), "local")
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection=set(),
                                                                 asset_check_selection={CHECK})
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance)
        (evaluation,) = result.get_asset_check_evaluations()
        assert evaluation.asset_check_key == CHECK and evaluation.passed  # one day landed: nothing to train yet
        assert not evaluation.blocking
