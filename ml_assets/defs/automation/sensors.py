"""Sensors: report each delivered landing file, run automation, retrain on degradation, turn failures into alerts.

``landing_sensor``      every 30 s: each newly landed file version of a source and day (and each reference table
                        version) is reported as a materialization of its landing asset, with the file's content
                        hash as data version; automation then carries the day on. An identical re-delivery
                        reports the same data version, so nothing downstream reruns.
``automation``          every 30 s: evaluates every asset's automation condition (``conditions.py``); several
                        days of one asset requested together become one backfill (a range run).
``retrain_on_degradation`` a significant live AUC drop or feature drift asks for a model that can differ: a
                        shorter window, then a tuned one; when neither helps, one clear alert and no loop.
``run_failure_alert``   any failed run of this code location -> one alert.
``check_failure_alert`` a check that starts failing -> one alert: error for a refusing check, warning for a warning
                        check, info for a refused promotion (the system working). A check that failed on the
                        day before too is the same episode, already alerted: its day shows the failure in the
                        UI and the log, but nobody is paged again every day until it recovers.
Alerts go to ``<root>/alerts/`` and to ``$ML_ASSETS_ALERT_WEBHOOK`` (see ``ml_assets.core.alerts``).
"""

import datetime as dt
import json
from collections.abc import Callable

import dagster as dg

from ml_assets.core import alerts
from ml_assets.core import landing as L
from ml_assets.core.dates import parse_day
from ml_assets.core.versioning import bytes_hash
from ml_assets.defs.blueprint import Blueprint
from ml_assets.defs.days import DATA_VERSION_TAG
from ml_assets.ops import check_history
from ml_assets.resources.storage import StorageRoot

SENSOR_TAG = "ml_assets/trigger"
MAX_REPORTS_PER_TICK = 400
FINISHED = (dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_CANCELED)
RUNS_PER_TICK = 50


# ---------------------------------------------------------------------------------------------- landing


def new_deliveries(bp: Blueprint, root, reported: dict[str, str]) -> list[tuple[str, str | None, L.UPath]]:
    """(source, day or None for a reference table, newest file) not yet reported, oldest day first."""
    spec = bp.spec
    out = []
    for name in spec.reference:
        found = L.versions(L.reference_dir(root, name))
        if found and reported.get(name) != found[-1].name:
            out.append((name, None, found[-1]))
    for source in spec.sources:
        for day in L.landed_days(root, spec, source):
            latest = L.latest_file(root, spec, source, day)
            if reported.get(f"{source}/{day}") != latest.name:
                out.append((source, day.isoformat(), latest))
    return sorted(out, key=lambda t: (t[1] or "", t[0]))


def reported_deliveries(instance: dg.DagsterInstance, bp: Blueprint) -> dict[str, str]:
    """What the landing assets' materializations say was delivered: source/day -> file name."""
    out = {}
    for source in [*bp.spec.sources, *bp.spec.reference]:
        for record in instance.fetch_materializations(bp.landing(source), limit=10_000, ascending=True).records:
            entry = record.asset_materialization.metadata.get("file")
            if entry is not None:
                day = record.partition_key
                out[f"{source}/{day}" if day else source] = str(entry.value).rsplit("/", 1)[-1]
    return out


def unreported_deliveries(bp: Blueprint, instance: dg.DagsterInstance, root) -> list[tuple[str, str | None, L.UPath]]:
    """The deliveries whose newest file no landing materialization of the instance reports yet."""
    return new_deliveries(bp, root, reported_deliveries(instance, bp))


def landing_events(bp: Blueprint, deliveries) -> list[dg.AssetMaterialization]:
    events = []
    for source, day, path in deliveries:
        data = path.read_bytes()
        events.append(dg.AssetMaterialization(
            asset_key=bp.landing(source), partition=day, description=f"delivered {path.name}",
            metadata={"file": str(path), "bytes": len(data)}, tags={DATA_VERSION_TAG: bytes_hash(data)[:16]}))
    return events


