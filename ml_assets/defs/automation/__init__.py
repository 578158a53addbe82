"""Automation: the landing sensor, declarative automation (conditions, freshness), the daily backstop,
and the failure alert sensors."""
from ml_assets.defs.automation.conditions import apply_automation, automated
from ml_assets.defs.automation.schedules import daily_backstop
from ml_assets.defs.automation.sensors import (
    SENSORS,
    automation_sensor,
    check_failure_alert,
    landing_sensor,
    run_failure_alert,
)

SCHEDULES = [daily_backstop]

__all__ = ["SCHEDULES", "SENSORS", "apply_automation", "automated", "automation_sensor", "check_failure_alert", "daily_backstop",
           "landing_sensor", "run_failure_alert"]
