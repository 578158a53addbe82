"""Sensors on a temp landing zone and a test instance: one run per landed day, alerts for failures."""

import datetime as dt
import json
import shutil

import dagster as dg
import pytest

from ml_assets.core import alerts
from ml_assets.core.landing import day_dir, land_days
from ml_assets.defs.automation import SENSORS, check_failure_alert, landing_sensor, run_failure_alert
from ml_assets.defs.automation.sensors import requested_days
from ml_assets.resources.storage import StorageRoot
from ml_assets_tests.core.test_alerts import webhook  # noqa: F401  (fixture: a real local HTTP server)

DAY_ASSETS = {dg.AssetKey(k) for k in ("raw_flights", "raw_weather", "flight_features", "data_profile")}
PLANES = dg.AssetKey("planes")


def day(s: str) -> dt.date:
    return dt.date.fromisoformat(s)


def tick(sensor, instance, root, cursor=None):
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"storage": StorageRoot(root=str(root))})
    return sensor(ctx)


def planes_materialized(instance):
    instance.report_runless_asset_event(dg.AssetMaterialization(PLANES))


def skip_text(result) -> str:
    reason = result.skip_reason
    return reason.skip_message if isinstance(reason, dg.SkipReason) else (reason or "")


def test_new_day_requests_one_run_with_its_partition_then_nothing(root):
    land_days(root, day("2013-01-05"), day("2013-01-05"))
    with dg.instance_for_test() as instance:
        first = tick(landing_sensor, instance, root)
        assert [r.partition_key for r in first.run_requests] == ["2013-01-05"]
        req = first.run_requests[0]
        assert req.run_key == "landing-2013-01-05"
        # planes has never been materialized, so the first run carries it (flight_features reads it)
        assert set(req.asset_selection) == DAY_ASSETS | {PLANES}
        assert requested_days(first.cursor) == ["2013-01-05"]

        again = tick(landing_sensor, instance, root, first.cursor)
        assert not again.run_requests
        assert "no new day landed" in skip_text(again)
        assert again.cursor == first.cursor


def test_a_fresh_cursor_does_not_restart_days_the_instance_already_stores(root):
    """A new or reset sensor (after `ml-assets demo`, a backfill, a daemon move) starts from the instance."""
    land_days(root, day("2013-01-02"), day("2013-01-03"))
    with dg.instance_for_test() as instance:
        planes_materialized(instance)
        for asset in ("raw_flights", "raw_weather"):
            instance.report_runless_asset_event(dg.AssetMaterialization(asset, partition="2013-01-02"))
        first = tick(landing_sensor, instance, root)
        assert [r.partition_key for r in first.run_requests] == ["2013-01-03"]
        assert requested_days(first.cursor) == ["2013-01-02", "2013-01-03"]


def test_half_landed_day_is_skipped_with_the_reason_until_the_rest_lands(root):
    land_days(root, day("2013-01-06"), day("2013-01-07"))
    shutil.rmtree(day_dir(root, "weather", "2013-01-07"))
    with dg.instance_for_test() as instance:
        planes_materialized(instance)
        first = tick(landing_sensor, instance, root)
        assert [r.partition_key for r in first.run_requests] == ["2013-01-06"]
        assert set(first.run_requests[0].asset_selection) == DAY_ASSETS  # planes already stored

        partial = tick(landing_sensor, instance, root, first.cursor)
        assert not partial.run_requests
        assert "2013-01-07: flights landed, weather not yet" in skip_text(partial)
        assert requested_days(partial.cursor) == ["2013-01-06"]

        land_days(root, day("2013-01-07"), day("2013-01-07"))  # the weather arrives
        complete = tick(landing_sensor, instance, root, partial.cursor)
        assert [r.run_key for r in complete.run_requests] == ["landing-2013-01-07"]
        assert requested_days(complete.cursor) == ["2013-01-06", "2013-01-07"]


def test_weather_without_flights_and_days_outside_the_partitions_are_reported(root):
    land_days(root, day("2013-01-08"), day("2013-01-08"))
    shutil.rmtree(day_dir(root, "flights", "2013-01-08"))
    stray = root / "landing" / "flights" / "date=2014-01-01"
    shutil.copytree(day_dir(root, "weather", "2013-01-08"), stray)  # any landed version file will do
    with dg.instance_for_test() as instance:
        result = tick(landing_sensor, instance, root)
        assert not result.run_requests
        text = skip_text(result)
        assert "2013-01-08: weather landed, flights not yet" in text
        assert "2014-01-01: outside the partitions (2013-01-01..2013-12-31)" in text


