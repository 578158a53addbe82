"""Sensors: start each landed day's run, carry it downstream, and turn failures into alerts.

``landing_sensor``      every 30 s: a day whose flights AND weather have both landed gets exactly one run of
                        raw_flights, raw_weather, flight_features and data_profile for that partition
                        (``run_key=landing-<day>``); half-landed days are reported and left for a later tick.
                        A fresh (or reset) cursor starts from the days the instance already stores.
``automation``          every 30 s: evaluates the automation conditions (``conditions.py``) of all assets and
                        checks; several days of one asset requested together become one backfill.
``run_failure_alert``   any failed run in this code location -> one alert, except a run whose only failure is a
                        refused promotion: that is the system working, reported once, as ``info``, below.
``check_failure_alert`` every failed asset check evaluation of every finished run -> one alert
                        (severity error for blocking/ERROR checks, warning for WARN checks, info for a
                        decision check such as ``deployment_bundle:promotion``: kind ``promotion_refused``).
Alerts go to ``<root>/alerts/alerts.jsonl`` and to ``$ML_ASSETS_ALERT_WEBHOOK`` (see ``ml_assets.core.alerts``).
"""

import datetime as dt
import json
from collections.abc import Iterable

import dagster as dg

from ml_assets.core import alerts
from ml_assets.core.dates import parse_day
from ml_assets.core.landing import landed_days
from ml_assets.defs.partitions import daily_partitions
from ml_assets.resources.storage import StorageRoot

DAY_ASSETS = [dg.AssetKey(k) for k in ("raw_flights", "raw_weather", "flight_features", "data_profile")]
PLANES = dg.AssetKey("planes")
MAX_REQUESTS_PER_TICK = 31  # a big landing (e.g. a year at once) is started a month per tick, oldest first
RUN_KEY_PREFIX = "landing-"
# Blocking checks whose failure is a decision (keep the champion), not breakage. They stop the run like any
# blocking check, so the champion is not moved, but they must not page anyone.
DECISION_CHECKS = {dg.AssetCheckKey(dg.AssetKey("deployment_bundle"), "promotion")}
SENSOR_TAG = "ml_assets/trigger"


# ---------------------------------------------------------------------------------------------- landing


def _load_cursor(raw: str | None) -> dict:
    if not raw:
        return {"requested": [], "planes_requested_with": None}
    data = json.loads(raw)
    return {"requested": list(data.get("requested", [])),
            "planes_requested_with": data.get("planes_requested_with")}


def _dump_cursor(requested: Iterable[str], planes_requested_with: str | None) -> str:
    return json.dumps({"requested": sorted(set(requested)), "planes_requested_with": planes_requested_with},
                      separators=(",", ":"))


def plan_landing(flights: Iterable[str], weather: Iterable[str], requested: Iterable[str],
                 partition_keys: Iterable[str]) -> tuple[list[str], dict[str, str]]:
    """Pure decision: (days ready to start, oldest first; {day: why it is not started}) for days not yet
    requested. Days already requested are not mentioned again."""
    flights, weather, done, valid = set(flights), set(weather), set(requested), set(partition_keys)
    ready, skipped = [], {}
    for day in sorted((flights | weather) - done):
        if day not in valid:
            skipped[day] = f"outside the partitions ({min(valid)}..{max(valid)}), ignored"
        elif day in flights and day in weather:
            ready.append(day)
        elif day in flights:
            skipped[day] = "flights landed, weather not yet"
        else:
            skipped[day] = "weather landed, flights not yet"
    return ready, skipped


@dg.sensor(
    name="landing_sensor",
    asset_selection=[*DAY_ASSETS, PLANES],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts one run per landed day (flights and weather both present) of raw_flights, raw_weather, "
                "flight_features and data_profile; planes is added to the first run while it has never been "
                "materialized. Cursor: the days already requested.",
)
def landing_sensor(context: dg.SensorEvaluationContext, storage: StorageRoot):
    root = storage.path()
    state = _load_cursor(context.cursor)
    requested = set(state["requested"])
    if context.cursor is None:
        # A new or reset sensor on an instance that already holds days (after `ml-assets demo` or a backfill):
        # days whose raw assets are stored are not started again.
        requested |= stored_days(context.instance)
    planes_with = state["planes_requested_with"]
    flights = [d.isoformat() for d in landed_days(root, "flights")]
    weather = [d.isoformat() for d in landed_days(root, "weather")]
    ready, skipped = plan_landing(flights, weather, requested, daily_partitions.get_partition_keys())

    # flight_features reads the stored planes table: while planes has never been materialized, only the
    # first day's run carries it and the other days wait for it (never two runs racing to create it).
    if ready and context.instance.get_latest_materialization_event(PLANES) is None:
        if planes_with is None or planes_with == ready[0]:
            planes_with = ready[0]
            first, waiting = [ready[0]], ready[1:]
        else:
            first, waiting = [], ready
        for day in waiting:
            skipped[day] = f"ready, waiting for planes (requested with the {planes_with} run)"
        ready, with_planes = first, set(first)
    else:
        with_planes = set()

    if len(ready) > MAX_REQUESTS_PER_TICK:
        for day in ready[MAX_REQUESTS_PER_TICK:]:
            skipped[day] = f"ready, deferred to the next tick (at most {MAX_REQUESTS_PER_TICK} runs per tick)"
        ready = ready[:MAX_REQUESTS_PER_TICK]

    run_requests = [
        dg.RunRequest(
            run_key=f"{RUN_KEY_PREFIX}{day}",
            partition_key=day,
            asset_selection=[*DAY_ASSETS, *([PLANES] if day in with_planes else [])],
            tags={SENSOR_TAG: "landing_sensor"},
        )
        for day in ready
    ]
    for day, why in skipped.items():
        context.log.info(f"{day}: {why}")
    if run_requests:
        context.log.info(f"requesting {len(run_requests)} run(s): {', '.join(ready)}"
                         + (f" (with planes: {planes_with})" if with_planes else ""))
    cursor = _dump_cursor(requested | set(ready), planes_with)
    if run_requests:
        return dg.SensorResult(run_requests=run_requests, cursor=cursor)
    reason = "; ".join(f"{day}: {why}" for day, why in skipped.items()) or (
        f"no new day landed ({len(requested)} day(s) already requested)")
    return dg.SensorResult(skip_reason=dg.SkipReason(reason), cursor=cursor)


