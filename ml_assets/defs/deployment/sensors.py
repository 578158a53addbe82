"""retrain_on_degradation: live quality or feature drift crossed its threshold -> retrain the models now.

Watches failed evaluations of ``live_performance.live_auc_drop`` and ``data_profile.feature_drift``. A new
failure recorded after the latest training requests one run of the model layer (training set through
champion) for the newest day whose features exist, tagged with the reason, so the retrain, its evaluation and
the promotion decision are visible together in the UI. Failures that precede the latest training are
already answered by it (automation retrains daily), so they start nothing. ``run_key`` makes each failure
start at most one run.
"""

import json

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

WATCHED = [dg.AssetCheckKey(dg.AssetKey("live_performance"), "live_auc_drop"),
           dg.AssetCheckKey(dg.AssetKey("data_profile"), "feature_drift")]
RETRAIN_ASSETS = ["training_set", "xgboost_model", "torch_model", "model_evaluation", "onnx_model",
                  "deployment_bundle", "champion"]
REASON_TAG = "ml_assets/retrain_reason"


def _new_failures(instance: dg.DagsterInstance, after: int) -> list:
    failures = []
    for key in WATCHED:
        records = instance.event_log_storage.get_asset_check_execution_history(
            key, limit=100, status={AssetCheckExecutionRecordStatus.FAILED})
        failures += [r for r in records if r.id > after]
    return sorted(failures, key=lambda r: r.id)


def _newest_features_day(instance: dg.DagsterInstance) -> str | None:
    days = instance.get_materialized_partitions(dg.AssetKey("flight_features"))
    return max(days) if days else None


@dg.sensor(
    asset_selection=dg.AssetSelection.assets(*RETRAIN_ASSETS), minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A failed live_auc_drop or feature_drift check requests a retrain of the model layer for the "
                "newest day with features (one run per failure, tagged with why).",
)
def retrain_on_degradation(context: dg.SensorEvaluationContext):
    state = json.loads(context.cursor) if context.cursor else {"after": 0}
    failures = _new_failures(context.instance, state["after"])
    if not failures:
        return dg.SkipReason("no new live-AUC or drift failures")
    day = _newest_features_day(context.instance)
    context.update_cursor(json.dumps({"after": failures[-1].id}))
    if day is None:
        return dg.SkipReason("failures seen but no flight_features to train on yet")
    trained = context.instance.get_latest_materialization_event(dg.AssetKey("training_set"))
    # A failure seen before the newest training is already answered by it: retraining would repeat it.
    failures = [f for f in failures if trained is None or f.create_timestamp > trained.timestamp]
    if not failures:
        return dg.SkipReason("every new failure predates the latest training: nothing new to retrain on")
    requests = []
    for failure in failures:
        run = context.instance.get_run_by_id(failure.run_id)
        partition = failure.partition or (run.tags.get("dagster/partition") if run else None)
        reason = f"{failure.key.asset_key.to_user_string()}.{failure.key.name} failed on {partition}"
        requests.append(dg.RunRequest(run_key=f"retrain-{failure.id}", partition_key=day,
                                      tags={REASON_TAG: reason}))
    # Several failures at once need one retrain of the newest day, not one each.
    return requests[-1:]
