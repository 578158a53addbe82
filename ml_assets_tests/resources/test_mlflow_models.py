"""Registered bundles are MLflow models a user can load: after the 10-day pipeline, and on a fresh store.

The pipeline's store is read from a copy. The copy's experiment still points at the original home's artifacts
(MLflow stores absolute artifact locations), so nothing here registers new models into it: the tests that
write register into a fresh store of their own, from the pipeline's bundles (read only).
"""
import hashlib
import os
import shutil
from pathlib import Path

import mlflow
import numpy as np
import onnx
import polars as pl
import pytest

from ml_assets.core.bundle import BUNDLES_DIR, MANIFEST_FILE, list_bundles, load_bundle
from ml_assets.resources.tracking import CHAMPION_ALIAS, MLflowTracking

pytestmark = pytest.mark.cost(25)  # seconds alone (see conftest)

EXPERIMENT = "ml_assets/flights"


@pytest.fixture(scope="module")
def home(pipeline, tmp_path_factory) -> Path:
    """A copy of the pipeline's home (bundles, assets, MLflow store), made once for the module."""
    copy = tmp_path_factory.mktemp("models") / "home"
    shutil.copytree(pipeline.home, copy)
    return copy


@pytest.fixture(scope="module")
def tracking(home) -> MLflowTracking:
    t = MLflowTracking(tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}", experiment=EXPERIMENT)
    t._setup()  # also points mlflow's global URI (models:/ URIs) at the copy
    return t


@pytest.fixture
def use(tracking):
    mlflow.set_tracking_uri(tracking.tracking_uri)
    return tracking


def lines(home: Path) -> list[str]:
    return sorted(p.name for p in (home / BUNDLES_DIR).iterdir())


def feature_rows(home: Path) -> pl.DataFrame:
    """Real feature rows (the last day's stored features), some made missing: an unknown category, NaNs."""
    day = sorted((home / "assets" / "flights" / "features").glob("*.parquet"))[-1]
    frame = pl.read_parquet(day)
    every = pl.int_range(pl.len()) % 11 == 0
    return frame.with_columns(pl.when(every).then(None).otherwise(pl.col("carrier")).alias("carrier"),
                              pl.when(every).then(pl.lit("ZZ")).otherwise(pl.col("dest")).alias("dest"),
                              pl.when(every).then(float("nan")).otherwise(pl.col("temp")).alias("temp"))


def test_the_champion_alias_loads_as_a_pyfunc_that_scores_like_its_bundle(home, use):
    (holder,) = use.champion_alias(lines(home))  # exactly one line holds the alias
    line, registry_version, semver = holder
    bundle = load_bundle(home / BUNDLES_DIR / line / semver)
    frame = feature_rows(home)
    assert frame.height > 100

    model = mlflow.pyfunc.load_model(f"models:/{line}@{CHAMPION_ALIAS}")
    p = model.predict(frame.to_pandas())  # every stored column; the extra ones are ignored
    assert p.dtype == np.float32 and p.shape == (frame.height,)
    np.testing.assert_allclose(p, bundle.score(frame), rtol=0, atol=1e-6)
    only_inputs = model.predict(frame.select(bundle.input_names).to_pandas())
    np.testing.assert_allclose(only_inputs, p, rtol=0, atol=0)

    # The same version as a graph: the onnx flavor is the bundle's own model.onnx.
    assert mlflow.onnx.load_model(f"models:/{line}@{CHAMPION_ALIAS}") == onnx.load_from_string(bundle.model_bytes)


