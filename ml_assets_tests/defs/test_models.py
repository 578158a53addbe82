"""The model layer materialized on real days: training_set -> candidates -> evaluation -> ONNX."""
import json
import os

import dagster as dg
import polars as pl
import pytest

from ml_assets.core import landing
from ml_assets.core.onnx_export import score_onnx
from ml_assets.core.storage import make_path
from ml_assets.definitions import DATA_ASSETS, build_assets, build_resources
from ml_assets.defs.models.evaluation import EvaluationSettings

SMALL = {"ops": {"xgboost_model": {"config": {"params": {"n_estimators": 30}}},
                 "torch_model": {"config": {"params": {"hidden": [16], "max_epochs": 4}}}}}
MODEL_ASSETS = ["training_set", "xgboost_model", "torch_model", "model_evaluation", "onnx_model"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Four real days of data, then the model layer for the fourth (window: the three days before)."""
    root = tmp_path_factory.mktemp("models") / "home"
    path = make_path(str(root))
    import datetime as dt

    landing.land_days(path, dt.date(2013, 1, 1), dt.date(2013, 1, 4))
    resources = build_resources(str(root), "local")
    for day in ("2013-01-01", "2013-01-02", "2013-01-03", "2013-01-04"):
        assert dg.materialize(DATA_ASSETS, partition_key=day, resources=resources).success
    result = dg.materialize(build_assets(window_days=3), partition_key="2013-01-04", resources=resources,
                            selection=MODEL_ASSETS, run_config=SMALL, raise_on_error=False)
    return root, resources, result


def _checks(result):
    return {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}


def test_every_model_asset_materializes_with_blocking_checks_green(trained):
    root, _, result = trained
    assert result.success
    done = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert done == set(MODEL_ASSETS)
    checks = _checks(result)
    assert checks[("onnx_model", "onnx_parity")].passed
    assert checks[("onnx_model", "onnx_parity")].metadata["max_abs_diff"].value <= 1e-5
    assert checks[("model_evaluation", "model_sanity")].passed
    for family in ("xgboost_model", "torch_model"):
        assert checks[(family, "behavior_edge_inputs")].passed
        assert "tailnum" in checks[(family, "behavior_invariance")].metadata["tried"].value


def test_training_set_is_the_window_before_the_day(trained):
    root, _, _ = trained
    frame = pl.read_parquet(os.path.join(root, "assets", "training_set", "2013-01-04.parquet"))
    assert sorted(str(d) for d in frame["date"].unique()) == ["2013-01-01", "2013-01-02", "2013-01-03"]
    assert frame["is_late"].null_count() == 0
    assert set(frame["split"].unique()) == {"train", "valid"}
    assert frame.filter(pl.col("split") == "valid")["date"].min() > frame.filter(pl.col("split") == "train")["date"].max()


def test_models_are_open_formats_tracked_in_mlflow(trained):
    root, resources, _ = trained
    folder = os.path.join(root, "models", "xgboost_model", "2013-01-04")
    assert sorted(os.listdir(folder)) == ["lineage.json", "manifest.json", "model.ubj", "model_spec.json"]
    assert sorted(os.listdir(os.path.join(root, "models", "torch_model", "2013-01-04")))[2] == "model.pt"
    lineage = json.loads(open(os.path.join(folder, "lineage.json")).read())
    import mlflow

    mlflow.set_tracking_uri(resources["mlflow"].tracking_uri)
    run = mlflow.get_run(lineage["mlflow_run_id"])
    assert run.data.tags["training_data_version"] == lineage["training_data_version"]
    assert "git_commit" in run.data.tags and "holdout_roc_auc" in run.data.metrics
    assert run.data.params["n_estimators"] == "30"


def test_onnx_model_scores_the_holdout_alone(trained):
    root, _, _ = trained
    onnx = open(os.path.join(root, "models", "onnx_model", "2013-01-04", "model.onnx"), "rb").read()
    holdout = pl.read_parquet(os.path.join(root, "assets", "flight_features", "2013-01-04.parquet"))
    p = score_onnx(onnx, holdout)
    assert p.shape == (holdout.height,) and ((p >= 0) & (p <= 1)).all()
    evaluation = pl.read_parquet(os.path.join(root, "assets", "model_evaluation", "2013-01-04.parquet"))
    assert evaluation.height == 2 and evaluation["chosen"].sum() == 1
    assert (evaluation["roc_auc"] > 0.55).all()


def test_failed_sanity_stops_the_export(trained):
    root, resources, _ = trained
    strict = {**resources, "evaluation_settings": EvaluationSettings(auc_floor=0.99)}
    result = dg.materialize(build_assets(window_days=3), partition_key="2013-01-04", resources=strict,
                            selection=["model_evaluation", "onnx_model"], raise_on_error=False)
    assert not _checks(result)[("model_evaluation", "model_sanity")].passed
    assert "onnx_model" not in {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
