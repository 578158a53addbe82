"""retrain_on_degradation: a significant live drop or drift asks for a model that can actually differ.

The daily retrain already refreshes the model on new data; repeating it with the same window, parameters and
seed would give the same bytes. So on a new failure of ``live_auc_drop`` (a significant drop of the rolling live
AUC) or ``feature_drift``, the sensor requests one run of the model chain for the newest labelled day with the
next strategy of ``STRATEGIES`` not yet tried in this episode: a window of the most recent half, then a tuned
search (within its budget). The strategy and the reason are run tags and land in the lineage and MLflow (the run
config). When every strategy was tried and the degradation is still there, it raises ONE alert and stops asking
until a passing evaluation ends the episode.
"""

import json

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from ml_assets.core import alerts
from ml_assets.defs.blueprint import Blueprint
from ml_assets.resources.storage import StorageRoot

STRATEGIES = ("recent_window", "tuned")
REASON_TAG = "ml_assets/retrain_reason"
STRATEGY_TAG = "ml_assets/retrain_strategy"


def strategy_config(bp: Blueprint, strategy: str) -> dict:
    ops = {}
    if strategy == "recent_window":
        ops[bp.key("training_set").to_python_identifier()] = {
            "config": {"recent_days": max(bp.validation_days + 2, bp.window_days // 2), "reason": strategy}}
    if strategy == "tuned":
        for family in bp.families:
            ops[bp.candidate(family).to_python_identifier()] = {"config": {"tune_trials": 12, "tune_seconds": 90.0}}
    return {"ops": ops}


def retrain_sensor(bp: Blueprint) -> dg.SensorDefinition:
    watched = [dg.AssetCheckKey(bp.key("live_performance"), "live_auc_drop"),
               dg.AssetCheckKey(bp.key("data_profile"), "feature_drift")]
    chain = [bp.key(n) for n in ("training_set", "model_evaluation", "onnx_model", "deployment_bundle", "champion")]
    chain += [bp.candidate(f) for f in bp.families]

    @dg.sensor(name=f"{bp.spec.name}_retrain_on_degradation", asset_selection=dg.AssetSelection.assets(*chain),
               minimum_interval_seconds=2 * bp.sensor_interval, default_status=dg.DefaultSensorStatus.RUNNING,
               description="A failed live_auc_drop or feature_drift asks for a retrain that can differ (a recent "
                           "window, then a tuned search); when both were tried, one alert instead of a loop.")
    def _retrain(context: dg.SensorEvaluationContext, storage: StorageRoot):
        instance = context.instance
        if context.cursor is None:
            # A new sensor (a fresh daemon, a reset) reacts to evaluations from now on; the failures already in
            # the history were there before it and must not start a retrain all at once.
            newest = max((r.id for key in watched
                          for r in instance.event_log_storage.get_asset_check_execution_history(key, limit=1)),
                         default=0)
            return dg.SensorResult(skip_reason=dg.SkipReason("baseline: watching evaluations from now on"),
                                   cursor=json.dumps({"after": newest, "tried": [], "alerted": False}))
        state = json.loads(context.cursor)
        failures, recovered = [], False
        for key in watched:
            for record in instance.event_log_storage.get_asset_check_execution_history(key, limit=50):
                if record.id <= state["after"]:
                    continue
                if record.status == AssetCheckExecutionRecordStatus.FAILED:
                    failures.append(record)
                elif key == watched[0] and record.status == AssetCheckExecutionRecordStatus.SUCCEEDED:
                    recovered = True
        newest = max([r.id for r in failures] + [state["after"]])
        if recovered and not failures:
            state = {"after": newest, "tried": [], "alerted": False}
            return dg.SensorResult(skip_reason=dg.SkipReason("live AUC back within its range: episode over"),
                                   cursor=json.dumps(state))
        if not failures:
            return dg.SensorResult(skip_reason=dg.SkipReason("no new failure"), cursor=json.dumps(state))
        labelled = instance.get_materialized_partitions(bp.key("labelled_features"))
        day = max(labelled) if labelled else None
        untried = [s for s in STRATEGIES if s not in state["tried"]]
        reason = "; ".join(sorted({f"{f.key.asset_key.to_user_string()}.{f.key.name} failed on {f.partition}"
                                   for f in failures}))[:500]
        if day is None or not untried:
            if not state["alerted"]:
                alerts.deliver(alerts.Alert(kind="retrain_exhausted", severity="error", message=(
                    f"{reason}; retraining with {', '.join(state['tried']) or 'no strategy'} did not help: the "
                    f"model chain needs a person (new features, a new family, or an upstream fix)")), storage.path())
            return dg.SensorResult(skip_reason=dg.SkipReason("every retrain strategy was tried: alerted once"),
                                   cursor=json.dumps({**state, "after": newest, "alerted": True}))
        strategy = untried[0]
        request = dg.RunRequest(run_key=f"retrain-{newest}-{strategy}", partition_key=day,
                                run_config=strategy_config(bp, strategy),
                                tags={REASON_TAG: reason, STRATEGY_TAG: strategy, "ml_assets/trigger": "retrain"})
        return dg.SensorResult(run_requests=[request], cursor=json.dumps(
            {"after": newest, "tried": [*state["tried"], strategy], "alerted": False}))

    return _retrain
