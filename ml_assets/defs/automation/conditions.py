"""Declarative automation in one place: when each asset materializes, and how fresh it must be.

Who starts what:
    raw_flights, raw_weather      the landing sensor (a landed file is the trigger; there is no upstream asset)
    planes                        the landing sensor with the first day; ``on_missing`` if it ever goes missing
    everything else daily         ``day_eager``: when an upstream day updates, for ANY day (see below)
    champion                      after any deployment_bundle day updates
    champion_freshness (check)    ``freshness.py``: when the champion is rebuilt, and every six hours
    missed work                   the daily backstop schedule (``schedules.py``)

Why not ``AutomationCondition.eager()``: it contains ``in_latest_time_window()``. Our partitions are the
static days of 2013 and the clock says 2026, so the latest window is 2013-12-31 and eager would only ever
consider that one day. ``day_eager`` is eager without that restriction, and stays cheap and safe because:
  - it fires only when something upstream changed (or a day that existed goes missing), never for the
    hundreds of days that simply have no data: raw days exist only once the landing sensor started them,
    and ``~any_deps_missing`` makes every downstream day wait for its upstream days;
  - ``training_set`` (and so the models) waits for its whole window: its upstream is the window
    D-W..D-1 of flight_features (clipped at 2013-01-01), so one missing day in it means wait. 2013-01-01 has
    an empty window (no upstream partition at all) and is therefore never requested;
  - no upstream day may have failed a blocking check (the checks are per day: ``partitions.daily_check_spec``),
    so a refused day is not carried further. Not Dagster's ``all_deps_blocking_checks_passed``: over a window
    partition mapping its "all deps" means "for each parent asset, SOME day of the window" passed, so a
    refused day inside a training window would slip through; "no day failed" is what a window needs;
  - the update trigger counts parent updates even from a run that also targeted this asset (Dagster's
    ``any_deps_updated`` ignores those). If that run stopped before reaching this asset (a failed step, or
    a range run stopped by one bad day's blocking check) the remaining days are picked up on the next tick,
    once; if it did reach it, the asset's own later update marks the trigger handled, so nothing runs twice.

Freshness policies are wall-clock (Dagster's ``FreshnessPolicy.time_window``, evaluated by the daemon and
shown in the UI): the data layer is rebuilt at least daily while the feed delivers, the bundle and champion
at most a day behind that. They cannot see data days: ``freshness.champion_freshness`` compares partition dates.
"""
from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterable

import dagster as dg

AC = dg.AutomationCondition

LANDING_STARTED = {"raw_flights", "raw_weather"}  # no condition: the landing sensor starts them
DAY_EAGER = {"flight_features", "data_profile", "training_set", "xgboost_model", "torch_model",
             "model_evaluation", "onnx_model", "deployment_bundle", "batch_predictions", "live_performance"}
# Updates of these parents do not re-run history: a new planes file feeds the days processed after it (a
# backfill rebuilds the past on purpose); a new champion serves the days after it (batch_predictions reads
# the champion in effect the evening before each day, so a past day's prediction does not change).
IGNORED_UPDATES = {"flight_features": ("planes",), "batch_predictions": ("champion",)}

DAY = dt.timedelta(hours=24)
GRACE = dt.timedelta(hours=6)  # a late delivery, a slow run
DATA_FRESHNESS = dg.FreshnessPolicy.time_window(warn_window=DAY, fail_window=DAY + GRACE)
SERVING_FRESHNESS = dg.FreshnessPolicy.time_window(warn_window=DAY + GRACE, fail_window=2 * DAY + GRACE)
FRESHNESS = {
    "raw_flights": DATA_FRESHNESS, "raw_weather": DATA_FRESHNESS,
    "flight_features": DATA_FRESHNESS, "data_profile": DATA_FRESHNESS,
    "deployment_bundle": SERVING_FRESHNESS, "champion": SERVING_FRESHNESS,
}


def deps_updated(ignore: Iterable[str] = ()) -> AC:
    """A parent partition updated since the previous tick, or will be requested on this one."""
    trigger = AC.any_deps_match(AC.newly_updated() | AC.will_be_requested())
    ignore = tuple(ignore)
    if ignore:
        trigger = trigger.ignore(dg.AssetSelection.assets(*ignore))
    return trigger.with_label("any_deps_updated" + (f" (ignoring {', '.join(ignore)})" if ignore else ""))


def no_dep_refused() -> AC:
    """No parent partition (every day of a window) has a failed blocking check on its current version."""
    return (~AC.any_deps_match(AC.any_checks_match(AC.check_failed(), blocking_only=True))
            ).with_label("no upstream day refused by a blocking check")


def day_eager(ignore: Iterable[str] = ()) -> AC:
    """Eager for every day, not only the latest time window (see the module docstring)."""
    return (
        (AC.newly_missing() | deps_updated(ignore)).since_last_handled()
        & ~AC.any_deps_missing()
        & ~AC.any_deps_in_progress()
        & ~AC.in_progress()
        & no_dep_refused()
    ).with_label("eager, any day")


def after_any_update() -> AC:
    """For an unpartitioned asset over daily parents (the champion over deployment_bundle).

    No ``any_deps_missing``: its parent is every day, and most days never get a bundle. No blocking-check
    gate either: the champion applies only the promotions that passed, so a refused one makes it a no-op.
    """
    return (deps_updated().since_last_handled() & ~AC.any_deps_in_progress() & ~AC.in_progress()
            ).with_label("after any parent day updates")


def champion_settled() -> AC:
    """The champion is not being rebuilt right now, so "the champion as of yesterday" is final."""
    return (~AC.asset_matches("champion", AC.will_be_requested() | AC.in_progress())
            ).with_label("champion not being rebuilt")


def condition_for(name: str, present: set[str]) -> AC | None:
    if name == "planes":
        return AC.on_missing()
    if name == "champion":
        return after_any_update()
    if name in DAY_EAGER:
        condition = day_eager(IGNORED_UPDATES.get(name, ()))
        if name == "batch_predictions" and "champion" in present:
            condition = (condition & champion_settled()).with_label("eager, any day, champion settled")
        return condition
    return None


def apply_automation(assets: list) -> list:
    """The assets with their automation conditions and freshness policies, plus the automation checks."""
    from ml_assets.defs.automation.freshness import champion_freshness

    present = {key.to_user_string() for a in assets if isinstance(a, dg.AssetsDefinition) for key in a.keys}

    def with_policies(spec: dg.AssetSpec) -> dg.AssetSpec:
        name = spec.key.to_user_string()
        condition = condition_for(name, present)
        return spec.replace_attributes(
            automation_condition=condition if condition is not None else spec.automation_condition,
            freshness_policy=FRESHNESS.get(name, spec.freshness_policy))

    out = [a.map_asset_specs(with_policies) if isinstance(a, dg.AssetsDefinition) and a.keys else a for a in assets]
    if {"champion", "deployment_bundle"} <= present:
        out.append(champion_freshness)
    return out


def automated(build: Callable[..., list]) -> Callable[..., list]:
    """Decorate the function that lists the assets: its result gets ``apply_automation``."""
    @functools.wraps(build)
    def wrapper(*args, **kwargs) -> list:
        return apply_automation(build(*args, **kwargs))
    return wrapper
