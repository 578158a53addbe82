"""daily_backstop: once a day, request what the landing sensor and automation should have started but did not.

Sensors and automation react to events; events can be missed (the daemon was down, a run crashed before its
step, automation gave a failed step its one retry). Every morning (06:00 UTC) this schedule compares the landing
zone with the instance and requests, one run per day, oldest first, at most 31 days:
  - landed days whose newest delivery (flights and weather both landed) was never stored by the raw assets,
    or was re-delivered since (``ml-assets land --force``): the day's whole data layer;
  - days whose data layer is incomplete: the missing assets, unless a blocking check refused the current
    delivery (a retry would fail the same way; it is reported and waits for a corrected file);
  - the newest landed day's model chain (training_set .. deployment_bundle) where it is missing, once its data
    layer is complete (the champion then follows through automation).
Days with a queued or running run are left alone. The decisions are ``ml_assets.core.catchup.plan_backstop``.
"""
from __future__ import annotations

import warnings

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from ml_assets.core import catchup
from ml_assets.core.landing import complete_days, latest_file
from ml_assets.defs.partitions import daily_partitions
from ml_assets.resources.storage import StorageRoot

DAY_ASSETS = ["raw_flights", "raw_weather", "flight_features", "data_profile"]
MODEL_CHAIN = ["training_set", "xgboost_model", "torch_model", "model_evaluation", "onnx_model", "deployment_bundle"]
RAW = {"flights": "raw_flights", "weather": "raw_weather"}
BACKSTOP_TAG = "ml_assets/trigger"
# The schedule targets every asset so that its requests may select any of them; each request carries its own
# selection and one day, so the job-wide backfill policy Dagster warns about is never used.
warnings.filterwarnings("ignore", message="Asset job __anonymous_asset_job_daily_backstop materializes assets "
                                          "with varying BackfillPolicies")
ACTIVE = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
          dg.DagsterRunStatus.STARTED]


def _stored_landing_files(instance: dg.DagsterInstance, asset: str) -> dict[str, str]:
    """partition -> the landing file its newest materialization stored."""
    out, cursor = {}, None
    while True:
        page = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset)),
                                               limit=1000, cursor=cursor)
        for record in page.records:  # newest first
            entry = record.asset_materialization.metadata.get("landing_file")
            if record.partition_key and record.partition_key not in out and entry is not None:
                out[record.partition_key] = entry.value
        if not page.has_more:
            return out
        cursor = page.cursor


def _refused(instance: dg.DagsterInstance, keys: list[dg.AssetCheckKey]) -> dict[str, list[str]]:
    """partition -> the given (blocking) checks that failed on the partition's current materialization."""
    out: dict[str, list[str]] = {}
    for info in instance.event_log_storage.get_asset_check_partition_info(keys):
        if info.partition_key and info.is_current and \
                info.latest_execution_status == AssetCheckExecutionRecordStatus.FAILED:
            out.setdefault(info.partition_key, []).append(info.check_key.to_user_string())
    return out


def _active_days(instance: dg.DagsterInstance) -> set[str]:
    days = set()
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=ACTIVE)):
        if run.tags.get("dagster/partition"):
            days.add(run.tags["dagster/partition"])
        start, end = run.tags.get("dagster/asset_partition_range_start"), run.tags.get(
            "dagster/asset_partition_range_end")
        if start and end:
            days |= {k for k in daily_partitions.get_partition_keys() if start <= k <= end}
    return days


def gather_day_states(instance: dg.DagsterInstance, root, asset_graph) -> list[catchup.DayState]:
    present = {k.to_user_string() for k in asset_graph.get_all_asset_keys()}
    valid = set(daily_partitions.get_partition_keys())
    days = sorted({d.isoformat() for d in complete_days(root)} & valid)
    stored = {source: _stored_landing_files(instance, asset) for source, asset in RAW.items()}
    materialized = {a: instance.get_materialized_partitions(dg.AssetKey(a))
                    for a in DAY_ASSETS + MODEL_CHAIN if a in present}
    raw_blocking = [k for k in asset_graph.asset_check_keys
                    if k.asset_key.to_user_string() in RAW.values() and asset_graph.get(k).blocking]
    refused = _refused(instance, raw_blocking)
    active = _active_days(instance)
    return [catchup.DayState(
        day=day,
        landed={source: str(latest_file(root, source, day)) for source in RAW},
        read={source: stored[source].get(day) for source in RAW},
        materialized=frozenset(a for a, parts in materialized.items() if day in parts),
        blocked_by=tuple(refused.get(day, ())),
        in_progress=day in active,
    ) for day in days]


@dg.schedule(
    name="daily_backstop", cron_schedule="0 6 * * *", execution_timezone="UTC",
    target=dg.AssetSelection.all(), default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every morning: landed days the pipeline missed (never stored, re-delivered, or incomplete "
                "without a refused delivery) get their data layer, and the newest landed day its model chain "
                "through deployment_bundle. One run per day, oldest first, at most 31 days.",
)
def daily_backstop(context: dg.ScheduleEvaluationContext, storage: StorageRoot):
    graph = context.repository_def.asset_graph
    present = {k.to_user_string() for k in graph.get_all_asset_keys()}
    states = gather_day_states(context.instance, storage.path(), graph)
    plan = catchup.plan_backstop(states, [a for a in DAY_ASSETS if a in present],
                                 [a for a in MODEL_CHAIN if a in present])
    for day, why in plan.skipped.items():
        context.log.info(f"{day}: {why}")
    tick = context.scheduled_execution_time.strftime("%Y-%m-%d") if context.scheduled_execution_time else "now"
    requests = [dg.RunRequest(run_key=f"backstop-{tick}-{r.day}-{'chain' if 'training_set' in r.assets else 'data'}",
                              partition_key=r.day,
                              asset_selection=[dg.AssetKey(a) for a in r.assets],
                              tags={BACKSTOP_TAG: "daily_backstop", "ml_assets/backstop_reason": r.reason})
                for r in plan.requests]
    if not requests:
        return dg.SkipReason(f"nothing missed across {len(states)} landed day(s)"
                             + (f"; left alone: {len(plan.skipped)}" if plan.skipped else ""))
    context.log.info("requesting " + "; ".join(f"{r.day} ({r.reason})" for r in plan.requests))
    return requests