def test_until_planes_is_stored_only_one_run_carries_it(root):
    land_days(root, day("2013-01-01"), day("2013-01-03"))
    with dg.instance_for_test() as instance:
        first = tick(landing_sensor, instance, root)
        assert [r.partition_key for r in first.run_requests] == ["2013-01-01"]
        assert PLANES in first.run_requests[0].asset_selection
        waiting = tick(landing_sensor, instance, root, first.cursor)
        assert not waiting.run_requests
        assert "2013-01-02: ready, waiting for planes (requested with the 2013-01-01 run)" in skip_text(waiting)
        planes_materialized(instance)
        rest = tick(landing_sensor, instance, root, waiting.cursor)
        assert [r.partition_key for r in rest.run_requests] == ["2013-01-02", "2013-01-03"]
        assert all(PLANES not in r.asset_selection for r in rest.run_requests)


def test_sensor_runs_resolve_against_the_real_definitions(root):
    """Through evaluate_tick with the project's assets: the requested selection is a valid target."""
    from ml_assets.definitions import build_assets, build_resources
    land_days(root, day("2013-01-02"), day("2013-01-02"))
    defs = dg.Definitions(assets=build_assets(), resources=build_resources(str(root), "local"), sensors=SENSORS)
    dg.Definitions.validate_loadable(defs)
    with dg.instance_for_test() as instance:
        ctx = dg.build_sensor_context(instance=instance, definitions=defs,
                                      resources={"storage": StorageRoot(root=str(root))})
        data = landing_sensor.evaluate_tick(ctx)
        assert [r.partition_key for r in data.run_requests] == ["2013-01-02"]
        assert json.loads(data.cursor)["requested"] == ["2013-01-02"]
        result = dg.materialize(build_assets(), partition_key="2013-01-02", instance=instance,
                                resources=build_resources(str(root), "local"),
                                selection=list(data.run_requests[0].asset_selection))
        assert result.success


# ------------------------------------------------------------------------------------------------ alerts

@dg.op
def explode():
    raise ValueError("the landing zone is on fire")


@dg.job
def doomed():
    explode()


def test_run_failure_alert_writes_a_line_and_posts_it(root, webhook, monkeypatch):  # noqa: F811
    monkeypatch.setenv(alerts.WEBHOOK_ENV, webhook.url)
    with dg.instance_for_test() as instance:
        result = doomed.execute_in_process(instance=instance, raise_on_error=False,
                                           tags={"dagster/partition": "2013-01-05"})
        assert not result.success
        ctx = dg.build_run_status_sensor_context(
            sensor_name="run_failure_alert", dagster_event=result.get_run_failure_event(),
            dagster_instance=instance, dagster_run=result.dagster_run,
            resources={"storage": StorageRoot(root=str(root))},
        ).for_run_failure()
        run_failure_alert(ctx)
    lines = alerts.read_alerts(root)
    assert len(lines) == 1
    line = lines[0]
    assert line["kind"] == "run_failure" and line["severity"] == "error"
    assert line["run_id"] == result.run_id and line["job"] == "doomed" and line["partition"] == "2013-01-05"
    assert "the landing zone is on fire" in line["message"]
    assert line["details"]["failed_steps"][0]["step"] == "explode"
    assert webhook.received == lines


@dg.asset(check_specs=[dg.AssetCheckSpec("positive", asset="thing"),
                       dg.AssetCheckSpec("present", asset="thing", blocking=True)])
def thing(context: dg.AssetExecutionContext):
    fail = context.run.tags.get("fail") == "yes"
    yield dg.Output(1)
    yield dg.AssetCheckResult(check_name="positive", passed=not fail, severity=dg.AssetCheckSeverity.WARN,
                              metadata={"violations": 3 if fail else 0, "first_failure": "x < 0 in 3 rows"})
    yield dg.AssetCheckResult(check_name="present", passed=True)


