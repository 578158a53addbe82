"""Declarative automation in one place: when each asset materializes, and how fresh it must be.

Every daily asset below the landing zone is *eager for any day* and *data-version aware*:

- it runs for a day when a parent day's data version changed (or will be requested on this tick), when its own
  code version changed, or while the day is missing with every parent present (not after its run failed: a
  failing day waits for a change instead of looping). "Missing", not "newly missing": automation's first
  evaluation resets every trigger, and a day that was already missing then (e.g. the feed's first day of a model,
  which has no parent day at all) must still be made;
- never while a parent day is missing or in progress, nor while the day itself is in progress.

Why not ``AutomationCondition.eager()``: it contains ``in_latest_time_window()``. Our partitions are the static
days of the feed and the clock says 2026, so the latest window is the feed's last day and eager would only ever
consider that one. Why data versions: a re-delivered identical file, or a model retrained to the same bytes,
changes nothing downstream, so nothing reruns; a changed day reruns exactly the days whose inputs changed (the
training windows that contain it, and their chains).

Refusals need no gate here: a refused day is stored as refused (``defs.days``), its consumers store a refusal in
turn, and nothing downstream waits for it.
"""

import datetime as dt

import dagster as dg

from ml_assets.defs.blueprint import LANDING, Blueprint

AC = dg.AutomationCondition
DAY = dt.timedelta(hours=24)
GRACE = dt.timedelta(hours=6)  # a late delivery, a slow run
DATA_FRESHNESS = dg.FreshnessPolicy.time_window(warn_window=DAY, fail_window=DAY + GRACE)
SERVING_FRESHNESS = dg.FreshnessPolicy.time_window(warn_window=DAY + GRACE, fail_window=2 * DAY + GRACE)


def updated() -> AC:
    """A parent's data version changed since the previous tick, or the parent will be requested on this one."""
    return AC.any_deps_match(AC.data_version_changed() | AC.will_be_requested()).with_label(
        "a parent's data version changed")


def missing_not_failed() -> AC:
    """Missing, and not because its latest run failed: a failing day waits for a change instead of looping."""
    return (AC.missing() & ~AC.execution_failed()).with_label("missing (latest run did not fail)")


def day_eager() -> AC:
    return ((missing_not_failed() | updated() | AC.code_version_changed()).since_last_handled()
            & ~AC.any_deps_missing() & ~AC.any_deps_in_progress() & ~AC.in_progress()
            ).with_label("eager for any day, on data-version changes")


def apply(bp: Blueprint, assets: list) -> list:
    freshness = {bp.key("features"): DATA_FRESHNESS, bp.key("champion"): SERVING_FRESHNESS,
                 **{bp.raw(s): DATA_FRESHNESS for s in bp.spec.schedule_sources}}

    def with_policies(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.group_name == LANDING:
            return spec
        return spec.replace_attributes(automation_condition=day_eager(),
                                       freshness_policy=freshness.get(spec.key, spec.freshness_policy))

    return [a.map_asset_specs(with_policies) if isinstance(a, dg.AssetsDefinition) else a for a in assets]
