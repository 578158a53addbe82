"""MLflowTracking on fresh local SQLite stores: runs, their Dagster links, the training dataset, errors, caching."""
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import polars as pl
import pytest

from ml_assets.resources import tracking as T
from ml_assets.resources.tracking import MLflowTracking, TrackingUnavailable
from ml_assets_tests.processes import free_port

pytestmark = pytest.mark.cost(8)  # seconds alone (see conftest)

LOG_ONE_RUN = """
import sys
from ml_assets.resources.tracking import MLflowTracking

run_id, _ = MLflowTracking(tracking_uri=sys.argv[1]).log_run("r", {"a": 1}, {"m": 0.5}, {"t": "x"})
print(run_id)
"""


def store(tmp_path, name="mlflow") -> MLflowTracking:
    """A fresh store (creating one runs MLflow's migrations: seconds, so tests share the module's)."""
    return MLflowTracking(tracking_uri=f"sqlite:///{tmp_path / name / 'mlflow.db'}",
                          artifact_location=f"file://{tmp_path / name / 'artifacts'}", experiment="ml_assets/test",
                          ui_url="http://mlflow.example:5000", dagster_ui_url="http://dagster.example:3000")


@pytest.fixture(scope="module")
def tracking(tmp_path_factory) -> MLflowTracking:
    return store(tmp_path_factory.mktemp("tracking"))


def training_frame(rows: int) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    return pl.DataFrame({
        "date": pl.date_range(pl.date(2013, 1, 1), pl.date(2013, 1, 28), eager=True).sample(rows, with_replacement=True,
                                                                                           seed=0),
        "carrier": pl.Series(rng.choice(["AA", "B6", "DL"], rows)).scatter(list(range(0, rows, 97)), None),
        "route": rng.choice(["JFK-LAX", "EWR-ORD"], rows),
        **{f"x{i}": rng.normal(size=rows) for i in range(30)},
        "late": rng.integers(0, 2, rows).astype(bool), "split": rng.choice(["train", "valid"], rows)})


