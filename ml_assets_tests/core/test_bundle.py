import datetime as dt
import json
import math
import os
import subprocess

import numpy as np
import pytest
from upath import UPath

from ml_assets.core import bundle as B
from ml_assets.core.features import FEATURE_CODE_VERSION, FEATURES

DAY = dt.date(2013, 1, 10)
VERSION = "1.2.0"
LINE = "flight_delay_xgboost"

METRICS = {
    "overall": {"rows": 900, "roc_auc": 0.71, "pr_auc": 0.42, "log_loss": 0.48, "brier": 0.15,
                "precision": 0.4, "recall": 0.6, "f1": 0.48, "threshold": 0.25},
    "slices": [
        {"slice": "origin", "value": "EWR", "rows": 300, "late_rate": 0.3, "roc_auc": 0.70, "auc_gap": -0.01,
         "pr_auc": 0.4, "brier": 0.16, "f1": 0.47, "flagged": False},
        {"slice": "carrier", "value": "ZZ", "rows": 12, "late_rate": 0.0, "roc_auc": math.nan,
         "auc_gap": math.nan, "pr_auc": math.nan, "brier": 0.1, "f1": 0.0, "flagged": False},
    ],
    "latency": {"single_row_p50_ms": np.float64(0.21), "batch_rows": np.int64(900), "batch_ms": 3.5},
    "size_bytes": 12345,
}
LINEAGE = {"training_data_version": "abc123", "feature_code_version": FEATURE_CODE_VERSION,
           "mlflow_run_id": "run-1", "parent_champion": "1.1.0", "window": {"start": dt.date(2012, 12, 13), "end": DAY}}


@pytest.fixture(scope="module")
def tiny_model(january_features):
    """A real (tiny) xgboost exported to ONNX: the bytes and the model spec."""
    from ml_assets.core.onnx_export import export_onnx
    from ml_assets.core.training.window import split_window
    from ml_assets.core.training.xgb import train_xgboost

    train, valid = split_window(january_features, DAY)
    model = train_xgboost(train, valid, params={"n_estimators": 4, "max_depth": 3}, seed=0, nthread=1)
    return export_onnx(model), model.spec


@pytest.fixture
def written(tmp_path, tiny_model):
    model_bytes, spec = tiny_model
    return B.write_bundle(tmp_path / "home", VERSION, model_bytes, spec, METRICS, LINEAGE)


def test_bundle_layout_and_contents(written, tiny_model, tmp_path):
    assert written == UPath(str(tmp_path / "home" / "bundles" / LINE / VERSION))
    assert sorted(p.name for p in written.iterdir()) == sorted([*B.BUNDLE_FILES, B.MANIFEST_FILE])
    bundle = B.load_bundle(written)
    assert bundle.version == VERSION and bundle.model_bytes == tiny_model[0]
    f = bundle.features
    assert f["feature_code_version"] == FEATURE_CODE_VERSION and f["family"] == "xgboost"
    assert f["model_line"] == "flight_delay_xgboost"
    assert bundle.input_names == FEATURES
    assert {i["name"]: i["dtype"] for i in f["inputs"]}["carrier"] == "string"
    assert {i["name"]: i["dtype"] for i in f["inputs"]}["temp"] == "float32"
    assert f["vocabularies"]["origin"] == ["EWR", "JFK", "LGA"]
    assert f["threshold"] == tiny_model[1]["threshold"]
    # NaN becomes null (strict JSON); numpy scalars plain numbers; dates ISO strings.
    assert bundle.metrics["slices"][1]["roc_auc"] is None and bundle.metrics["latency"]["batch_rows"] == 900
    assert bundle.lineage["window"]["start"] == "2012-12-13" and bundle.lineage["parent_champion"] == "1.1.0"
    card = bundle.model_card
    for heading in ("## Intended use", "## Data and lineage", "## Metrics (holdout)", "## Metrics by slice",
                    "## Limitations", "## Caveats", "## Cost"):
        assert heading in card
    assert "| origin | EWR | 300 |" in card and "run-1" in card and "0.7100" in card
    assert "flight_delay_xgboost 1.2.0" in card


