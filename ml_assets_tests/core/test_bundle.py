"""Deployment bundles: layout, MANIFEST integrity (tampered, partial, extra, symlinked files), atomic writes."""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess

import numpy as np
import pytest
from upath import UPath

from ml_assets.core import bundle as B
from ml_assets.core.features import feature_code_version

DAY = dt.date(2013, 1, 10)
VERSION = "1.2.0"
LINE = "flight_delay_xgboost"

METRICS = {
    "holdout_day": DAY,
    "overall": {"rows": 900, "roc_auc": 0.71, "pr_auc": 0.42, "log_loss": 0.48, "brier": 0.15,
                "precision": 0.4, "recall": 0.6, "f1": 0.48, "threshold": 0.25},
    "slices": [
        {"slice": "origin", "value": "EWR", "rows": 300, "late_rate": 0.3, "roc_auc": 0.70, "auc_gap": -0.01,
         "pr_auc": 0.4, "brier": 0.16, "f1": 0.47, "flagged": False},
        {"slice": "carrier", "value": "ZZ", "rows": 12, "late_rate": 0.0, "roc_auc": math.nan,
         "auc_gap": math.nan, "pr_auc": math.nan, "brier": 0.1, "f1": 0.0, "flagged": False},
    ],
    "flagged_slices": [],
    "latency": {"single_row_p50_ms": np.float64(0.21), "batch_rows": np.int64(900), "batch_ms": 3.5},
    "size_bytes": 12345,
}
LINEAGE = {"training_data_version": "abc123", "mlflow_run_id": "run-1", "parent_champion": "1.1.0",
           "date_span": [dt.date(2013, 1, 1), dt.date(2013, 1, 9)], "train_rows": 5000, "valid_rows": 2700,
           "window": {"start": dt.date(2012, 12, 13), "end": DAY}}
DATA = {"dataset": "flights", "date_span": "2013-01-01 .. 2013-01-09", "days": 9, "rows": 7700,
        "rows_per_day": [{"date": "2013-01-01", "rows": 800, "labelled": 790, "positive_share": 0.3, "split": "train"}],
        "gaps": ["2013-01-05: no labelled rows (refused, or outcomes not landed)"]}


@pytest.fixture(scope="module")
def tiny_model(xgb_model):
    """A real xgboost exported to ONNX: the bytes and the model spec."""
    from ml_assets.core.families import xgboost as X

    return X.export_onnx(xgb_model), xgb_model.spec


@pytest.fixture(scope="module")
def files(spec, tiny_model):
    model_bytes, model_spec = tiny_model
    return B.build_bundle_files(VERSION, LINE, model_bytes, model_spec, METRICS, LINEAGE,
                                spec.model_dump(mode="json"), DATA, feature_code_version(spec))


@pytest.fixture
def written(tmp_path, files):
    return B.write_bundle(tmp_path / "home", files)


def test_bundle_layout_and_contents(spec, written, tiny_model, tmp_path):
    assert written == UPath(str(tmp_path / "home" / "bundles" / LINE / VERSION))
    assert sorted(p.name for p in written.iterdir()) == sorted([*B.BUNDLE_FILES, B.MANIFEST_FILE])
    bundle = B.load_bundle(written)
    assert bundle.version == VERSION and bundle.model_bytes == tiny_model[0]
    assert (bundle.family, bundle.model_line, bundle.output) == ("xgboost", LINE, "p_late")
    f = bundle.features
    assert f["feature_code_version"] == feature_code_version(spec) and f["format_version"] == B.FORMAT_VERSION
    assert bundle.input_names == spec.model_inputs
    dtypes = {i["name"]: i["dtype"] for i in f["inputs"]}
    assert dtypes["carrier"] == "string" and dtypes["temp"] == "float32" and dtypes["block_minutes"] == "float32"
    assert f["categorical"] == spec.features.categorical and f["label"] == "is_late"
    assert sorted(bundle.vocabularies["origin"]) == ["EWR", "JFK", "LGA"]  # ordered by late rate
    assert bundle.threshold == tiny_model[1]["threshold"]
    # NaN becomes null (strict JSON); numpy scalars plain numbers; dates ISO strings.
    assert bundle.metrics["slices"][1]["roc_auc"] is None and bundle.metrics["latency"]["batch_rows"] == 900
    assert bundle.lineage["window"]["start"] == "2012-12-13" and bundle.lineage["parent_champion"] == "1.1.0"
    assert bundle.dataset == json.loads(json.dumps(spec.model_dump(mode="json")))  # a server rebuilds the features
    card = bundle.model_card
    for heading in ("## Intended use", "## Model", "## Data and lineage", "## Metrics (holdout)",
                    "## Metrics by slice", "## Cost", "## Limitations"):
        assert heading in card
    assert "| origin | EWR | 300 |" in card and "run-1" in card and "0.7100" in card
    assert "flight_delay_xgboost 1.2.0" in card and spec.task in card and spec.card.limitations[0] in card
    assert "Trained on 2013-01-01 .. 2013-01-09" in card
    data_card = (written / B.DATA_CARD_FILE).read_text()
    assert data_card.startswith(f"# Data card: {spec.title}") and "| schedule | events |" in data_card
    assert "2013-01-05: no labelled rows" in data_card and "| 2013-01-01 | 800 | 790 |" in data_card


