"""daily_backstop: once a day, request what the sensors and automation should have started but did not.

Sensors and automation react to events; events can be missed (the daemon was down, a run crashed before its
step). Every morning (06:30 UTC, after the outcomes' delivery) this schedule reports the deliveries the landing
sensor has not reported, and requests, one run per day (oldest first, at most 31 days), the asset-days that are
missing while every parent day they read exists (``ml_assets.core.catchup.plan_missing``). Days with a queued or
running run are left alone.
"""

import dagster as dg

from ml_assets.core import catchup
from ml_assets.defs.automation.sensors import SENSOR_TAG, landing_events, unreported_deliveries
from ml_assets.defs.blueprint import LANDING, Blueprint
from ml_assets.resources.storage import StorageRoot

ACTIVE = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
          dg.DagsterRunStatus.STARTED]


def active_days(instance: dg.DagsterInstance, keys: list[str]) -> set[str]:
    days = set()
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=ACTIVE)):
        tags = run.tags
        if tags.get("dagster/partition"):
            days.add(tags["dagster/partition"])
        start, end = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
        if start and end:
            days |= {k for k in keys if start <= k <= end}
    return days


def plan(context_instance: dg.DagsterInstance, graph, bp: Blueprint) -> catchup.Plan:
    keys = bp.partitions.get_partition_keys()
    order = [k for k in graph.toposorted_asset_keys if graph.get(k).is_materializable and graph.get(k).is_partitioned]
    names = [k.to_user_string() for k in order]
    materialized = {(k.to_user_string(), d) for k in graph.get_all_asset_keys() if graph.has(k)
                    for d in (context_instance.get_materialized_partitions(k) if graph.get(k).is_partitioned else
                              ({None} if context_instance.get_latest_materialization_event(k) else set()))}

    def parents(asset: str, day: str):
        result = graph.get_parents_partitions(dg.AssetKey.from_user_string(asset), day)
        return [(p.asset_key.to_user_string(), p.partition_key) for p in result.parent_partitions]

    landed = sorted({d for (a, d) in materialized if d and dg.AssetKey.from_user_string(a) in
                     {bp.landing(s) for s in bp.spec.sources}})
    return catchup.plan_missing(landed, names, parents, materialized, active_days(context_instance, keys))


def build(bp: Blueprint) -> list:
    @dg.schedule(name=f"{bp.spec.name}_daily_backstop", cron_schedule="30 6 * * *", execution_timezone="UTC",
                 target=dg.AssetSelection.all() - dg.AssetSelection.groups(LANDING),
                 default_status=dg.DefaultScheduleStatus.RUNNING,
                 description="Every morning: report deliveries the landing sensor missed, and request the asset-days "
                             "that are missing while every day they read exists. One run per day, at most 31 days.")
    def daily_backstop(context: dg.ScheduleEvaluationContext, storage: StorageRoot):
        missed = unreported_deliveries(bp, context.instance, storage.path())
        for event in landing_events(bp, missed):
            context.instance.report_runless_asset_event(event)
        result = plan(context.instance, context.repository_def.asset_graph, bp)
        for day, why in result.skipped.items():
            context.log.info(f"{day}: {why}")
        tick = context.scheduled_execution_time.strftime("%Y-%m-%d") if context.scheduled_execution_time else "now"
        requests = [dg.RunRequest(run_key=f"backstop-{tick}-{r.day}", partition_key=r.day,
                                  asset_selection=[dg.AssetKey.from_user_string(a) for a in r.assets],
                                  tags={SENSOR_TAG: "daily_backstop"}) for r in result.requests]
        if not requests:
            return dg.SkipReason(f"nothing missed ({len(missed)} missed delivery(ies) reported)")
        return requests

    return [daily_backstop]