def test_manifest_is_sha256sum_format(written):
    out = subprocess.run(["sha256sum", "-c", "MANIFEST"], cwd=os.fspath(written), capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = (written / "MANIFEST").read_text().splitlines()
    assert [line.split("  ")[1] for line in lines] == sorted(B.BUNDLE_FILES)


def test_bundle_scores_like_score_onnx(written, january_features):
    from ml_assets.core.onnx_export import score_onnx

    bundle = B.load_bundle(written)
    frame = january_features.head(200)
    np.testing.assert_array_equal(bundle.score(frame), score_onnx(bundle.model_bytes, frame))


def test_changed_byte_is_refused(written):
    path = written / "model.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(B.BundleIntegrityError, match=r"model\.onnx does not match its MANIFEST sha256") as err:
        B.load_bundle(written)
    assert err.value.file == "model.onnx"


def test_edited_metrics_are_refused(written):
    metrics = json.loads((written / "metrics.json").read_text())
    metrics["overall"]["roc_auc"] = 0.99
    (written / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(B.BundleIntegrityError, match=r"metrics\.json"):
        B.load_bundle(written)


def test_deleted_file_is_refused(written):
    (written / "model_card.md").unlink()
    with pytest.raises(B.BundleIntegrityError, match=r"model_card\.md is listed in MANIFEST but missing") as err:
        B.load_bundle(written)
    assert err.value.file == "model_card.md"


def test_added_file_is_refused(written):
    (written / "extra.py").write_text("print('hi')")
    with pytest.raises(B.BundleIntegrityError, match=r"extra\.py is not listed in MANIFEST") as err:
        B.load_bundle(written)
    assert err.value.file == "extra.py"


def test_missing_manifest_is_a_partial_bundle(written):
    (written / "MANIFEST").unlink()
    with pytest.raises(B.BundleIntegrityError, match="partial bundle.*no MANIFEST") as err:
        B.load_bundle(written)
    assert err.value.file == "MANIFEST"


def test_manifest_that_drops_a_file_or_is_garbled_is_refused(written):
    manifest = (written / "MANIFEST").read_text().splitlines()
    (written / "MANIFEST").write_text("\n".join(line for line in manifest if "lineage" not in line) + "\n")
    with pytest.raises(B.BundleIntegrityError, match=r"does not list required file lineage\.json"):
        B.load_bundle(written)
    (written / "MANIFEST").write_text("not a manifest\n")
    with pytest.raises(B.BundleIntegrityError, match="line 1 is malformed"):
        B.load_bundle(written)


def test_no_bundle_folder(tmp_path):
    with pytest.raises(B.BundleIntegrityError, match="no bundle at"):
        B.load_bundle(tmp_path / "bundles" / "9.9.9")


def test_atomic_write_leaves_no_temp_folder(written):
    assert [p.name for p in written.parent.iterdir()] == [VERSION]


def test_failed_write_leaves_nothing(tmp_path, tiny_model, monkeypatch):
    model_bytes, spec = tiny_model
    real_fsync = os.fsync
    calls = []

    def failing_fsync(fd):
        calls.append(fd)
        if len(calls) == 3:
            raise OSError("disk full")
        return real_fsync(fd)

    monkeypatch.setattr(B.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        B.write_bundle(tmp_path, VERSION, model_bytes, spec, METRICS, LINEAGE)
    assert list((tmp_path / "bundles" / LINE).iterdir()) == []  # neither the version nor a temp folder


def test_versions_are_immutable(written, tiny_model):
    model_bytes, spec = tiny_model
    root = written.parent.parent.parent
    # Identical content: a no-op returning the same folder.
    assert B.write_bundle(root, VERSION, model_bytes, spec, METRICS, LINEAGE) == written
    with pytest.raises(B.BundleExistsError, match="immutable"):
        B.write_bundle(root, VERSION, model_bytes, spec, METRICS, {**LINEAGE, "mlflow_run_id": "other"})
    assert B.load_bundle(written).lineage["mlflow_run_id"] == "run-1"
    assert B.list_bundles(root, LINE) == [VERSION]


def test_partial_local_folder_is_replaced(tmp_path, tiny_model):
    model_bytes, spec = tiny_model
    partial = tmp_path / "bundles" / LINE / VERSION
    partial.mkdir(parents=True)
    (partial / "model.onnx").write_bytes(b"half")
    (partial / "junk").write_bytes(b"x")
    path = B.write_bundle(tmp_path, VERSION, model_bytes, spec, METRICS, LINEAGE)
    assert B.load_bundle(path).model_bytes == model_bytes
    assert [p.name for p in (tmp_path / "bundles" / LINE).iterdir()] == [VERSION]


def test_object_store_writes_manifest_last_and_verifies(tiny_model):
    model_bytes, spec = tiny_model
    root = UPath("memory://bundle-test/home")
    try:
        path = B.write_bundle(root, VERSION, model_bytes, spec, METRICS, LINEAGE)
        assert B.load_bundle(path).version == VERSION
        (path / "lineage.json").write_bytes(b"{}")
        with pytest.raises(B.BundleIntegrityError, match=r"lineage\.json"):
            B.load_bundle(path)
        (path / "MANIFEST").unlink()
        with pytest.raises(B.BundleIntegrityError, match="partial bundle"):
            B.load_bundle(path)
        # An interrupted write (no MANIFEST) is finished cleanly by the next write, leftovers gone.
        (path / "stray.tmp").write_bytes(b"x")
        B.write_bundle(root, VERSION, model_bytes, spec, METRICS, LINEAGE)
        assert B.load_bundle(path).lineage["mlflow_run_id"] == "run-1"
    finally:
        root.fs.rm(root.path, recursive=True)


def test_invalid_version_is_refused(tmp_path, tiny_model):
    with pytest.raises(ValueError, match="MAJOR.MINOR.PATCH"):
        B.write_bundle(tmp_path, "latest", tiny_model[0], tiny_model[1], METRICS, LINEAGE)


def test_session_checks_inputs_against_features_json(written):
    bundle = B.load_bundle(written)
    assert [i.name for i in bundle.session().get_inputs()] == FEATURES
    broken = B.Bundle(**{**bundle.__dict__, "features": {**bundle.features, "inputs": bundle.features["inputs"][1:]}})
    with pytest.raises(B.BundleIntegrityError, match="differ from features.json"):
        broken.session()


def test_bundle_has_no_pickles(written):
    for p in written.iterdir():
        assert not p.read_bytes().startswith(b"\x80"), p.name  # pickle protocol 2+ magic


def test_score_empty_frame(written, january_features):
    assert B.load_bundle(written).score(january_features.head(0)).shape == (0,)
