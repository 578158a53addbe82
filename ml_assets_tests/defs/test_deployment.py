"""The deployment layer on real days: bundle -> promotion -> champion -> batch predictions -> live performance."""
import datetime as dt

import dagster as dg
import numpy as np
import polars as pl
import pytest

from ml_assets.core import champion as C
from ml_assets.core import landing
from ml_assets.core.bundle import load_bundle, write_bundle
from ml_assets.core.features import LABEL
from ml_assets.core.onnx_export import export_onnx
from ml_assets.core.storage import make_path, read_parquet
from ml_assets.core.training.xgb import train_xgboost
from ml_assets.definitions import DATA_ASSETS, build_assets, build_resources
from ml_assets_tests.processes import free_port

SMALL = {"ops": {"xgboost_model": {"config": {"params": {"n_estimators": 30}, "track_energy": False}},
                 "torch_model": {"config": {"params": {"hidden": [16], "max_epochs": 4}, "track_energy": False}}}}
MODEL_AND_DEPLOYMENT = ["training_set", "xgboost_model", "torch_model", "model_evaluation", "onnx_model",
                        "deployment_bundle", "champion", "batch_predictions", "live_performance"]
DAYS = ["2013-01-04", "2013-01-05", "2013-01-06"]


def _home(tmp_path_factory, name: str, last_day: dt.date):
    root = tmp_path_factory.mktemp(name) / "home"
    landing.land_days(make_path(str(root)), dt.date(2013, 1, 1), last_day)
    resources = build_resources(str(root), "local")
    instance = dg.DagsterInstance.ephemeral()
    for day in range((last_day - dt.date(2013, 1, 1)).days + 1):
        key = (dt.date(2013, 1, 1) + dt.timedelta(days=day)).isoformat()
        assert dg.materialize(DATA_ASSETS, partition_key=key, resources=resources, instance=instance).success
    return root, resources, instance


def _run(resources, instance, day: str, selection=MODEL_AND_DEPLOYMENT):
    return dg.materialize(build_assets(window_days=3), partition_key=day, resources=resources, instance=instance,
                          selection=selection, run_config=SMALL, raise_on_error=False)


def _features(root, day: str) -> pl.DataFrame:
    return read_parquet(make_path(str(root)) / "assets" / "flight_features" / f"{day}.parquet")


def _checks(result) -> dict:
    return {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}


@pytest.fixture(scope="module")
def three_days(tmp_path_factory):
    root, resources, instance = _home(tmp_path_factory, "deploy", dt.date(2013, 1, 6))
    results = {day: _run(resources, instance, day) for day in DAYS}
    return root, resources, instance, results


def test_first_bundle_becomes_champion(three_days):
    root, _, instance, results = three_days
    first = results[DAYS[0]]
    assert first.success
    promotion = _checks(first)[("deployment_bundle", "promotion")]
    assert promotion.passed  # no champion yet: parity + budgets only
    assert promotion.partition == DAYS[0]  # judged per day: the UI and the alerts show which day was refused
    meta = first.asset_materializations_for_node("deployment_bundle")[0].metadata
    bundle = load_bundle(make_path(str(root)) / meta["bundle"].value)  # MANIFEST verified
    assert bundle.version == meta["version"].value and bundle.lineage["day"] == DAYS[0]
    assert bundle.lineage["parent_champion"] is None
    assert set(bundle.lineage) >= {"training_data_version", "feature_code_version", "mlflow_run_id", "git_commit",
                                   "date_span", "training_energy", "params"}
    events = C.read_history(make_path(str(root)))
    assert events[0]["version"] == bundle.version and events[0]["day"] == DAYS[0]


def test_versions_follow_the_rules_and_lines_are_registered(three_days):
    root, resources, _, results = three_days
    metas = [results[d].asset_materializations_for_node("deployment_bundle")[0].metadata for d in DAYS]
    for earlier, later in zip(metas, metas[1:]):
        if earlier["model_line"].value == later["model_line"].value:  # same family: only the data changed
            assert later["version_bump"].value == "minor", later["version_reasons"].value
    import mlflow

    mlflow.set_tracking_uri(resources["mlflow"].tracking_uri)
    client = mlflow.MlflowClient()
    now = C.current(C.read_history(make_path(str(root))))
    holder = client.get_model_version_by_alias(now["model_line"], "champion")
    assert holder.tags["semver"] == now["version"]


def test_batch_predictions_use_yesterdays_champion_and_equal_the_bundle(three_days):
    root, _, _, results = three_days
    home = make_path(str(root))
    first = results[DAYS[0]].output_for_node("batch_predictions")
    assert first.is_empty()  # no champion existed the evening before the first trained day
    day = DAYS[1]
    predictions = results[day].output_for_node("batch_predictions")
    serving = C.as_of(C.read_history(home), dt.date(2013, 1, 4))
    bundle = load_bundle(home / serving["bundle"])
    features = _features(root, day)
    assert predictions.height == features.height and predictions["model_version"].unique().to_list() == [
        f"{serving['model_line']}/{bundle.version}"]
    expected = bundle.score(features.drop(LABEL))
    np.testing.assert_allclose(predictions["p_late"].to_numpy(), expected, atol=1e-7)
    assert set(predictions.columns) >= {"date", "carrier", "flight", "origin", "dest", "sched_dep_time",
                                        "p_late", "model_version"}


def test_predictions_are_made_whatever_the_promotion_decides(three_days):
    _, _, _, results = three_days
    for day in DAYS:
        assert results[day].asset_materializations_for_node("batch_predictions"), day
        assert results[day].asset_materializations_for_node("live_performance"), day


