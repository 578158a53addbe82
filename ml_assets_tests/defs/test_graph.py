"""The graph as Dagster sees it: a snapshot of every asset and check spec (any change is a visible diff), the
edges that carry the truth (champion -> predictions, landing -> raw), and cheap definitions loading.

Regenerate the snapshot after an intended change: ``UPDATE_SNAPSHOT=1 pytest ml_assets_tests/defs/test_graph.py``.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

SNAPSHOT = Path(__file__).with_name("graph_snapshot.json")


@pytest.fixture(scope="module")
def defs():
    from ml_assets.definitions import build_definitions

    with pytest.MonkeyPatch.context() as mp:  # the defaults, whatever an earlier fixture of this worker set
        for name in ("ML_ASSETS_TUNE_EVERY_DAYS", "ML_ASSETS_TUNE_TRIALS", "ML_ASSETS_TUNE_SECONDS"):
            mp.delenv(name, raising=False)
        return build_definitions(families="xgboost,mlp,logistic", window_days=28)


def _mapping(graph, child, parent) -> str:
    mapping = graph.get_partition_mapping(child, parent)
    offsets = (getattr(mapping, "start_offset", None), getattr(mapping, "end_offset", None))
    return f"{type(mapping).__name__}{offsets if offsets != (None, None) else ''}"


def graph_snapshot(defs) -> dict:
    graph = defs.resolve_asset_graph()
    out = {}
    for key in graph.toposorted_asset_keys:
        node = graph.get(key)
        partitions = node.partitions_def
        condition = node.automation_condition
        out[key.to_user_string()] = {
            "group": node.group_name,
            "materializable": node.is_materializable,
            "partitions": f"{partitions.start.date()}..{partitions.end.date()}" if partitions else None,
            "code_version": (node.code_version or "").split("-")[0] if node.code_version else None,
            "deps": {p.to_user_string(): _mapping(graph, key, p) if partitions and graph.get(p).partitions_def else
                     "unpartitioned" for p in sorted(node.parent_keys)},
            "automation": condition.get_label() if condition is not None else None,
            "backfill": type(node.backfill_policy).__name__ + f"({node.backfill_policy.max_partitions_per_run})"
            if node.backfill_policy else None,
            "checks": sorted(f"{c.name}{' (refusing)' if graph.get(c).blocking else ''}"
                             for c in graph.asset_check_keys if c.asset_key == key),
        }
    return out


def test_the_graph_matches_its_snapshot(defs):
    current = graph_snapshot(defs)
    if os.environ.get("UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    assert current == expected, "the asset graph changed: review, then regenerate with UPDATE_SNAPSHOT=1"


def test_the_graph_draws_every_real_dependency(defs):
    graph = defs.resolve_asset_graph()
    key = lambda name: dg.AssetKey(["flights", name])  # noqa: E731
    # the champion that predicts D is an input, decided on D-1-lag (lag 1 by default): D-2
    assert key("champion") in graph.get(key("batch_predictions")).parent_keys
    assert _mapping(graph, key("batch_predictions"), key("champion")) == "TimeWindowPartitionMapping(-2, -2)"
    assert key("champion") in graph.get(key("champion")).parent_keys  # the daily decision chain
    # the landing zone is where the graph starts; outcomes never feed the features
    for source in ("schedule", "weather", "outcomes"):
        assert key(f"landing_{source}") in graph.get(key(f"raw_{source}")).parent_keys
        assert not graph.get(key(f"landing_{source}")).is_materializable
    assert key("raw_outcomes") not in graph.get(key("features")).parent_keys
    assert not any("outcomes" in p.to_user_string() or "labelled" in p.to_user_string()
                   for p in graph.get(key("features")).parent_keys)
    # a search feeds the daily refits: a candidate of D reads the searches of the two cycles up to D (searches
    # are off by default: D's own record, which says so)
    assert _mapping(graph, key("xgboost_model"), key("xgboost_params")) == "TimeWindowPartitionMapping(0, 0)"
    assert key("training_set") in graph.get(key("xgboost_params")).parent_keys
    assert key("mlp_params") not in graph.get_all_asset_keys()  # only families with a search space
    # every family is a candidate the evaluation reads
    for family in ("xgboost", "mlp", "logistic"):
        assert key(f"{family}_model") in graph.get(key("model_evaluation")).parent_keys


def test_the_outcome_lag_moves_the_prediction_edge(monkeypatch):
    from ml_assets.definitions import build_definitions

    monkeypatch.setenv("ML_ASSETS_OUTCOME_LAG_DAYS", "3")
    graph = build_definitions(families="xgboost").resolve_asset_graph()
    key = lambda name: dg.AssetKey(["flights", name])  # noqa: E731
    assert _mapping(graph, key("batch_predictions"), key("champion")) == "TimeWindowPartitionMapping(-4, -4)"


def test_loading_the_definitions_stays_cheap():
    """Dagster loads definitions often: no torch, xgboost, mlflow, matplotlib or onnxruntime at import."""
    code = ("import sys, ml_assets.definitions; heavy = [m for m in ('torch', 'xgboost', 'mlflow', 'matplotlib', "
            "'onnxruntime', 'sklearn', 'optuna') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == ""
