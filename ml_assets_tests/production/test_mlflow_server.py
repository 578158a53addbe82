"""The MLflow tracking server of the production profile: runs in Postgres, artifacts on S3.

The server is started the documented way (docs/production.md) and written to through the project's own
``MLflowTracking`` resource, configured only with the server's URL.
"""
from __future__ import annotations

import pytest

from ml_assets.resources.tracking import MLflowTracking
from ml_assets_tests.production.conftest import PG_HOST, PG_PORT, PG_USER


@pytest.mark.timeout(120)
def test_runs_go_to_postgres_and_artifacts_to_s3(mlflow_server, mlflow_database, s3):
    import mlflow
    import psycopg2
    from mlflow.tracking import MlflowClient

    previous_uri = mlflow.get_tracking_uri()
    try:
        tracking = MLflowTracking(tracking_uri=mlflow_server, experiment="ml_assets_production_test",
                                  ui_url=mlflow_server)
        run_id, link = tracking.log_run(
            "xgboost_model 2013-01-02", params={"max_depth": 6, "window_days": 28},
            metrics={"auc": 0.64, "log_loss": 0.48}, tags={"partition": "2013-01-02"},
            artifacts={"model.onnx": b"not really onnx", "features.json": b'{"columns": []}'})
        tracking.log_to_run(run_id, metrics={"holdout_auc": 0.63}, artifacts={"report.md": b"# report"})

        client = MlflowClient(mlflow_server)
        run = client.get_run(run_id)
        assert run.data.metrics == {"auc": 0.64, "log_loss": 0.48, "holdout_auc": 0.63}
        assert run.data.params["max_depth"] == "6"
        assert run.info.artifact_uri.startswith(f"s3://{s3.bucket}/mlflow/")
        assert {a.path for a in client.list_artifacts(run_id, "model")} == {"model/model.onnx",
                                                                            "model/features.json"}
        assert link == f"{mlflow_server}/#/experiments/{run.info.experiment_id}/runs/{run_id}"
    finally:
        mlflow.set_tracking_uri(previous_uri)

    # the bytes are in the bucket, the run is a row in Postgres
    keys = s3.keys("mlflow/")
    assert any(k.endswith(f"{run_id}/artifacts/model/model.onnx") for k in keys), keys
    assert any(k.endswith(f"{run_id}/artifacts/evaluation/report.md") for k in keys), keys
    with psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=mlflow_database,
                          connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute("SELECT status FROM runs WHERE run_uuid = %s", (run_id,))
        assert cur.fetchall() == [("FINISHED",)]
        cur.execute("SELECT key, value FROM latest_metrics WHERE run_uuid = %s ORDER BY key", (run_id,))
        assert cur.fetchall() == [("auc", 0.64), ("holdout_auc", 0.63), ("log_loss", 0.48)]
    conn.close()