def test_live_performance_joins_outcomes(three_days):
    _, _, _, results = three_days
    live = results[DAYS[1]].output_for_node("live_performance")
    batch = live.filter(pl.col("source") == "batch").row(0, named=True)
    assert batch["rows"] > 500 and 0.5 < batch["roc_auc"] <= 1.0
    assert _checks(results[DAYS[1]])[("live_performance", "live_auc_drop")].partition == DAYS[1]
    meta = results[DAYS[2]].asset_materializations_for_node("live_performance")[0].metadata
    assert "trend" in meta and "slices" in meta


def _bundle_from(root, train: pl.DataFrame, valid: pl.DataFrame, day: dt.date, version: str):
    """A champion made by hand and recorded as in effect the evening before ``day``."""
    train, valid = (f.filter(pl.col(LABEL).is_not_null()) for f in (train, valid))
    model = train_xgboost(train, valid, params={"n_estimators": 80, "max_depth": 6}, seed=0, nthread=1)
    path = write_bundle(make_path(str(root)), version, export_onnx(model), model.spec,
                        {"overall": {"roc_auc": 0.9}},
                        {"family": "xgboost", "params": model.spec["params"], "feature_code_version": "by-hand",
                         "training_data_version": "by-hand", "day": "2013-01-01"})
    C.promote(make_path(str(root)), "flight_delay_xgboost", version, f"bundles/flight_delay_xgboost/{version}",
              day - dt.timedelta(days=1), "set by the test")
    return path


@pytest.fixture(scope="module")
def four_days(tmp_path_factory):
    return _home(tmp_path_factory, "promotion", dt.date(2013, 1, 4))


def test_worse_candidate_is_not_promoted_better_one_is(four_days):
    root, resources, instance = four_days
    home = make_path(str(root))
    day = dt.date(2013, 1, 4)
    days = {d: _features(root, d) for d in ("2013-01-02", "2013-01-03", "2013-01-04")}
    # A champion that was trained on the holdout day itself: no honest candidate can match it there.
    _bundle_from(root, pl.concat(days.values()), days["2013-01-02"], day, "70.0.0")
    result = _run(resources, instance, day.isoformat(), MODEL_AND_DEPLOYMENT[:7])
    check = _checks(result)[("deployment_bundle", "promotion")]
    assert not check.passed
    assert "auc" in check.metadata["reason"].value and "comparisons" in check.metadata
    assert not result.asset_materializations_for_node("champion")  # the blocking check stopped it
    assert C.current(C.read_history(home))["version"] == "70.0.0"

    # The same candidate against a champion that learned nothing (shuffled labels) is promoted.
    def shuffled(frame):
        return frame.with_columns(pl.col(LABEL).shuffle(seed=1))

    _bundle_from(root, shuffled(days["2013-01-02"]), shuffled(days["2013-01-03"]), day, "80.0.0")
    result = _run(resources, instance, day.isoformat(), MODEL_AND_DEPLOYMENT[:7])
    promoted = _checks(result)[("deployment_bundle", "promotion")]
    assert promoted.passed, promoted.metadata["comparisons"].value
    now = C.current(C.read_history(home))
    assert now["version"] != "80.0.0" and now["parent"]["version"] == "80.0.0"


def test_status_and_rollback_round_trip_move_the_mlflow_alias(three_days, monkeypatch, capsys):
    import mlflow

    from ml_assets import cli

    root, resources, _, _ = three_days
    home = make_path(str(root))
    monkeypatch.setenv("ML_ASSETS_HOME", str(root))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    promoted = [e for e in C.read_history(home) if e["action"] == "promote"]
    assert len(promoted) >= 2, "the three trained days should have promoted at least twice"
    newest = C.current(C.read_history(home))
    assert cli.main(["status"]) == 0
    out = capsys.readouterr().out
    assert f"{newest['model_line']} {newest['version']}" in out and "newest landed 2013-01-06" in out

    assert cli.main(["rollback"]) == 0
    back = C.current(C.read_history(home))
    assert (back["model_line"], back["version"]) == (newest["parent"]["model_line"], newest["parent"]["version"])
    mlflow.set_tracking_uri(resources["mlflow"].tracking_uri)
    holder = mlflow.MlflowClient().get_model_version_by_alias(back["model_line"], "champion")
    assert holder.tags["semver"] == back["version"]

    assert cli.main(["rollback", "--to", newest["version"], "--line", newest["model_line"]]) == 0
    again = C.current(C.read_history(home))
    assert (again["model_line"], again["version"]) == (newest["model_line"], newest["version"])
    assert cli.main(["rollback", "--to", "99.0.0"]) == 2


def test_ml_assets_serve_answers_from_the_champion(three_days, tmp_path):
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    import httpx

    root = three_days[0]
    now = C.current(C.read_history(make_path(str(root))))
    port = free_port()
    script = Path(sys.executable).parent / "ml-assets"
    log = open(tmp_path / "serve.out", "wb")
    proc = subprocess.Popen([str(script), "serve", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "ML_ASSETS_HOME": str(root)})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "serve.out").read_text()
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.out").read_text()
            time.sleep(0.2)
        assert httpx.get(f"{url}/model", timeout=5).json()["version"] == now["version"]
        record = {"year": 2013, "month": 1, "day": 7, "sched_dep_time": 1830, "sched_arr_time": 2130,
                  "carrier": "UA", "flight": 1545, "origin": "EWR", "dest": "IAH", "distance": 1400}
        answer = httpx.post(f"{url}/predict", json=record, timeout=10)
        assert answer.status_code == 200 and 0.0 <= answer.json()["predictions"][0]["p_late"] <= 1.0
        assert httpx.post(f"{url}/predict", json={**record, "month": 13}, timeout=10).status_code == 422
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
    assert list((root / "predictions").glob("predictions-*.jsonl"))
