"""The automation conditions of the real graph, evaluated without a daemon (``dg.evaluate_automation_conditions``).

Upstream days are recorded as runless materializations with their per-day check results, which is what the
conditions read; two tests run real range materializations where the point is what a run leaves behind.
"""
import datetime as dt

import dagster as dg
import pytest
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from ml_assets.definitions import build_definitions
from ml_assets.defs.automation.conditions import DAY_EAGER, FRESHNESS, LANDING_STARTED

NOW = dt.datetime(2026, 6, 1, 12, 0)  # the clock is far past the 2013 partitions, as in real use


@pytest.fixture(scope="module")
def defs(tmp_path_factory):
    return build_definitions(str(tmp_path_factory.mktemp("home")), "local")


class Automation:
    """A test instance plus the automation cursor, ticked like the automation sensor does."""

    def __init__(self, defs, instance):
        self.defs, self.instance, self.cursor = defs, instance, None
        self.graph = defs.resolve_asset_graph()

    def tick(self) -> dict[str, list[str]]:
        result = dg.evaluate_automation_conditions(self.defs, self.instance, cursor=self.cursor, evaluation_time=NOW)
        self.cursor = result.cursor
        return {k.to_user_string(): sorted(p or "-" for p in result.get_requested_partitions(k))
                for k in self.graph.get_all_asset_keys() if result.get_requested_partitions(k)}

    def stored(self, asset: str, day: str | None = None, failed: tuple[str, ...] = (), **metadata):
        """A materialization of ``asset`` (day ``day``) with its blocking checks, ``failed`` ones failing."""
        key = dg.AssetKey(asset)
        self.instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=day, metadata=metadata))
        record = self.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[day] if day else None), limit=1).records[0]
        target = AssetCheckEvaluationTargetMaterializationData(
            storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp)
        for check in self.graph.get_check_keys_for_assets({key}):
            if self.graph.get(check).blocking:
                self.instance.report_runless_asset_event(dg.AssetCheckEvaluation(
                    asset_key=key, check_name=check.name, passed=check.name not in failed, partition=day,
                    blocking=True, target_materialization_data=target))

    def landed(self, *days: str, failed: tuple[str, ...] = ()):
        for day in days:
            self.stored("raw_flights", day, failed)
            self.stored("raw_weather", day)


@pytest.fixture
def auto(defs):
    with dg.instance_for_test() as instance:
        automation = Automation(defs, instance)
        assert automation.tick() == {}  # the first evaluation is the baseline: nothing for 365 empty days
        yield automation


def test_every_asset_has_its_policy(defs):
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        name, node = key.to_user_string(), graph.get(key)
        if name in LANDING_STARTED:
            assert node.automation_condition is None  # the landing sensor starts them
        else:
            assert node.automation_condition is not None, name
        if name in DAY_EAGER:
            label = node.automation_condition.get_label()
            assert label.startswith("eager, any day"), (name, label)
            assert "in_latest_time_window" not in str(node.automation_condition)
        assert (node.freshness_policy is not None) == (name in FRESHNESS), name
    check = graph.get(dg.AssetCheckKey(dg.AssetKey("champion"), "champion_freshness"))
    assert check.automation_condition is not None and not check.blocking


def test_a_landed_day_is_carried_to_features_and_tomorrows_model(auto):
    auto.stored("planes")
    auto.landed("2013-01-01")
    requested = auto.tick()
    assert requested["flight_features"] == requested["data_profile"] == ["2013-01-01"]
    # tomorrow's model learns from the days before it: here only 01-01 (the window is clipped at the start)
    assert requested["training_set"] == requested["xgboost_model"] == ["2013-01-02"]
    assert "model_evaluation" not in requested  # evaluation needs 01-02's own rows, not landed yet
    assert auto.tick() == {}  # handled: nothing is requested twice


def test_nothing_is_requested_for_days_that_never_landed(auto):
    auto.stored("planes")
    auto.landed("2013-03-05")
    requested = auto.tick()
    assert requested["flight_features"] == ["2013-03-05"]
    # the profile's trailing window and tomorrow's training window (02-05..03-04) never landed: both wait
    assert "data_profile" not in requested and "training_set" not in requested


