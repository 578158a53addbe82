"""Automation: the landing sensor that starts each landed day, and the failure alert sensors."""
from ml_assets.defs.automation.sensors import SENSORS, check_failure_alert, landing_sensor, run_failure_alert

__all__ = ["SENSORS", "check_failure_alert", "landing_sensor", "run_failure_alert"]
