"""champion_freshness: the champion decision is at most one data day behind the newest landed day.

The wall-clock freshness policies (``conditions.FRESHNESS``) say "this asset was rebuilt within the last day or
so", which is what a live daily feed needs and what the UI shows. They cannot say whether the newest *data*
reached production: this replay lands 2013 days, and a rebuild can be fresh in hours while a day is stuck.
This check compares partition dates instead: the newest day whose flights and weather have both landed
(the landing zone) against the newest ``deployment_bundle`` day that the ``champion`` decision has
considered (the champion's ``applied_through`` cursor: every bundle materialization up to it was judged,
promoted or not). A candidate that lost to the champion still counts as considered: the champion stays,
re-confirmed on newer data, and is not stale.

It fails (severity ERROR, not blocking: a stale champion must still serve predictions) and shows in the UI
and in the alerts; it runs whenever the champion is rebuilt and every six hours (days can land while the
pipeline is stuck, and only the clock notices that).
"""

import dagster as dg

from ml_assets.core.dates import parse_day
from ml_assets.core.freshness import MAX_LAG_DAYS, assess, newest_complete_day
from ml_assets.core.landing import landed_days
from ml_assets.resources.storage import StorageRoot

CHAMPION = dg.AssetKey("champion")
BUNDLE = dg.AssetKey("deployment_bundle")
# The champion's metadata: the storage id of the newest deployment_bundle materialization it has applied
# (ml_assets.defs.deployment.champion.CURSOR) and the data day of the serving champion.
APPLIED_THROUGH = "applied_through"
CHAMPION_DAY = "data_day"
CHECK_CRON = "0 */6 * * *"


def _meta(metadata, key: str):
    entry = metadata.get(key)
    return None if entry is None else entry.value


def considered_through(instance: dg.DagsterInstance) -> tuple[str | None, dict]:
    """(newest bundle day the champion decision has considered, what the champion says about itself)."""
    records = instance.fetch_materializations(CHAMPION, limit=1).records
    if not records:
        return None, {"champion": "never materialized"}
    record = records[0]
    metadata = record.asset_materialization.metadata
    cursor = _meta(metadata, APPLIED_THROUGH)
    # Without its cursor, the bundles stored before the champion's own materialization are what it saw.
    bound = int(cursor) if cursor else record.storage_id
    days = instance.get_materialized_partitions(BUNDLE, before_cursor=bound + 1)
    return (max(days) if days else None), {
        "champion": str(_meta(metadata, "champion") or "?"),
        "champion_data_day": str(_meta(metadata, CHAMPION_DAY) or "none"),
        "champion_materialized_run": record.run_id,
    }


def evaluate_champion_freshness(instance: dg.DagsterInstance, storage: StorageRoot) -> dg.AssetCheckResult:
    root = storage.path()
    newest = newest_complete_day(landed_days(root, "flights"), landed_days(root, "weather"))
    through, about = considered_through(instance)
    bundles = instance.get_materialized_partitions(BUNDLE)
    newest_bundle = max(bundles) if bundles else None
    verdict = assess(newest, parse_day(through) if through else None)
    bundle_lag = (newest - parse_day(newest_bundle)).days if newest and newest_bundle else None
    return dg.AssetCheckResult(
        passed=verdict.passed, severity=dg.AssetCheckSeverity.ERROR, description=verdict.reason,
        metadata={
            "newest_landed_day": str(newest or "none"),
            "considered_through": through or "none",
            "lag_days": verdict.lag_days if verdict.lag_days is not None else -1,
            "max_lag_days": MAX_LAG_DAYS,
            "newest_bundle_day": newest_bundle or "none",
            "bundle_lag_days": bundle_lag if bundle_lag is not None else -1,
            **about,
        })


@dg.asset_check(
    asset=CHAMPION, name="champion_freshness", blocking=False,
    automation_condition=(
        (dg.AutomationCondition.cron_tick_passed(CHECK_CRON) | dg.AutomationCondition.any_deps_updated())
        .since_last_handled() & ~dg.AutomationCondition.in_progress()
    ).with_label(f"champion rebuilt, or cron {CHECK_CRON}"),
    description=f"The champion decision has considered data at most {MAX_LAG_DAYS} day behind the newest landed "
                f"day (partition dates, not wall clock). Metadata: newest landed day, newest bundle day, lags.",
)
def champion_freshness(context: dg.AssetCheckExecutionContext, storage: StorageRoot) -> dg.AssetCheckResult:
    return evaluate_champion_freshness(context.instance, storage)