def test_a_day_whose_blocking_check_failed_is_not_carried_further(auto):
    auto.stored("planes")
    auto.landed("2013-01-01")
    auto.landed("2013-01-02", failed=("date_matches_partition",))
    assert auto.tick()["flight_features"] == ["2013-01-01"]
    auto.stored("flight_features", "2013-01-01")
    auto.stored("flight_features", "2013-01-02", failed=("schema",))  # stored, but refused by its check
    requested = auto.tick()
    assert "data_profile" not in requested
    assert "2013-01-03" not in requested.get("training_set", [])  # its window holds the refused day


def test_training_waits_for_its_whole_window_and_never_runs_for_the_first_day(auto):
    for day in ("2013-01-01", "2013-01-02", "2013-01-04"):
        auto.stored("flight_features", day)
    requested = auto.tick()
    # 01-02 and 01-03 have complete windows (the window is clipped at the first day; 01-01 has none at all)
    assert requested["training_set"] == ["2013-01-02", "2013-01-03"]
    assert requested["xgboost_model"] == requested["torch_model"] == ["2013-01-02", "2013-01-03"]
    # evaluation needs the day itself: 01-02 has landed, 01-03 has not
    assert requested["model_evaluation"] == ["2013-01-02"]
    auto.stored("flight_features", "2013-01-03")  # the hole is filled: the waiting days go
    later = auto.tick()["training_set"]
    assert "2013-01-04" in later and "2013-01-05" in later and "2013-01-01" not in later


def test_the_champion_follows_new_bundles_and_history_is_not_repredicted(auto):
    for day in ("2013-01-04", "2013-01-05"):
        auto.stored("flight_features", day)
    auto.tick()
    auto.stored("deployment_bundle", "2013-01-05", failed=("promotion",))  # a refused candidate still counts
    requested = auto.tick()
    assert requested["champion"] == ["-"]
    auto.stored("champion")
    assert "batch_predictions" not in auto.tick()  # a new champion does not rewrite past predictions


def test_a_range_run_stopped_by_one_bad_day_leaves_the_good_days_to_automation(defs, landed):
    """Real single-run materialization of 01-01..01-03 where 01-02's flights carry another date."""
    import polars as pl

    from ml_assets.core import landing
    from ml_assets.core.storage import write_parquet
    from ml_assets.definitions import build_resources

    path = landing.latest_file(landed, "flights", "2013-01-02")
    write_parquet(path.parent / "v0002.parquet", landing.read_landed(path).with_columns(day=pl.lit(9, dtype=pl.Int64)))
    resources = build_resources(str(landed), "local")
    job = dg.Definitions(assets=build_definitions(str(landed), "local").assets, resources=resources
                         ).resolve_implicit_global_asset_job_def()
    with dg.instance_for_test() as instance:
        automation = Automation(defs, instance)
        automation.tick()
        job.get_subset(asset_selection={dg.AssetKey("planes")}).execute_in_process(instance=instance)
        result = job.get_subset(asset_selection={dg.AssetKey(k) for k in (
            "raw_flights", "raw_weather", "flight_features")}).execute_in_process(
            instance=instance, raise_on_error=False,
            tags={"dagster/asset_partition_range_start": "2013-01-01",
                  "dagster/asset_partition_range_end": "2013-01-03"})
        assert not result.success  # raw_flights' blocking check stopped the range's features
        bad = {(e.partition, e.check_name) for e in result.get_asset_check_evaluations() if not e.passed}
        assert bad == {("2013-01-02", "date_matches_partition")}  # judged per day, on its own partition
        assert instance.get_materialized_partitions(dg.AssetKey("raw_flights")) == {
            "2013-01-01", "2013-01-02", "2013-01-03"}
        assert instance.get_materialized_partitions(dg.AssetKey("flight_features")) == set()
        requested = automation.tick()
        assert requested["flight_features"] == ["2013-01-01", "2013-01-03"]
