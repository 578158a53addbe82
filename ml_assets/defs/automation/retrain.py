"""retrain_on_degradation: a significant live drop or drift asks for a model that can actually differ.

The daily retrain already refreshes the model on new data; repeating it with the same window, parameters and
seed would give the same bytes. So on a new failure of ``live_auc_drop`` (a significant drop of the rolling live
AUC) or ``feature_drift``, the sensor requests one run of the model chain for the newest labelled day with the
next strategy not yet tried in this episode (``core.retrain``): a window of the most recent half, then a tuned
search (within its budget). The strategy and the reason are run tags and land in the lineage and MLflow (the run
config). When every strategy was tried and the degradation is still there, it raises ONE alert and stops asking
until a passing evaluation ends the episode.
"""

import json

import dagster as dg

from ml_assets.core import alerts
from ml_assets.core import retrain as R
from ml_assets.defs.blueprint import Blueprint
from ml_assets.ops import check_history
from ml_assets.resources.storage import StorageRoot

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
            newest = check_history.newest_id(instance, watched)
            return dg.SensorResult(skip_reason=dg.SkipReason("baseline: watching evaluations from now on"),
                                   cursor=json.dumps(R.Episode(newest).as_dict()))
        episode = R.Episode.from_dict(json.loads(context.cursor))
        failures, recovered = check_history.evaluations_after(instance, watched, episode.after, watched[0])
        labelled = instance.get_materialized_partitions(bp.key("labelled_features"))
        step = R.next_step(episode, [f.id for f in failures], recovered, bool(labelled))
        cursor = json.dumps(step.episode.as_dict())
        reason = "; ".join(sorted({f"{f.key.asset_key.to_user_string()}.{f.key.name} failed on {f.partition}"
                                   for f in failures}))[:500]
        if step.alert:
            alerts.deliver(alerts.Alert(kind="retrain_exhausted", severity="error", message=(
                f"{reason}; retraining with {', '.join(episode.tried) or 'no strategy'} did not help: the "
                f"model chain needs a person (new features, a new family, or an upstream fix)")), storage.path())
        if step.strategy is None:
            return dg.SensorResult(skip_reason=dg.SkipReason(step.skip_reason), cursor=cursor)
        request = dg.RunRequest(run_key=f"retrain-{step.episode.after}-{step.strategy}", partition_key=max(labelled),
                                run_config=strategy_config(bp, step.strategy),
                                tags={REASON_TAG: reason, STRATEGY_TAG: step.strategy, "ml_assets/trigger": "retrain"})
        return dg.SensorResult(run_requests=[request], cursor=cursor)

    return _retrain