# ----------------------------------------------------------------------------------------------- alerts


def _deliver(context, storage: StorageRoot, alert: alerts.Alert) -> alerts.Delivery:
    try:
        root = storage.path()
    except Exception as exc:  # a broken storage config must not hide the alert: still post it
        context.log.warning(f"alert file unavailable: {exc}")
        root = None
    out = alerts.deliver(alert, root)
    (context.log.warning if alert.severity == "error" else context.log.info)(f"ALERT {alert.subject}")
    for error in out.errors:
        context.log.warning(f"alert delivery failed: {error}")
    return out


def _root_cause(err) -> str:
    """The innermost error's message: the user's exception, not Dagster's step-execution wrapper."""
    while err is not None and getattr(err, "cause", None) is not None:
        err = err.cause
    return (err.message if err is not None else "").strip()


def run_failure_to_alert(context: dg.RunFailureSensorContext) -> alerts.Alert:
    run = context.dagster_run
    steps = []
    for event in context.get_step_failure_events():
        err = event.step_failure_data.error if event.step_failure_data else None
        steps.append({"step": event.step_key,
                      "error": alerts.truncate(_root_cause(err) or event.message or "", 500)})
    message = context.failure_event.message or f"run {run.run_id} failed"
    if steps:
        message = f"{message} First failure in {steps[0]['step']}: {steps[0]['error']}"
    return alerts.Alert(
        kind="run_failure", severity="error", message=alerts.truncate(message),
        run_id=run.run_id, job=run.job_name, partition=run.tags.get("dagster/partition"),
        asset=", ".join(sorted(k.to_user_string() for k in (run.asset_selection or []))) or None,
        details={"failed_steps": steps, "tags": {k: v for k, v in run.tags.items() if not k.startswith(".")}},
    )


def only_decisions_failed(instance: dg.DagsterInstance, run_id: str, step_failures) -> bool:
    """True when every failed step failed only because a decision check (a refused promotion) said no."""
    if not step_failures or any(
            getattr(getattr(e.step_failure_data, "error", None), "cls_name", None) != "DagsterAssetCheckFailedError"
            for e in step_failures):
        return False
    evaluations = [record.event_log_entry.dagster_event.event_specific_data
                   for record in instance.get_records_for_run(
                       run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records]
    blocking = {e.asset_check_key for e in evaluations
                if not e.passed and e.blocking and e.severity == dg.AssetCheckSeverity.ERROR}
    return bool(blocking) and blocking <= DECISION_CHECKS


@dg.run_failure_sensor(
    name="run_failure_alert",
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Every failed run (all jobs of this code location) -> an alert line in alerts/alerts.jsonl "
                "and a POST to $ML_ASSETS_ALERT_WEBHOOK when set.",
)
def run_failure_alert(context: dg.RunFailureSensorContext, storage: StorageRoot):
    if only_decisions_failed(context.instance, context.dagster_run.run_id, context.get_step_failure_events()):
        context.log.info(f"run {context.dagster_run.run_id}: promotion refused, the champion stays "
                         "(reported by check_failure_alert as info)")
        return
    _deliver(context, storage, run_failure_to_alert(context))


FINISHED = (dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_CANCELED)
RUNS_PER_TICK = 50


def check_evaluation_to_alert(evaluation: dg.AssetCheckEvaluation, run_id: str, job: str | None,
                              partition: str | None, timestamp: float | None) -> alerts.Alert:
    meta = {k: getattr(v, "value", v) for k, v in (evaluation.metadata or {}).items()}
    severity = "error" if evaluation.severity == dg.AssetCheckSeverity.ERROR else "warning"
    kind = "check_failure"
    first = meta.get("first_failure")
    violations = meta.get("violations")
    message = evaluation.description or first or "check failed"
    if evaluation.description and first:
        message = f"{evaluation.description}: {first}"
    if evaluation.asset_check_key in DECISION_CHECKS:
        severity, kind = "info", "promotion_refused"
        message = (f"{meta.get('candidate', 'the candidate')} not promoted, {meta.get('champion', 'the champion')} "
                   f"stays: {meta.get('reason', message)}")
    if isinstance(violations, int):
        message = f"{message} ({violations} violation(s))"
    when = (dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).isoformat(timespec="seconds")
            .replace("+00:00", "Z") if timestamp else alerts.utc_now())
    return alerts.Alert(
        kind=kind, severity=severity, message=alerts.truncate(message),
        run_id=run_id, job=job, asset=evaluation.asset_key.to_user_string(), check=evaluation.check_name,
        partition=evaluation.partition or partition, time=when,
        details={"blocking": bool(evaluation.blocking),
                 **{k: (alerts.truncate(v, 1000) if isinstance(v, str) else v) for k, v in meta.items()
                    if isinstance(v, (str, int, float, bool)) or v is None}},
    )