def landing_sensor(bp: Blueprint) -> dg.SensorDefinition:
    @dg.sensor(name=f"{bp.spec.name}_landing_sensor", minimum_interval_seconds=bp.sensor_interval,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Reports every newly delivered landing file (each source and day, each reference "
                           "version) as a materialization of its landing asset; automation carries the day on.")
    def _landing(context: dg.SensorEvaluationContext, storage: StorageRoot):
        # A first tick (a new daemon, a reset sensor) starts from what the instance already records as
        # delivered, not from nothing: otherwise every landed file would be reported again.
        reported = json.loads(context.cursor) if context.cursor else reported_deliveries(context.instance, bp)
        due = new_deliveries(bp, storage.path(), reported)
        batch = due[:MAX_REPORTS_PER_TICK]
        for source, day, path in batch:
            reported[f"{source}/{day}" if day else source] = path.name
        cursor = json.dumps(reported, sort_keys=True, separators=(",", ":"))
        if not batch:
            return dg.SensorResult(skip_reason=dg.SkipReason("no new delivery"), cursor=cursor)
        context.log.info(f"reporting {len(batch)} delivery(ies), {len(due) - len(batch)} left for the next tick")
        return dg.SensorResult(asset_events=landing_events(bp, batch), cursor=cursor)

    return _landing


# ---------------------------------------------------------------------------------------------- alerts


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
        steps.append({"step": event.step_key, "error": alerts.truncate(_root_cause(err) or event.message or "", 500)})
    message = context.failure_event.message or f"run {run.run_id} failed"
    if steps:
        message = f"{message} First failure in {steps[0]['step']}: {steps[0]['error']}"
    return alerts.Alert(kind="run_failure", severity="error", message=alerts.truncate(message), run_id=run.run_id,
                        job=run.job_name, partition=run.tags.get("dagster/partition"),
                        asset=", ".join(sorted(k.to_user_string() for k in (run.asset_selection or []))) or None,
                        details={"failed_steps": steps,
                                 "tags": {k: v for k, v in run.tags.items() if not k.startswith(".")}})


def check_evaluation_to_alert(evaluation: dg.AssetCheckEvaluation, decision_checks: set, run_id: str,
                              job: str | None, timestamp: float | None) -> alerts.Alert:
    meta = {k: getattr(v, "value", v) for k, v in (evaluation.metadata or {}).items()}
    severity = "error" if evaluation.severity == dg.AssetCheckSeverity.ERROR else "warning"
    kind = "check_failure"
    message = evaluation.description or meta.get("first_failure") or "check failed"
    if evaluation.asset_check_key in decision_checks:
        severity, kind = "info", "promotion_refused"
        message = str(meta.get("reason", message))
    if isinstance(meta.get("violations"), int):
        message = f"{message} ({meta['violations']} violation(s))"
    when = (dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
            if timestamp else alerts.utc_now())
    return alerts.Alert(kind=kind, severity=severity, message=alerts.truncate(message), run_id=run_id, job=job,
                        asset=evaluation.asset_key.to_user_string(), check=evaluation.check_name,
                        partition=evaluation.partition, time=when,
                        details={"blocking": bool(evaluation.blocking),
                                 **{k: (alerts.truncate(v, 1000) if isinstance(v, str) else v) for k, v in meta.items()
                                    if isinstance(v, (str, int, float, bool)) or v is None}})


def continues_episode(evaluation: dg.AssetCheckEvaluation,
                      failed_on: Callable[[dg.AssetCheckKey, str], bool]) -> bool:
    """Whether this failure only continues one already alerted: the same check failed on the previous day."""
    if not evaluation.partition:
        return False
    before = (parse_day(evaluation.partition) - dt.timedelta(days=1)).isoformat()
    return failed_on(evaluation.asset_check_key, before)


def _latest_finish_id(instance: dg.DagsterInstance) -> int:
    latest = -1
    for event_type in FINISHED:
        result = instance.fetch_run_status_changes(event_type, limit=1, ascending=False)
        if result.records:
            latest = max(latest, result.records[0].storage_id)
    return latest


def finished_runs_after(instance: dg.DagsterInstance, after: int, limit: int) -> list:
    """Run-finished records with storage id > ``after``, oldest first; when a type has more than ``limit``
    pending, stop at its last fetched id so nothing is skipped."""
    records, bound = [], None
    for event_type in FINISHED:
        result = instance.fetch_run_status_changes(
            dg.RunStatusChangeRecordsFilter(event_type=event_type, after_storage_id=after), limit=limit, ascending=True)
        records.extend(result.records)
        if result.has_more and result.records:
            bound = result.records[-1].storage_id if bound is None else min(bound, result.records[-1].storage_id)
    records.sort(key=lambda r: r.storage_id)
    return [r for r in records if bound is None or r.storage_id <= bound]


def _run_check_alerts(instance: dg.DagsterInstance, run_id: str, decision_checks: set, failed_on):
    """An alert for each failed check evaluation of the run that opens an episode; None for one that continues."""
    run = instance.get_run_by_id(run_id)
    for check in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records:
        evaluation = check.event_log_entry.dagster_event.event_specific_data
        if evaluation.passed:
            continue
        yield None if continues_episode(evaluation, failed_on) else check_evaluation_to_alert(
            evaluation, decision_checks, run_id, run.job_name if run else None, check.event_log_entry.timestamp)


def alert_sensors(bp: Blueprint) -> list:
    decision_checks = {dg.AssetCheckKey(bp.key("champion"), "promotion")}

    @dg.run_failure_sensor(name=f"{bp.spec.name}_run_failure_alert", default_status=dg.DefaultSensorStatus.RUNNING,
                           minimum_interval_seconds=bp.sensor_interval,
                           description="Every failed run -> an alert in alerts/ and a POST to $ML_ASSETS_ALERT_WEBHOOK.")
    def run_failure_alert(context: dg.RunFailureSensorContext, storage: StorageRoot):
        _deliver(context, storage, run_failure_to_alert(context))

    @dg.sensor(name=f"{bp.spec.name}_check_failure_alert", minimum_interval_seconds=bp.sensor_interval,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="A check that starts failing -> one alert (error: refusing checks, warning: warning "
                           "checks, info: a refused promotion); the days after, while it keeps failing, are the "
                           "same episode and page nobody again.")
    def check_failure_alert(context: dg.SensorEvaluationContext, storage: StorageRoot):
        # Reads run-finished events, then each run's own ASSET_CHECK_EVALUATION events: a cross-run query of check
        # evaluations with an integer storage-id cursor is refused by the default run-sharded SQLite event log.
        instance = context.instance
        if context.cursor is None:
            start = _latest_finish_id(instance)
            return dg.SensorResult(skip_reason=dg.SkipReason(f"first tick: watching runs finishing after {start}"),
                                   cursor=json.dumps({"after": start}))
        finished = finished_runs_after(instance, int(json.loads(context.cursor)["after"]), RUNS_PER_TICK)
        if not finished:
            return dg.SensorResult(skip_reason=dg.SkipReason("no run finished since the last tick"),
                                   cursor=context.cursor)
        sent, continuing = 0, 0
        failed_on = check_history.failed_on(instance)
        for record in finished:
            for alert in _run_check_alerts(instance, record.event_log_entry.run_id, decision_checks, failed_on):
                if alert is None:
                    continuing += 1
                else:
                    _deliver(context, storage, alert)
                    sent += 1
        cursor = json.dumps({"after": finished[-1].storage_id})
        summary = (f"{len(finished)} finished run(s) read, {sent} failed check(s) alerted, {continuing} continuing an "
                   "episode already alerted")
        return dg.SensorResult(cursor=cursor) if sent else dg.SensorResult(skip_reason=dg.SkipReason(summary),
                                                                            cursor=cursor)

    return [run_failure_alert, check_failure_alert]


def automation_sensor(bp: Blueprint) -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        f"{bp.spec.name}_automation", target=dg.AssetSelection.groups("data", "models", "deployment", "monitoring"),
        default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=bp.sensor_interval,
        run_tags={SENSOR_TAG: "automation"},
        description="Evaluates the automation conditions (ml_assets/defs/automation/conditions.py) of the data, "
                    "models, deployment and monitoring groups and requests what is due.")


def build(bp: Blueprint) -> list:
    from ml_assets.defs.automation.retrain import retrain_sensor

    return [landing_sensor(bp), automation_sensor(bp), retrain_sensor(bp), *alert_sensors(bp)]
