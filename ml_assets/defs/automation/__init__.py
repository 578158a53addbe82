"""Automation: the landing sensor (reports each delivered file), declarative automation (conditions and freshness
policies), the daily backstop, the retrain sensor and the alert sensors, all derived from the blueprint."""

from ml_assets.defs.blueprint import Blueprint


def build(bp: Blueprint, assets: list) -> tuple[list, list, list]:
    """(assets with their automation conditions, sensors, schedules)."""
    from ml_assets.defs.automation import conditions, schedules, sensors

    return conditions.apply(bp, assets), sensors.build(bp), schedules.build(bp)
