"""retrain_on_degradation over a real (temporary) instance holding a failed live_auc_drop evaluation."""
import dagster as dg

from ml_assets.defs.deployment.sensors import REASON_TAG, retrain_on_degradation
from ml_assets.defs.partitions import daily_partitions


@dg.asset(partitions_def=daily_partitions, name="flight_features")
def fake_features():
    return None


@dg.asset(partitions_def=daily_partitions, name="live_performance",
          check_specs=[dg.AssetCheckSpec("live_auc_drop", asset="live_performance")])
def fake_live():
    yield dg.MaterializeResult()
    yield dg.AssetCheckResult(check_name="live_auc_drop", passed=False, severity=dg.AssetCheckSeverity.WARN)


def _evaluate(instance, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor)
    return retrain_on_degradation(context), context.cursor


def test_a_failed_live_check_requests_one_retrain_of_the_newest_day():
    with dg.instance_for_test() as instance:
        result, cursor = _evaluate(instance)
        assert isinstance(result, dg.SkipReason)
        for day in ("2013-01-04", "2013-01-05"):
            dg.materialize([fake_features], partition_key=day, instance=instance)
        dg.materialize([fake_live], partition_key="2013-01-04", instance=instance)
        requests, cursor = _evaluate(instance, cursor)
        assert len(requests) == 1 and requests[0].partition_key == "2013-01-05"
        assert "live_auc_drop failed on 2013-01-04" in requests[0].tags[REASON_TAG]
        again, _ = _evaluate(instance, cursor)
        assert isinstance(again, dg.SkipReason)  # the same failure never starts a second run


@dg.asset(partitions_def=daily_partitions, name="training_set")
def fake_training_set():
    return None


def test_a_failure_older_than_the_latest_training_starts_nothing():
    with dg.instance_for_test() as instance:
        dg.materialize([fake_features], partition_key="2013-01-05", instance=instance)
        dg.materialize([fake_live], partition_key="2013-01-04", instance=instance)
        dg.materialize([fake_training_set], partition_key="2013-01-05", instance=instance)
        result, _ = _evaluate(instance)
        assert isinstance(result, dg.SkipReason) and "predates the latest training" in result.skip_message
