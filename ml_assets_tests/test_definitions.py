import subprocess
import sys

import dagster as dg
import pytest

from ml_assets.definitions import build_definitions

EXPECTED_ASSETS = {"raw_flights", "raw_weather", "planes", "flight_features", "data_profile", "training_set",
                   "xgboost_model", "torch_model", "model_evaluation", "onnx_model", "deployment_bundle", "champion",
                   "batch_predictions", "live_performance"}


def test_definitions_load_with_the_expected_graph(tmp_path):
    defs = build_definitions(str(tmp_path), "local")
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == EXPECTED_ASSETS  # a rename is a visible change
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert ("raw_flights", "schema") in checks and ("flight_features", "no_outcome_leak") in checks
    assert graph.get(dg.AssetKey("flight_features")).code_version
    defs.validate_loadable(defs)


def test_production_needs_an_object_store_root(tmp_path):
    with pytest.raises(ValueError, match="s3://"):
        build_definitions(str(tmp_path), "production")


def test_importing_definitions_stays_cheap():
    """Dagster imports definitions often: no torch/xgboost/mlflow/onnxruntime/matplotlib at import time."""
    code = ("import sys, ml_assets.definitions; "
            "print(sorted(m for m in ('torch', 'xgboost', 'mlflow', 'onnxruntime', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