def test_model_spec_may_be_given_as_json(spec, tiny_model, files):
    model_bytes, model_spec = tiny_model
    as_text = B.build_bundle_files(VERSION, LINE, model_bytes, json.dumps(model_spec), METRICS, LINEAGE,
                                   spec.model_dump(mode="json"), DATA, feature_code_version(spec))
    assert as_text == files  # deterministic, whatever form the spec came in


def test_manifest_is_sha256sum_format(written):
    out = subprocess.run(["sha256sum", "-c", "MANIFEST"], cwd=os.fspath(written), capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = (written / "MANIFEST").read_text().splitlines()
    assert [line.split("  ")[1] for line in lines] == sorted(B.BUNDLE_FILES)


def test_bundle_scores_like_the_onnx_session(written, split):
    from ml_assets.core.onnx_export import score_onnx

    bundle = B.load_bundle(written)
    np.testing.assert_array_equal(bundle.score(split.holdout), score_onnx(bundle.model_bytes, split.holdout))
    np.testing.assert_array_equal(bundle.score(split.awkward), score_onnx(bundle.model_bytes, split.awkward))
    assert bundle.score(split.holdout.head(0)).shape == (0,)


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
    with pytest.raises(B.BundleIntegrityError, match=r"metrics\.json") as err:
        B.load_bundle(written)
    assert err.value.file == "metrics.json"


def test_deleted_file_is_refused(written):
    (written / "model_card.md").unlink()
    with pytest.raises(B.BundleIntegrityError, match=r"model_card\.md is listed in MANIFEST but missing") as err:
        B.load_bundle(written)
    assert err.value.file == "model_card.md"


def test_added_file_or_folder_is_refused(written):
    (written / "extra.py").write_text("print('hi')")
    with pytest.raises(B.BundleIntegrityError, match=r"extra\.py is not listed in MANIFEST") as err:
        B.load_bundle(written)
    assert err.value.file == "extra.py"
    (written / "extra.py").unlink()
    (written / "sub").mkdir()
    with pytest.raises(B.BundleIntegrityError, match="unexpected folder"):
        B.load_bundle(written)


def test_a_symlinked_file_is_refused_even_with_the_right_content(written, tmp_path):
    target = tmp_path / "elsewhere.json"
    target.write_bytes((written / "metrics.json").read_bytes())
    os.remove(os.fspath(written / "metrics.json"))
    os.symlink(target, os.fspath(written / "metrics.json"))
    with pytest.raises(B.BundleIntegrityError, match=r"metrics\.json is a symlink") as err:
        B.load_bundle(written)
    assert err.value.file == "metrics.json"


def test_a_symlinked_bundle_folder_is_refused(written):
    link = written.parent / "9.9.9"
    os.symlink(os.fspath(written), os.fspath(link))
    with pytest.raises(B.BundleIntegrityError, match="is a symlink"):
        B.load_bundle(link)
    assert B.load_bundle(written).version == VERSION


def test_missing_manifest_is_a_partial_bundle(written):
    (written / "MANIFEST").unlink()
    with pytest.raises(B.BundleIntegrityError, match="partial bundle.*no MANIFEST") as err:
        B.load_bundle(written)
    assert err.value.file == "MANIFEST"
    assert B.list_bundles(written.parent.parent.parent, LINE) == []  # not a complete version


def test_manifest_that_drops_a_file_or_is_garbled_is_refused(written):
    manifest = (written / "MANIFEST").read_text().splitlines()
    (written / "MANIFEST").write_text("\n".join(line for line in manifest if "lineage" not in line) + "\n")
    with pytest.raises(B.BundleIntegrityError, match=r"does not list required file lineage\.json"):
        B.load_bundle(written)
    (written / "MANIFEST").write_text("not a manifest\n")
    with pytest.raises(B.BundleIntegrityError, match="line 1 is malformed"):
        B.load_bundle(written)
    twice = manifest + [manifest[0]]
    (written / "MANIFEST").write_text("\n".join(twice) + "\n")
    with pytest.raises(B.BundleIntegrityError, match="twice"):
        B.load_bundle(written)


def test_no_bundle_folder(tmp_path):
    with pytest.raises(B.BundleIntegrityError, match="no bundle at"):
        B.load_bundle(tmp_path / "bundles" / LINE / "9.9.9")


def test_atomic_write_leaves_no_temp_folder(written):
    assert [p.name for p in written.parent.iterdir()] == [VERSION]


def test_failed_write_leaves_nothing(tmp_path, files, monkeypatch):
    real_fsync = os.fsync
    calls = []

    def failing_fsync(fd):
        calls.append(fd)
        if len(calls) == 3:
            raise OSError("disk full")
        return real_fsync(fd)

    monkeypatch.setattr(B.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        B.write_bundle(tmp_path, files)
    assert list((tmp_path / "bundles" / LINE).iterdir()) == []  # neither the version nor a temp folder


def test_versions_are_immutable(spec, written, files, tiny_model):
    root = written.parent.parent.parent
    assert B.write_bundle(root, files) == written  # identical content: a no-op returning the same folder
    other = B.build_bundle_files(VERSION, LINE, tiny_model[0], tiny_model[1], METRICS,
                                 {**LINEAGE, "mlflow_run_id": "other"}, spec.model_dump(mode="json"), DATA,
                                 feature_code_version(spec))
    with pytest.raises(B.BundleExistsError, match="immutable"):
        B.write_bundle(root, other)
    assert B.load_bundle(written).lineage["mlflow_run_id"] == "run-1"
    assert B.list_bundles(root, LINE) == [VERSION]
    # rewriting the same version over a tampered copy is refused too: the files must still match the MANIFEST
    (written / "lineage.json").write_bytes(b"{}")
    with pytest.raises(B.BundleIntegrityError, match=r"lineage\.json"):
        B.write_bundle(root, files)


def test_partial_local_folder_is_replaced(tmp_path, files):
    partial = tmp_path / "bundles" / LINE / VERSION
    partial.mkdir(parents=True)
    (partial / "model.onnx").write_bytes(b"half")
    (partial / "junk").write_bytes(b"x")
    path = B.write_bundle(tmp_path, files)
    assert B.load_bundle(path).model_bytes == files[B.MODEL_FILE]
    assert [p.name for p in (tmp_path / "bundles" / LINE).iterdir()] == [VERSION]


def test_object_store_writes_manifest_last_and_verifies(files):
    root = UPath("memory://bundle-test/home")
    try:
        path = B.write_bundle(root, files)
        assert B.load_bundle(path).version == VERSION
        (path / "lineage.json").write_bytes(b"{}")
        with pytest.raises(B.BundleIntegrityError, match=r"lineage\.json"):
            B.load_bundle(path)
        (path / "MANIFEST").unlink()
        with pytest.raises(B.BundleIntegrityError, match="partial bundle"):
            B.load_bundle(path)
        # An interrupted write (no MANIFEST) is finished cleanly by the next write, leftovers gone.
        (path / "stray.tmp").write_bytes(b"x")
        B.write_bundle(root, files)
        assert B.load_bundle(path).lineage["mlflow_run_id"] == "run-1"
    finally:
        root.fs.rm(root.path, recursive=True)


def test_invalid_version_or_line_is_refused(spec, tmp_path, tiny_model):
    with pytest.raises(ValueError, match="MAJOR.MINOR.PATCH"):
        B.build_bundle_files("latest", LINE, tiny_model[0], tiny_model[1], METRICS, LINEAGE,
                             spec.model_dump(mode="json"), DATA, "f")
    with pytest.raises(ValueError, match="MAJOR.MINOR.PATCH"):
        B.bundle_path(tmp_path, LINE, "../1.0.0")
    with pytest.raises(ValueError, match="invalid model line"):
        B.bundle_path(tmp_path, "../etc", "1.0.0")


def test_a_model_without_the_declared_output_is_refused(spec, tiny_model):
    with pytest.raises(ValueError, match="no 'p_on_time' output"):
        B.build_bundle_files(VERSION, LINE, tiny_model[0], {**tiny_model[1], "output": "p_on_time"}, METRICS,
                             LINEAGE, spec.model_dump(mode="json"), DATA, "f")


def test_session_checks_inputs_against_features_json(spec, written):
    bundle = B.load_bundle(written)
    assert [i.name for i in bundle.session().get_inputs()] == spec.model_inputs
    broken = B.Bundle(**{**bundle.__dict__, "features": {**bundle.features, "inputs": bundle.features["inputs"][1:]}})
    with pytest.raises(B.BundleIntegrityError, match="differ from features.json"):
        broken.session()


def test_an_unsupported_format_version_is_refused(written):
    features = json.loads((written / B.FEATURES_FILE).read_bytes())
    files = {p.name: p.read_bytes() for p in written.iterdir() if p.name != B.MANIFEST_FILE}
    files[B.FEATURES_FILE] = json.dumps({**features, "format_version": 1}).encode()
    files[B.MANIFEST_FILE] = B.manifest_bytes(files)
    for name, data in files.items():
        (written / name).write_bytes(data)
    with pytest.raises(B.BundleIntegrityError, match="unsupported format_version 1"):
        B.load_bundle(written)


def test_bundle_has_no_pickles(written):
    for p in written.iterdir():
        assert not p.read_bytes().startswith(b"\x80"), p.name  # pickle protocol 2+ magic


def test_json_files_refuse_what_json_cannot_hold(spec, tiny_model):
    with pytest.raises(TypeError, match="cannot store object"):
        B.build_bundle_files(VERSION, LINE, tiny_model[0], tiny_model[1], {"x": object()}, LINEAGE,
                             spec.model_dump(mode="json"), DATA, "f")


def test_loaded_bundles_keep_only_the_most_recently_used(spec, tmp_path, monkeypatch):
    """A range step loads each champion once while it serves, and keeps no more than ``keep`` sessions."""
    from ml_assets_tests.serving.helpers import pointer, tiny_bundle

    for i, bias in enumerate((-1.5, 0.0, 1.5)):
        tiny_bundle(tmp_path, spec, f"1.{i}.0", bias=bias)
    loads, real = [], B.load_bundle
    monkeypatch.setattr(B, "load_bundle", lambda path: loads.append(UPath(str(path)).name) or real(path))
    bundles = B.LoadedBundles(tmp_path, keep=2)
    first = bundles.get(pointer(spec, "1.0.0"))
    assert bundles.get(pointer(spec, "1.0.0")) is first and loads == ["1.0.0"]
    bundles.get(pointer(spec, "1.1.0"))
    bundles.get(pointer(spec, "1.0.0"))  # used again: now the most recent
    bundles.get(pointer(spec, "1.2.0"))  # over keep=2: 1.1.0, the least recently used, goes
    bundles.get(pointer(spec, "1.0.0"))
    assert loads == ["1.0.0", "1.1.0", "1.2.0"]
    bundles.get(pointer(spec, "1.1.0"))
    assert loads[-1] == "1.1.0" and len(loads) == 4
