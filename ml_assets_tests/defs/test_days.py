"""Per-day truth in range runs: one bad day refused on its own partition while its neighbours go on, every check
recorded on its own day, and a range run storing exactly what day-by-day runs store."""
import datetime as dt
import json
import shutil

import dagster as dg
import polars as pl
import pytest

from ml_assets.core import landing as L
from ml_assets.core.spec import load_spec
from ml_assets.core.storage import make_path, write_parquet
from ml_assets_tests.conftest import Pipeline, materialize_range

pytestmark = pytest.mark.cost(22)  # seconds alone (see conftest)

DAYS = [f"2013-01-0{d}" for d in range(1, 7)]
BAD = "2013-01-04"  # its weather went dark: every reading null
WEATHER = ["temp", "dewp", "humid", "wind_speed", "precip", "visib"]


def _home(tmp, name, monkeypatch) -> Pipeline:
    home, dagster_home = tmp / name / "home", tmp / name / "dagster"
    dagster_home.mkdir(parents=True)
    shutil.copy("dagster.yaml", dagster_home / "dagster.yaml")
    spec = load_spec()
    root = make_path(str(home))
    L.land_days(root, spec, dt.date(2013, 1, 1), dt.date(2013, 1, 6))
    path = L.latest_file(root, spec, "weather", BAD)
    blank = pl.read_parquet(path.read_bytes()).with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in WEATHER)
    write_parquet(path.parent / "v0002.parquet", blank)  # a re-delivery: landed files are never modified
    return Pipeline(str(home), str(dagster_home), dt.date(2013, 1, 1), dt.date(2013, 1, 6))


@pytest.fixture(scope="module")
def homes(tmp_path_factory):
    """The same six days with a bad day, once as one range run and once day by day."""
    mp = pytest.MonkeyPatch()
    tmp = tmp_path_factory.mktemp("days")
    out = {}
    try:
        for mode in ("range", "daily"):
            p = _home(tmp, mode, mp)
            mp.setenv("ML_ASSETS_HOME", p.home)
            mp.setenv("DAGSTER_HOME", p.dagster_home)
            mp.setenv("ML_ASSETS_FAMILIES", "xgboost")
            mp.setenv("ML_ASSETS_WINDOW_DAYS", "3")
            from ml_assets.definitions import build_definitions

            defs = build_definitions()
            with p.instance() as instance:
                if mode == "range":
                    assert materialize_range(defs, instance, DAYS[0], DAYS[-1]).success
                else:
                    for day in DAYS:
                        assert materialize_range(defs, instance, day, day).success
            out[mode] = p
        yield out
    finally:
        mp.undo()


def key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["flights", name])


def _status(instance, asset: str, day: str) -> str:
    record = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key(asset), asset_partitions=[day]),
                                             limit=1).records[0]
    return record.asset_materialization.metadata["status"].value


def test_a_bad_day_is_refused_on_its_own_partition_and_its_neighbours_go_on(homes):
    with homes["range"].instance() as instance:
        assert _status(instance, "raw_weather", BAD) == "refused"
        for asset in ("features", "labelled_features", "batch_predictions", "live_performance"):
            assert _status(instance, asset, BAD) == "refused", asset
            for day in ("2013-01-03", "2013-01-05", "2013-01-06"):
                assert _status(instance, asset, day) == "ok", (asset, day)
        # the window of 01-05 (01-02..01-04) skips the refused day as a hole, and the chain goes on
        assert _status(instance, "training_set", "2013-01-05") == "ok"
        record = instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=key("training_set"), asset_partitions=["2013-01-05"]), limit=1).records[0]
        assert record.asset_materialization.metadata["refused_days"].value == 1
        # the refusal names the asset, the day and the rule that refused it
        reason = json.loads((homes["range"].root / "assets/flights/champion/2013-01-04.json").read_bytes())
        assert "raw_weather 2013-01-04: refused by contract" in reason["value"]["reason"]


def test_every_check_evaluation_is_recorded_on_its_own_day(homes):
    with homes["range"].instance() as instance:
        contract = dg.AssetCheckKey(key("raw_weather"), "contract")
        infos = {i.partition_key: i for i in instance.event_log_storage.get_asset_check_partition_info([contract])}
        assert set(infos) == set(DAYS)
        from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus as S

        assert infos[BAD].latest_execution_status == S.FAILED
        assert {d for d, i in infos.items() if i.latest_execution_status == S.SUCCEEDED} == set(DAYS) - {BAD}
        # a refused day's consumers do not evaluate their own checks on data they never saw (the UI shows the
        # planned check as skipped)
        features = dg.AssetCheckKey(key("features"), "contract")
        infos = {i.partition_key: i for i in instance.event_log_storage.get_asset_check_partition_info([features])}
        executed = {d for d, i in infos.items() if i.latest_execution_status in (S.SUCCEEDED, S.FAILED)}
        assert executed == set(DAYS) - {BAD}
        assert infos[BAD].latest_execution_status == S.PLANNED


def _stored(p: Pipeline) -> dict[str, object]:
    """Every stored value, without what is measured or run-specific (latency, MLflow run ids, lineage)."""
    out = {}
    base = p.root / "assets" / "flights"
    for folder in (f for f in base.iterdir() if f.is_dir()):
        for f in folder.iterdir():
            name = f"{folder.name}/{f.name}"
            if f.name.endswith(".parquet"):
                data = f.read_bytes()
                import io

                out[name] = (pl.read_parquet_metadata(io.BytesIO(data)).get("ml_assets.refused"),
                             pl.read_parquet(io.BytesIO(data)))
            else:
                value = json.loads(f.read_bytes())
                if isinstance(value.get("value"), dict):
                    value = {k: v for k, v in value["value"].items()
                             if k not in ("single_row_p95_ms", "manifest_sha256", "registry_version", "decision")}
                out[name] = value
    for folder in (p.root / "models" / "flights").iterdir():
        for day in folder.iterdir():
            out[f"models/{folder.name}/{day.name}"] = {f.name: f.read_bytes() for f in day.iterdir()
                                                      if f.name in ("model.ubj", "model_spec.json", "model.onnx")}
    return out


def test_a_range_run_stores_what_day_by_day_runs_store(homes):
    ranged, daily = _stored(homes["range"]), _stored(homes["daily"])
    assert set(ranged) == set(daily)
    differ = []
    for name in ranged:
        a, b = ranged[name], daily[name]
        if isinstance(a, tuple):
            same = a[0] == b[0] and a[1].equals(b[1])
        else:
            same = a == b
        if not same:
            differ.append(name)
    assert differ == []
