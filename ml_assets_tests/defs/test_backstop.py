"""daily_backstop over a temp landing zone and a test instance."""
import datetime as dt

import dagster as dg

from ml_assets.core.landing import land_days, latest_file
from ml_assets.definitions import build_definitions
from ml_assets.defs.automation.schedules import daily_backstop
from ml_assets.resources.storage import StorageRoot
from ml_assets_tests.defs.test_automation_conditions import Automation

D = dt.date.fromisoformat


def test_missed_days_are_requested_refused_ones_reported(root):
    land_days(root, D("2013-01-01"), D("2013-01-03"))
    defs = build_definitions(str(root), "local")
    with dg.instance_for_test() as instance:
        auto = Automation(defs, instance)
        for source, asset in (("flights", "raw_flights"), ("weather", "raw_weather")):
            for day in ("2013-01-01", "2013-01-03"):
                failed = ("schema",) if day == "2013-01-03" and source == "flights" else ()
                auto.stored(asset, day, failed, landing_file=str(latest_file(root, source, day)))
        auto.stored("flight_features", "2013-01-01")
        auto.stored("data_profile", "2013-01-01")
        context = dg.build_schedule_context(instance=instance, resources={"storage": StorageRoot(root=str(root))},
                                            repository_def=defs.get_repository_def(),
                                            scheduled_execution_time=dt.datetime(2026, 6, 1, 6))
        data = daily_backstop.evaluate_tick(context)
        assert [(r.partition_key, sorted(k.to_user_string() for k in r.asset_selection)) for r in data.run_requests] \
            == [("2013-01-02", ["data_profile", "flight_features", "raw_flights", "raw_weather"])]
        request = data.run_requests[0]
        assert request.tags["ml_assets/backstop_reason"] == "landed, never processed"
        assert request.run_key == "backstop-2026-06-01-2013-01-02-data"
        # 01-03's flights were refused by a blocking check: waiting for a corrected file, not retried
        assert daily_backstop.default_status == dg.DefaultScheduleStatus.RUNNING