def test_a_registered_version_shows_its_signature_input_example_and_tags(home, use):
    client = use._client()
    for line in lines(home):
        for semver in list_bundles(home, line):
            (mv,) = client.search_model_versions(f"name='{line}' and tag.semver='{semver}'")
            folder = home / BUNDLES_DIR / line / semver
            bundle = load_bundle(folder)
            assert mv.tags["bundle"] == f"{BUNDLES_DIR}/{line}/{semver}"
            assert mv.tags["manifest_sha256"] == hashlib.sha256((folder / MANIFEST_FILE).read_bytes()).hexdigest()
            assert mv.tags["day"] == bundle.lineage["day"]
            assert mv.run_id == bundle.lineage["mlflow_run_id"]  # the candidate's run holds the model
            assert mv.source.startswith("models:/m-")

    line, version, semver = use.champion_alias(lines(home))[0]
    uri = f"models:/{line}/{version}"
    info = mlflow.models.get_model_info(uri)
    inputs, outputs = info.signature.inputs, info.signature.outputs
    bundle = load_bundle(home / BUNDLES_DIR / line / semver)
    assert inputs.input_names() == bundle.input_names
    assert {c.type.name for c in inputs.inputs} == {"string", "double"}
    assert outputs.input_names() == [bundle.output] and outputs.inputs[0].shape == (-1,)
    assert info.saved_input_example_info["type"] == "dataframe"

    local = mlflow.artifacts.download_artifacts(uri)
    example = mlflow.models.Model.load(local).load_input_example(local)
    assert list(example.columns) == bundle.input_names and len(example) == 5
    np.testing.assert_allclose(mlflow.pyfunc.load_model(local).predict(example),
                               bundle.score(pl.from_pandas(example)), rtol=0, atol=1e-6)
    assert sorted(os.listdir(Path(local) / "artifacts" / "bundle")) == sorted(os.listdir(
        home / BUNDLES_DIR / line / semver))  # every bundle file travels with the model


def test_registering_an_existing_version_again_changes_nothing(home, use):
    client = use._client()
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    before = len(client.search_logged_models([experiment_id]))
    for line in lines(home):
        semver = list_bundles(home, line)[-1]
        bundle = load_bundle(home / BUNDLES_DIR / line / semver)
        (mv,) = client.search_model_versions(f"name='{line}' and tag.semver='{semver}'")
        again = use.register_bundle(line, semver, bundle, run_id=mv.run_id, tags={"day": mv.tags["day"]})
        assert str(again) == str(mv.version)
        assert len(client.search_model_versions(f"name='{line}' and tag.semver='{semver}'")) == 1
    assert len(client.search_logged_models([experiment_id])) == before


def test_every_candidate_run_logs_its_training_set_and_points_back_to_dagster(pipeline, use):
    client = use._client()
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    runs = [r for r in client.search_runs([experiment_id]) if "family" in r.data.tags]
    assert len(runs) >= 2 * 5  # two families, a candidate for most of the ten days
    with pipeline.instance() as instance:
        for run in runs:
            (given,) = run.inputs.dataset_inputs
            tags = run.data.tags
            assert given.dataset.digest == tags["training_data_version"]
            assert given.dataset.name == f"flights-training_set-{tags['partition']}"
            assert {t.key: t.value for t in given.tags} == {"mlflow.data.context": "training"}
            assert f'"num_rows": {int(tags["train_rows"]) + int(tags["valid_rows"])}' in given.dataset.profile
            assert tags["dagster_run"] == use.dagster_run_url(tags["dagster_run_id"])
            assert instance.get_run_by_id(tags["dagster_run_id"]) is not None  # a real Dagster run


def test_the_search_of_a_search_day_is_what_the_next_candidates_train_with(pipeline, use):
    """The pipeline searches on 01-08 (every 7 days from 01-01; 3 trials): that day's and the next candidates
    name the search in their lineage and MLflow tags; the days before train with the dataset's recipe."""
    import json

    params = Path(pipeline.home) / "assets" / "flights" / "xgboost_params"
    searched = json.loads((params / "2013-01-08.json").read_text())["value"]
    assert searched["searched"] and searched["search"]["trials"] == 3
    assert searched["search"]["rule"].startswith("adopt the best trial only if")
    assert json.loads((params / "2013-01-07.json").read_text())["value"]["searched"] is False
    models = Path(pipeline.home) / "models" / "flights" / "xgboost_model"
    lineage = {d: json.loads((models / d / "lineage.json").read_text()) for d in ("2013-01-07", "2013-01-09")}
    assert lineage["2013-01-07"]["params_from"] == "defaults (no search in the last cycles)"
    assert lineage["2013-01-09"]["params_from"] == "2013-01-08"
    client = use._client()
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    (run,) = [r for r in client.search_runs([experiment_id]) if r.data.tags.get("family") == "xgboost"
              and r.data.tags.get("partition") == "2013-01-09"]
    assert run.data.tags["params_from"] == "2013-01-08" and run.data.metrics["search_trials"] == 3


# ------------------------------------------------------------------ a fresh store of our own


