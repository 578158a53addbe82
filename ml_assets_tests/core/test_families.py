"""What every model family promises (``core.families``): probabilities with signal, open formats, ONNX parity.

The family-specific behaviour (early stopping, the refit, torch settings, L2 choice) is in test_family_<name>.py.
"""
from __future__ import annotations

import json

import numpy as np
import onnx
import polars as pl
import pytest

from ml_assets.core import families as FAM
from ml_assets.core import onnx_export as O
from ml_assets.core.evaluation import roc_auc

FAMILIES = ["xgboost", "mlp", "logistic"]
PICKLE_MAGIC = b"\x80"  # pickle protocol 2+


@pytest.fixture(params=FAMILIES)
def family(request):
    return request.param


@pytest.fixture
def model(family, request):
    return request.getfixturevalue({"xgboost": "xgb_model", "mlp": "mlp_model", "logistic": "logistic_model"}[family])


def test_the_registry(monkeypatch):
    assert FAM.names() == FAMILIES
    assert {n: FAM.get(n).name for n in FAMILIES} == {n: n for n in FAMILIES}
    assert FAM.kind("mlp") == "pytorch" and "trees" in FAM.describe("xgboost")
    with pytest.raises(ValueError, match="unknown model family 'svm'"):
        FAM.get("svm")
    assert FAM.parse_selection(None) == FAMILIES and FAM.parse_selection("") == FAMILIES
    assert FAM.parse_selection(" xgboost, logistic,xgboost ") == ["xgboost", "logistic"]
    with pytest.raises(ValueError, match=r"unknown families \['svm'\]"):
        FAM.parse_selection("xgboost,svm")
    version = FAM.code_version("logistic")
    assert version.startswith("logistic-") and version == FAM.code_version("logistic") != FAM.code_version("mlp")


def test_vocabularies_labels_and_canonical_order(spec, split):
    vocab = FAM.vocabularies(split.train, ["origin", "carrier"])
    assert vocab["origin"] == ["EWR", "JFK", "LGA"] and vocab["carrier"] == sorted(vocab["carrier"])
    y = FAM.labels(split.train, spec.label.name)
    assert y.dtype == np.float32 and set(np.unique(y)) == {0.0, 1.0}
    shuffled = split.train.sample(fraction=1.0, shuffle=True, seed=3)
    assert not shuffled.equals(split.train)
    key = spec.features.key
    assert FAM.canonical_order(shuffled, key).equals(FAM.canonical_order(split.train, key))


def test_predicts_a_probability_per_row_with_real_signal(spec, family, model, split):
    p = FAM.predict(model, split.holdout)
    assert p.shape == (split.holdout.height,) and p.dtype == np.float64
    assert np.all((p >= 0) & (p <= 1))
    y = split.holdout[spec.label.name].cast(pl.Float64).to_numpy()
    assert roc_auc(y, p) > 0.55  # random scores: 0.50 +- 0.02 on ~930 rows
    assert FAM.predict(model, split.holdout.head(0)).shape == (0,)
    assert model.spec["family"] == family and 0 < model.spec["threshold"] < 1
    if "rows" in model.spec["validation"]:  # xgboost's default is one fit on the window: nothing held out
        assert model.spec["validation"]["rows"] == split.valid.height and model.spec["validation"]["roc_auc"] > 0.5


def test_unknown_categories_and_missing_values_give_finite_probabilities(family, model, split):
    p = FAM.predict(model, split.awkward)
    assert np.isfinite(p).all() and np.all((p >= 0) & (p <= 1))
    # every unseen category is treated alike: as unknown
    unseen = split.awkward.head(40)
    other = unseen.with_columns(pl.lit("ANOTHER-UNSEEN").alias(c) for c in model.spec["categorical"])
    np.testing.assert_array_equal(FAM.predict(model, unseen), FAM.predict(model, other))
    # a null category is unknown too
    null = unseen.with_columns(pl.lit(None, dtype=pl.String).alias(c) for c in model.spec["categorical"])
    np.testing.assert_array_equal(FAM.predict(model, unseen), FAM.predict(model, null))


def test_saved_in_open_formats_and_reloads_to_the_same_predictions(family, model, split):
    files = FAM.get(family).save(model)
    assert FAM.SPEC_FILE in files and FAM.family_of(files) == family
    assert all(not data.startswith(PICKLE_MAGIC) for name, data in files.items() if name != "model.pt"), list(files)
    spec = json.loads(files[FAM.SPEC_FILE])
    assert sorted(spec["vocabularies"]["origin"]) == ["EWR", "JFK", "LGA"]  # xgboost's: ordered by late rate
    assert spec["numeric"] == model.spec["numeric"]
    loaded = FAM.load(files)
    for rows in (split.holdout, split.awkward):
        np.testing.assert_array_equal(FAM.predict(loaded, rows), FAM.predict(model, rows))
    assert FAM.get(family).save(loaded) == files  # the round trip is exact


def test_onnx_parity_on_real_and_awkward_rows(family, model, split):
    exported = FAM.get(family).export_onnx(model)
    for rows in (split.holdout, split.awkward):
        result = O.parity(FAM.predict(model, rows), O.score_onnx(exported, rows))
        assert result["passed"] and result["max_abs_diff"] <= O.PARITY_TOLERANCE == 1e-5, result
        assert result["rows"] == rows.height


def test_the_graph_takes_the_raw_named_columns_and_returns_the_prediction(spec, family, model):
    exported = FAM.get(family).export_onnx(model)
    assert exported == FAM.get(family).export_onnx(model)  # deterministic bytes
    graph = onnx.load_from_string(exported).graph
    inputs = {i.name: i.type.tensor_type.elem_type for i in graph.input}
    assert list(inputs) == spec.model_inputs
    assert all(inputs[c] == onnx.TensorProto.STRING for c in spec.features.categorical)
    assert all(inputs[c] == onnx.TensorProto.FLOAT for c in [*spec.features.numeric, *spec.history_columns])
    assert [o.name for o in graph.output] == [spec.prediction]
    assert "LabelEncoder" in {n.op_type for n in graph.node}  # the encoding is inside the graph
    props = {p.key: p.value for p in onnx.load_from_string(exported).metadata_props}
    assert props["family"] == family and float(props["threshold"]) == pytest.approx(model.spec["threshold"])


def test_no_training_rows_is_an_error(family, split, inputs):
    with pytest.raises(ValueError, match="no training rows"):
        FAM.get(family).train(split.train.head(0), split.valid, inputs)