def test_check_failure_alert_reports_each_failed_check_once(root, webhook, monkeypatch):  # noqa: F811
    monkeypatch.setenv(alerts.WEBHOOK_ENV, webhook.url)
    with dg.instance_for_test() as instance:
        dg.materialize([thing], instance=instance, tags={"fail": "yes"})  # before the sensor: history, ignored
        first = tick(check_failure_alert, instance, root)
        assert "first tick" in skip_text(first)

        ok = dg.materialize([thing], instance=instance)
        bad = dg.materialize([thing], instance=instance, tags={"fail": "yes"})
        second = tick(check_failure_alert, instance, root, first.cursor)
        assert second.skip_reason is None
        lines = alerts.read_alerts(root)
        assert len(lines) == 1
        line = lines[0]
        assert (line["kind"], line["asset"], line["check"], line["severity"]) == (
            "check_failure", "thing", "positive", "warning")
        assert line["run_id"] == bad.run_id != ok.run_id
        assert "x < 0 in 3 rows" in line["message"] and "(3 violation(s))" in line["message"]
        assert line["time"].endswith("Z")
        assert webhook.received == lines

        third = tick(check_failure_alert, instance, root, second.cursor)
        assert "no run finished" in skip_text(third)
        assert len(alerts.read_alerts(root)) == 1


def test_a_failed_blocking_check_on_real_data_is_alerted_as_an_error(root):
    """A landed day whose rows belong to another date fails raw_flights' blocking check."""
    import polars as pl

    from ml_assets.core import landing
    from ml_assets.core.storage import write_parquet
    from ml_assets.definitions import DATA_ASSETS, build_resources
    land_days(root, day("2013-01-02"), day("2013-01-02"))
    path = landing.latest_file(root, "flights", "2013-01-02")
    frame = landing.read_landed(path).with_columns(day=pl.lit(3, dtype=pl.Int64))
    write_parquet(path.parent / "v0002.parquet", frame)
    with dg.instance_for_test() as instance:
        first = tick(check_failure_alert, instance, root)
        result = dg.materialize(DATA_ASSETS, partition_key="2013-01-02", instance=instance,
                                resources=build_resources(str(root), "local"),
                                selection=["raw_flights"], raise_on_error=False)
        assert not result.success
        tick(check_failure_alert, instance, root, first.cursor)
    by_check = {(x["asset"], x["check"]): x for x in alerts.read_alerts(root)}
    line = by_check[("raw_flights", "date_matches_partition")]
    assert line["severity"] == "error" and line["partition"] == "2013-01-02"
    assert line["details"]["blocking"] is True and line["details"]["violations"] >= 1


@pytest.mark.parametrize("sensor", SENSORS, ids=lambda s: s.name)
def test_sensors_are_on_by_default(sensor):
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


@dg.asset(name="deployment_bundle",
          check_specs=[dg.AssetCheckSpec("promotion", asset="deployment_bundle", blocking=True)])
def refused_bundle():
    yield dg.Output(1)
    yield dg.AssetCheckResult(check_name="promotion", passed=False, metadata={
        "candidate": "flight_delay_xgboost 1.2.0", "champion": "flight_delay_mlp 1.1.0",
        "reason": "overall AUC 0.61 trails the champion's 0.64 by more than 0.01"})


def test_a_refused_promotion_is_one_info_notice_not_a_run_failure_alert(root):
    with dg.instance_for_test() as instance:
        first = tick(check_failure_alert, instance, root)
        result = dg.materialize([refused_bundle], instance=instance, raise_on_error=False)
        assert not result.success  # the blocking check stops the run: the champion is not moved
        ctx = dg.build_run_status_sensor_context(
            sensor_name="run_failure_alert", dagster_event=result.get_run_failure_event(),
            dagster_instance=instance, dagster_run=result.dagster_run,
            resources={"storage": StorageRoot(root=str(root))}).for_run_failure()
        run_failure_alert(ctx)
        assert alerts.read_alerts(root) == []
        tick(check_failure_alert, instance, root, first.cursor)
    (line,) = alerts.read_alerts(root)
    assert (line["kind"], line["severity"], line["asset"], line["check"]) == (
        "promotion_refused", "info", "deployment_bundle", "promotion")
    assert line["message"] == ("flight_delay_xgboost 1.2.0 not promoted, flight_delay_mlp 1.1.0 stays: "
                               "overall AUC 0.61 trails the champion's 0.64 by more than 0.01")


@dg.asset
def broken():
    raise RuntimeError("disk full")


def test_a_run_that_also_broke_is_not_mistaken_for_a_refusal(root):
    from ml_assets.defs.automation.sensors import only_decisions_failed

    with dg.instance_for_test() as instance:
        result = dg.materialize([refused_bundle, broken], instance=instance, raise_on_error=False)
        failures = [e for e in result.all_events if e.is_step_failure]
        assert len(failures) == 2
        assert not only_decisions_failed(instance, result.run_id, failures)
        assert only_decisions_failed(instance, result.run_id, [f for f in failures if f.step_key != "broken"])