@pytest.fixture(scope="module")
def fresh(pipeline, tmp_path_factory) -> MLflowTracking:
    base = tmp_path_factory.mktemp("fresh")
    return MLflowTracking(tracking_uri=f"sqlite:///{base / 'mlflow.db'}", artifact_location=f"file://{base / 'art'}",
                          experiment="ml_assets/fresh")


def bundle_of(pipeline, line_suffix: str, index: int = 0):
    line = next(name for name in lines(Path(pipeline.home)) if name.endswith(line_suffix))
    return line, load_bundle(Path(pipeline.home) / BUNDLES_DIR / line / list_bundles(pipeline.home, line)[index])


def test_registering_twice_or_after_a_crash_logs_one_model(pipeline, fresh):
    mlflow.set_tracking_uri(fresh.tracking_uri)
    line, bundle = bundle_of(pipeline, "xgboost")
    run_id, _ = fresh.log_run("xgboost-candidate", {}, {}, {"dagster_run_id": "r-1"})
    first = fresh.register_bundle(line, bundle.version, bundle, run_id=run_id, tags={"day": "2013-01-05"})
    assert fresh.register_bundle(line, bundle.version, bundle, run_id=run_id, tags={"day": "2013-01-05"}) == first
    client = fresh._client()
    (mv,) = client.search_model_versions(f"name='{line}'")
    assert mv.tags["semver"] == bundle.version and mv.tags["bundle"] == bundle.path and mv.tags["day"] == "2013-01-05"
    assert mv.run_link == fresh.run_url(run_id)
    assert [o.model_id for o in client.get_run(run_id).outputs.model_outputs] == [mv.source[len("models:/"):]]

    # A crash after the model was logged but before the version was created: the retry reuses the model.
    _, newer = bundle_of(pipeline, "xgboost", 1)
    manifest = hashlib.sha256((Path(newer.path) / MANIFEST_FILE).read_bytes()).hexdigest()
    files = {p.name: p.read_bytes() for p in Path(newer.path).iterdir()}
    experiment_id = fresh._setup()[1]
    logged = fresh._log_bundle_model(client, experiment_id, run_id, line, newer.version, newer, files,
                                     {"manifest_sha256": manifest, "day": "2013-01-06"}, None)
    second = fresh.register_bundle(line, newer.version, newer, run_id=run_id, tags={"day": "2013-01-06"})
    assert int(second) == int(first) + 1
    assert client.get_model_version(line, second).source == f"models:/{logged}"
    assert len(client.search_logged_models([experiment_id])) == 2

    model = mlflow.pyfunc.load_model(f"models:/{line}/{second}")
    rows = feature_rows(Path(pipeline.home)).head(50)
    np.testing.assert_allclose(model.predict(rows.to_pandas()), newer.score(rows), rtol=0, atol=1e-6)


def test_set_champion_moves_the_alias_and_removes_it_from_the_other_lines(pipeline, fresh):
    mlflow.set_tracking_uri(fresh.tracking_uri)
    registered = {}
    for suffix in ("xgboost", "logistic"):
        line, bundle = bundle_of(pipeline, suffix)
        run_id, _ = fresh.log_run(f"{suffix}-for-champion", {}, {}, {})
        registered[line] = (bundle.version, fresh.register_bundle(line, bundle.version, bundle, run_id=run_id,
                                                                  tags={}))
    both = sorted(registered)
    (a, (a_semver, a_version)), (b, (b_semver, b_version)) = sorted(registered.items())

    assert fresh.set_champion(a, a_semver, both) == a_version
    assert fresh.champion_alias(both) == [(a, a_version, a_semver)]
    assert fresh.set_champion(a, a_semver, both) == a_version  # again: nothing changes
    assert fresh.champion_alias(both) == [(a, a_version, a_semver)]

    assert fresh.set_champion(b, b_semver, both) == b_version
    assert fresh.champion_alias(both) == [(b, b_version, b_semver)]
    client = fresh._client()
    assert CHAMPION_ALIAS not in client.get_registered_model(a).aliases
    assert fresh.champion_alias(both + ["never_registered"]) == [(b, b_version, b_semver)]

    with pytest.raises(LookupError, match="9.9.9"):
        fresh.set_champion(a, "9.9.9", both)
    assert fresh.champion_alias(both) == [(b, b_version, b_semver)]  # a failed move leaves the alias alone