def test_steps_that_open_a_fresh_store_at_once_all_log_their_run(tmp_path):
    """Concurrent first use (several training steps of one run under the daemon) must not race MLflow's
    schema migration or the experiment's creation."""
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    procs = [subprocess.Popen([sys.executable, "-c", LOG_ONE_RUN, uri], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    assert [code for code, _, _ in results] == [0] * 2, [err[-2000:] for _, _, err in results]

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("ml_assets")
    logged = {r.info.run_id for r in client.search_runs([experiment.experiment_id])}
    assert logged == {out.strip() for _, out, _ in results}


def test_a_run_points_back_to_its_dagster_run_and_keeps_every_tag(tracking):
    run_id, url = tracking.log_run("xgboost-2013-01-05", {"max_depth": 4, "grid": [1, 2]}, {"valid_auc": 0.71,
                                                                                            "nan": float("nan")},
                                   {"dagster_run_id": "abc-123", "dagster_run": tracking.dagster_run_url("abc-123"),
                                    "family": "xgboost", "git_commit": "from-the-caller"},
                                   artifacts={"model_spec.json": b"{}"})
    derived, _ = tracking.log_run("mlp-2013-01-05", {}, {}, {"dagster_run_id": "def-456"})

    client = tracking._client()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "xgboost-2013-01-05"
    assert run.data.tags["dagster_run_id"] == "abc-123"
    assert run.data.tags["dagster_run"] == "http://dagster.example:3000/runs/abc-123"
    assert run.data.tags["family"] == "xgboost" and run.data.tags["git_commit"] == "from-the-caller"
    assert run.data.params == {"max_depth": "4", "grid": "[1, 2]"}
    assert run.data.metrics == {"valid_auc": 0.71}  # NaN is not logged
    assert [a.path for a in client.list_artifacts(run_id, "model")] == ["model/model_spec.json"]
    assert client.get_run(derived).data.tags["dagster_run"] == "http://dagster.example:3000/runs/def-456"

    assert url == f"http://mlflow.example:5000/#/experiments/{run.info.experiment_id}/runs/{run_id}"
    assert tracking.run_url(run_id) == f"http://mlflow.example:5000/#/runs/{run_id}"
    assert tracking.model_version_url("flight_delay_xgboost", 3) == \
        "http://mlflow.example:5000/#/models/flight_delay_xgboost/versions/3"

    tracking.log_to_run(run_id, {"holdout_roc_auc": 0.7, "skip": None}, artifacts={"report.json": b"[]"})
    run = client.get_run(run_id)
    assert run.data.metrics["holdout_roc_auc"] == 0.7 and "skip" not in run.data.metrics
    assert run.data.tags["dagster_run_id"] == "abc-123"  # evaluation does not touch the tags
    assert [a.path for a in client.list_artifacts(run_id, "evaluation")] == ["evaluation/report.json"]


def test_the_mlflow_ui_address_is_one_setting(monkeypatch, tmp_path):
    from ml_assets import settings
    from ml_assets.definitions import _tracking

    assert MLflowTracking().ui_url == settings.DEFAULT_MLFLOW_UI
    monkeypatch.setenv("ML_ASSETS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ML_ASSETS_MLFLOW_UI", "https://mlflow.internal/")
    tracking = _tracking(settings.load(), "flights")
    assert tracking.ui_url == "https://mlflow.internal"
    assert tracking.run_url("r1") == "https://mlflow.internal/#/runs/r1"
    assert tracking.model_version_url("line", 2) == "https://mlflow.internal/#/models/line/versions/2"


def test_the_training_set_is_a_dataset_input_with_its_data_version_and_costs_little(tracking):
    frame = training_frame(25_000)
    run_id, _ = tracking.log_run("logistic-2013-01-29", {}, {}, {"dagster_run_id": "r-1"},
                                 dataset=(frame, "0123456789abcdef", "flights-training_set-2013-01-29"))
    client = tracking._client()
    (given,) = client.get_run(run_id).inputs.dataset_inputs
    assert given.dataset.name == "flights-training_set-2013-01-29"
    assert given.dataset.digest == "0123456789abcdef"
    assert {t.key: t.value for t in given.tags} == {"mlflow.data.context": "training"}
    assert '"num_rows": 25000' in given.dataset.profile
    assert '"name": "carrier"' in given.dataset.schema and '"name": "x29"' in given.dataset.schema
    assert "r-1" in given.dataset.source  # the source names the Dagster run
    assert client.list_artifacts(run_id) == []  # the rows are not uploaded

    # The cost of the dataset part per call on a 25k-row frame (measured: 10-25 ms, SQLite or a server). The bound
    # leaves room for a busy machine and would still catch uploading or re-hashing the rows.
    costs = []
    for i in range(3):
        start = time.perf_counter()
        client.log_inputs(run_id, datasets=[T.training_input(frame, f"digest{i}", f"set-{i}", {"dagster_run_id": "r"})])
        costs.append(time.perf_counter() - start)
    assert statistics.median(costs) < 0.25, costs


def test_repeated_calls_reuse_the_client_and_the_experiment_lookup(tracking, monkeypatch):
    tracking.log_run("first", {}, {}, {"batch": "reuse"})
    client = tracking._client()

    def no_more_lookups(*args, **kwargs):
        raise AssertionError("the experiment was looked up again")

    monkeypatch.setattr(type(client), "get_experiment_by_name", no_more_lookups)
    for i in range(3):
        assert MLflowTracking(**tracking.model_dump())._client() is client  # a new resource object, same client
        tracking.log_run(f"run-{i}", {}, {"m": i}, {"batch": "reuse"})
    experiment_id = T._EXPERIMENTS[next(k for k in T._EXPERIMENTS if k[1] == tracking.tracking_uri)]
    assert len(client.search_runs([experiment_id], "tags.batch = 'reuse'")) == 4


def test_an_unreachable_server_is_one_line_naming_the_uri():
    uri = f"http://ml:secret@127.0.0.1:{free_port()}"
    start = time.perf_counter()
    with pytest.raises(TrackingUnavailable) as caught:
        MLflowTracking(tracking_uri=uri, experiment="nowhere").log_run("r", {}, {}, {})
    message = str(caught.value)
    assert time.perf_counter() - start < 15  # not MLflow's minutes of retries
    assert "\n" not in message and f"http://ml:***@127.0.0.1:{uri.rsplit(':', 1)[1]}" in message
    assert "secret" not in message


def test_a_connection_lost_later_is_one_line_too():
    """After the first contact, MLflow's own retries run; what finally fails is turned into the same line."""
    from mlflow.exceptions import MlflowException

    tracking = MLflowTracking(tracking_uri="http://mlflow.example:5000")
    long = ("API request to http://mlflow.example:5000/api/2.0/mlflow/runs/create failed with exception "
            "HTTPConnectionPool(host='mlflow.example', port=5000): Max retries exceeded with url\n(Caused by ...)")
    with pytest.raises(TrackingUnavailable) as caught:
        with tracking._reachable("logging run r"):
            raise MlflowException(long)
    assert "\n" not in str(caught.value) and "http://mlflow.example:5000" in str(caught.value)
    with pytest.raises(MlflowException):  # anything else passes through unchanged
        with tracking._reachable("logging run r"):
            raise MlflowException("Registered Model with name=x not found", error_code="RESOURCE_DOES_NOT_EXIST")


def test_a_store_that_cannot_be_opened_is_one_line_naming_the_uri(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(TrackingUnavailable) as caught:
        MLflowTracking(tracking_uri=f"sqlite:///{blocker}/mlflow.db").log_run("r", {}, {}, {})
    assert "\n" not in str(caught.value) and str(blocker) in str(caught.value)


def test_no_tracking_uri_says_what_to_set():
    with pytest.raises(ValueError, match="MLFLOW_TRACKING_URI"):
        MLflowTracking().log_run("r", {}, {}, {})


def test_logging_leaves_the_environment_s_tracking_uri_alone(tracking, monkeypatch):
    """Definitions read MLFLOW_TRACKING_URI when they are built: a run logged earlier in the same process
    (another store, e.g. a test's) must not leave its URI there."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://from-the-environment:5000")
    mlflow.set_tracking_uri("sqlite:///elsewhere.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://from-the-environment:5000")
    tracking.log_run("env", {}, {}, {})
    assert mlflow.get_tracking_uri() == tracking.tracking_uri  # MLflow's own lookups follow the store in use
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://from-the-environment:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri("sqlite:///elsewhere.db")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    tracking.log_run("env", {}, {}, {})
    assert "MLFLOW_TRACKING_URI" not in os.environ
