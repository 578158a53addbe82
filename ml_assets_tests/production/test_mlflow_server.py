"""The MLflow tracking server of the production profile: runs in Postgres, artifacts on S3.

The server is started the documented way (docs/production.md) and written to through the project's own
``MLflowTracking`` resource, configured only with the server's URL (as ``ml_assets.definitions`` configures it
from MLFLOW_TRACKING_URI in production, with the experiment ``ml_assets/<dataset>``).

pytestmark = pytest.mark.cost(11)  # seconds alone (see conftest)
"""
from __future__ import annotations

import polars as pl
import pytest

from ml_assets.resources.tracking import MLflowTracking, TrackingUnavailable
from ml_assets_tests.production.conftest import pg_query
from ml_assets_tests.processes import free_port


@pytest.mark.timeout(150)
def test_runs_go_to_postgres_and_artifacts_to_s3(mlflow_server, mlflow_database, s3):
    import mlflow
    from mlflow.tracking import MlflowClient

    previous_uri = mlflow.get_tracking_uri()
    try:
        tracking = MLflowTracking(tracking_uri=mlflow_server, experiment="ml_assets/flights", ui_url=mlflow_server)
        training = pl.DataFrame({"carrier": ["UA", "AA"], "dep_hour": [6.0, 7.0], "late": [0, 1]})
        run_id, link = tracking.log_run(
            "xgboost_model 2013-01-02", params={"max_depth": 6, "window_days": 28},
            metrics={"auc": 0.64, "log_loss": 0.48}, tags={"partition": "2013-01-02", "dagster_run_id": "abc"},
            artifacts={"model.ubj": b"not really a model", "spec.json": b'{"columns": []}'},
            dataset=(training, "0123456789abcdef", "flights/training_set 2013-01-02"))
        tracking.log_to_run(run_id, metrics={"holdout_auc": 0.63}, artifacts={"report.md": b"# report"})

        client = MlflowClient(mlflow_server)
        run = client.get_run(run_id)
        assert run.data.metrics == {"auc": 0.64, "log_loss": 0.48, "holdout_auc": 0.63}
        assert run.data.params["max_depth"] == "6"
        assert run.data.tags["dagster_run"] == "http://127.0.0.1:3000/runs/abc"  # the link back to Dagster
        assert [(d.dataset.name, d.dataset.digest) for d in run.inputs.dataset_inputs] == [
            ("flights/training_set 2013-01-02", "0123456789abcdef")]
        assert run.info.artifact_uri.startswith(f"s3://{s3.bucket}/mlflow/")
        assert {a.path for a in client.list_artifacts(run_id, "model")} == {"model/model.ubj", "model/spec.json"}
        assert link == f"{mlflow_server}/#/experiments/{run.info.experiment_id}/runs/{run_id}"
    finally:
        mlflow.set_tracking_uri(previous_uri)

    # the bytes are in the bucket, the run is a row in Postgres
    keys = s3.keys("mlflow/")
    assert any(k.endswith(f"{run_id}/artifacts/model/model.ubj") for k in keys), keys
    assert any(k.endswith(f"{run_id}/artifacts/evaluation/report.md") for k in keys), keys
    assert pg_query(mlflow_database, "SELECT status FROM runs WHERE run_uuid = %s", run_id) == [("FINISHED",)]
    assert pg_query(mlflow_database, "SELECT key, value FROM latest_metrics WHERE run_uuid = %s ORDER BY key",
                    run_id) == [("auc", 0.64), ("holdout_auc", 0.63), ("log_loss", 0.48)]
    assert pg_query(mlflow_database, "SELECT name FROM experiments WHERE name = %s", "ml_assets/flights") == [
        ("ml_assets/flights",)]


def test_a_server_that_is_down_is_one_line_naming_it():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(TrackingUnavailable, match=f"MLflow tracking at {url} is unreachable"):
        MLflowTracking(tracking_uri=url, experiment="ml_assets/flights").log_run("x", {}, {}, {})