def _latest_finish_id(instance: dg.DagsterInstance) -> int:
    latest = -1
    for event_type in FINISHED:
        result = instance.fetch_run_status_changes(event_type, limit=1, ascending=False)
        if result.records:
            latest = max(latest, result.records[0].storage_id)
    return latest


def _finished_runs_after(instance: dg.DagsterInstance, after: int, limit: int) -> list:
    """Run-finished records (success, failure, canceled) with storage id > ``after``, oldest first; when a
    type has more than ``limit`` pending, stop at its last fetched id so nothing is skipped."""
    records, bound = [], None
    for event_type in FINISHED:
        result = instance.fetch_run_status_changes(
            dg.RunStatusChangeRecordsFilter(event_type=event_type, after_storage_id=after),
            limit=limit, ascending=True)
        records.extend(result.records)
        if result.has_more and result.records:
            last = result.records[-1].storage_id
            bound = last if bound is None else min(bound, last)
    records.sort(key=lambda r: r.storage_id)
    if bound is not None:
        records = [r for r in records if r.storage_id <= bound]
    return records


@dg.sensor(
    name="check_failure_alert",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every failed asset check evaluation of every finished run -> an alert (error for ERROR "
                "severity, warning for WARN). Cursor: the storage id of the last finished-run event read.",
)
def check_failure_alert(context: dg.SensorEvaluationContext, storage: StorageRoot):
    # Reads run-finished events (mirrored into the index shard on SQLite, so storage ids are comparable across
    # runs) and then each run's own ASSET_CHECK_EVALUATION events. A cross-run query of check evaluations
    # with an integer storage-id cursor is refused by the default run-sharded SQLite event log.
    instance = context.instance
    if context.cursor is None:
        start = _latest_finish_id(instance)
        return dg.SensorResult(
            skip_reason=dg.SkipReason(f"first tick: watching runs that finish after event {start}"),
            cursor=json.dumps({"after": start}))
    after = int(json.loads(context.cursor)["after"])
    finished = _finished_runs_after(instance, after, RUNS_PER_TICK)
    if not finished:
        return dg.SensorResult(skip_reason=dg.SkipReason("no run finished since the last tick"),
                               cursor=context.cursor)
    sent = 0
    for record in finished:
        run_id = record.event_log_entry.run_id
        run = instance.get_run_by_id(run_id)
        job = run.job_name if run else None
        partition = run.tags.get("dagster/partition") if run else None
        checks = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
        for check_record in checks:
            evaluation = check_record.event_log_entry.dagster_event.event_specific_data
            if evaluation.passed:
                continue
            _deliver(context, storage, check_evaluation_to_alert(
                evaluation, run_id, job, partition, check_record.event_log_entry.timestamp))
            sent += 1
    cursor = json.dumps({"after": finished[-1].storage_id})
    summary = f"{len(finished)} finished run(s) read, {sent} failed check(s) alerted"
    context.log.info(summary)
    if not sent:
        return dg.SensorResult(skip_reason=dg.SkipReason(summary), cursor=cursor)
    return dg.SensorResult(cursor=cursor)


automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation",
    target=dg.AssetSelection.all() | dg.AssetSelection.all_asset_checks(),
    default_status=dg.DefaultSensorStatus.RUNNING,  # Dagster's default automation sensor starts stopped
    minimum_interval_seconds=30,
    run_tags={SENSOR_TAG: "automation"},
    description="Evaluates every asset's and check's automation condition (ml_assets/defs/automation/"
                "conditions.py) and requests what is due; several days of one asset at once become a backfill.",
)

SENSORS = [landing_sensor, automation_sensor, run_failure_alert, check_failure_alert]


def stored_days(instance: dg.DagsterInstance) -> set[str]:
    """Days whose raw flights and weather are both stored in the instance."""
    return (instance.get_materialized_partitions(dg.AssetKey("raw_flights"))
            & instance.get_materialized_partitions(dg.AssetKey("raw_weather")))


def requested_days(cursor: str | None) -> list[str]:
    """The days a landing_sensor cursor has already started (for tests and the CLI)."""
    return [parse_day(d).isoformat() for d in _load_cursor(cursor)["requested"]]
