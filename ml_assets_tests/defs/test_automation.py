"""Automation that only does what changed, survives a killed process, serializes concurrent backfills, and
retrains with something that can differ when live quality drops."""
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from ml_assets import cli
from ml_assets.core import landing as L
from ml_assets.core.spec import load_spec
from ml_assets.core.storage import make_path, write_parquet

pytestmark = pytest.mark.cost(40)  # seconds alone (see conftest)

ROOT = Path(__file__).resolve().parents[2]
EXE = str(Path(sys.executable).with_name("ml-assets"))


def key(name):
    return dg.AssetKey(["flights", name])


def _env(tmp, mp):
    (tmp / "dagster").mkdir(parents=True)
    shutil.copy(ROOT / "dagster.yaml", tmp / "dagster" / "dagster.yaml")
    for k, v in {"ML_ASSETS_HOME": str(tmp / "home"), "DAGSTER_HOME": str(tmp / "dagster"),
                 "ML_ASSETS_FAMILIES": "xgboost", "ML_ASSETS_WINDOW_DAYS": "2"}.items():
        mp.setenv(k, v)
    return make_path(str(tmp / "home"))


def _ticker(name: str, instance: dg.DagsterInstance):
    """One evaluation of the named sensor of the definitions, as the daemon would run it: tick(cursor)."""
    from ml_assets.definitions import build_definitions
    from ml_assets.resources.storage import StorageRoot

    defs = build_definitions()
    sensor = next(s for s in defs.sensors if s.name == name)
    storage = StorageRoot(root=os.environ["ML_ASSETS_HOME"])
    return lambda cursor: sensor.evaluate_tick(dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"storage": storage}, definitions=defs))


def _materializations(instance, asset: str) -> dict[str, int]:
    """partition -> number of materializations so far."""
    out: dict[str, int] = {}
    for record in instance.fetch_materializations(key(asset), limit=10_000).records:
        out[record.partition_key] = out.get(record.partition_key, 0) + 1
    return out


@pytest.fixture(scope="module")
def caught_up(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    root = _env(tmp_path_factory.mktemp("caching"), mp)
    L.land_days(root, load_spec(), dt.date(2013, 1, 1), dt.date(2013, 1, 5))
    try:
        assert cli.main(["catchup"]) == 0
        yield root
    finally:
        mp.undo()


def test_a_new_landing_sensor_starts_from_what_the_instance_records(caught_up):
    """A fresh daemon's landing sensor (no cursor) reports nothing already reported, then only a new delivery."""
    with dg.DagsterInstance.get() as instance:
        tick = _ticker("flights_landing_sensor", instance)
        first = tick(None)
        assert first.asset_events == [] and json.loads(first.cursor)  # seeded from the instance, not empty
        # a redelivery (identical, so the other tests see no change): a new file version to report
        L.land_days(caught_up, load_spec(), dt.date(2013, 1, 2), dt.date(2013, 1, 2), force=True, sources=["weather"])
        second = tick(first.cursor)
        assert [(e.asset_key, e.partition) for e in second.asset_events] == [(key("landing_weather"), "2013-01-02")]


def test_an_identical_redelivery_retrains_nothing(caught_up):
    spec = load_spec()
    with dg.DagsterInstance.get() as instance:
        runs = len(instance.get_runs())
        L.land_days(caught_up, spec, dt.date(2013, 1, 3), dt.date(2013, 1, 3), force=True, sources=["schedule"])
        assert cli.main(["catchup"]) == 0
        assert len(instance.get_runs()) == runs  # the new file's data version is the old one's: nothing reran


def test_a_changed_day_retrains_exactly_the_windows_that_contain_it(caught_up):
    spec = load_spec()
    with dg.DagsterInstance.get() as instance:
        before = _materializations(instance, "training_set")
        path = L.latest_file(caught_up, spec, "schedule", "2013-01-03")
        changed = pl.read_parquet(path.read_bytes()).slice(1)  # upstream dropped one flight
        write_parquet(path.parent / f"v{int(path.stem[1:]) + 1:04d}.parquet", changed)
        assert cli.main(["catchup"]) == 0
        after = _materializations(instance, "training_set")
    retrained = {d for d in after if after[d] > before.get(d, 0)}
    # Windows of 2 days: 01-04 (01-02..03) and 01-05 (01-03..04) contain 01-03. No feature of another day reads
    # 01-03 (the flights spec has no delay history), so 01-06 (01-04..05) and nothing before the change reruns.
    assert retrained == {"2013-01-04", "2013-01-05"}


def test_a_killed_catchup_is_recovered_and_the_next_day_goes_through(tmp_path, monkeypatch):
    root = _env(tmp_path, monkeypatch)
    spec = load_spec()
    L.land_as_of(root, spec, dt.datetime(2013, 1, 3, 18, 0))
    proc = subprocess.Popen([EXE, "catchup"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        with dg.DagsterInstance.get() as instance:
            deadline = time.time() + 120
            while time.time() < deadline and not any(r.status == dg.DagsterRunStatus.STARTED
                                                     for r in instance.get_runs()):
                time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    with dg.DagsterInstance.get() as instance:
        left = [r.run_id for r in instance.get_runs() if r.status == dg.DagsterRunStatus.STARTED]
    assert left, "the kill did not leave a run behind (too late?)"
    L.land_as_of(root, spec, dt.datetime(2013, 1, 4, 18, 0))  # and the next day arrives
    assert cli.main(["catchup"]) == 0
    with dg.DagsterInstance.get() as instance:
        statuses = {r.run_id: r.status for r in instance.get_runs()}
        assert all(statuses[r] == dg.DagsterRunStatus.FAILURE for r in left)
        assert not [r for r, s in statuses.items() if s == dg.DagsterRunStatus.STARTED]
        assert "2013-01-05" in instance.get_materialized_partitions(key("batch_predictions"))
        assert "2013-01-03" in instance.get_materialized_partitions(key("labelled_features"))


def test_overlapping_backfills_serialize_and_store_what_one_backfill_stores(tmp_path, monkeypatch):
    root = _env(tmp_path, monkeypatch)
    L.land_days(root, load_spec(), dt.date(2013, 1, 1), dt.date(2013, 1, 4))
    args = ["backfill", "--start", "2013-01-01", "--end", "2013-01-04", "--assets", "data", "--wait"]
    first = subprocess.Popen([EXE, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1.5)
    second = subprocess.Popen([EXE, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out1, _ = first.communicate(timeout=300)
    out2, _ = second.communicate(timeout=300)
    assert first.returncode == 0, out1
    assert second.returncode == 0 and "waiting:" in out2 and "nothing to do" in out2, out2
    assert "Traceback" not in out1 + out2 and "IntegrityError" not in out1 + out2
    with dg.DagsterInstance.get() as instance:
        assert len(instance.get_backfills()) == 1
        # data_profile of 01-04 compared the day with all three trailing days (none was missing when it ran)
        record = instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=key("data_profile"), asset_partitions=["2013-01-04"]), limit=1).records[0]
        assert record.asset_materialization.metadata["reference_days"].value == 3


def test_a_live_drop_asks_for_a_retrain_that_can_differ_then_alerts_once(tmp_path, monkeypatch):
    _env(tmp_path, monkeypatch)

    with dg.DagsterInstance.get() as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization(key("labelled_features"), partition="2013-01-20"))
        tick = _ticker("flights_retrain_on_degradation", instance)
        # A failure from before the sensor's first tick is history: the first tick only sets the baseline.
        instance.report_runless_asset_event(dg.AssetCheckEvaluation(
            asset_key=key("live_performance"), check_name="live_auc_drop", passed=False, partition="2013-01-19",
            severity=dg.AssetCheckSeverity.WARN))
        baseline = tick(None)
        assert not baseline.run_requests
        cursor, seen = baseline.cursor, []
        for day in ("2013-01-20", "2013-01-21", "2013-01-22", "2013-01-23"):
            instance.report_runless_asset_event(dg.AssetCheckEvaluation(
                asset_key=key("live_performance"), check_name="live_auc_drop", passed=False, partition=day,
                severity=dg.AssetCheckSeverity.WARN))
            result = tick(cursor)
            cursor = result.cursor
            seen.append([(r.tags["ml_assets/retrain_strategy"], r.run_config) for r in result.run_requests])
    assert [s[0][0] if s else None for s in seen] == ["recent_window", "tuned", None, None]
    recent, tuned = seen[0][0][1]["ops"], seen[1][0][1]["ops"]
    assert recent["flights__training_set"]["config"]["recent_days"] < 28
    assert tuned["flights__xgboost_model"]["config"]["tune_trials"] > 0
    sent = [json.loads(line) for line in (make_path(os.environ["ML_ASSETS_HOME"]) / "alerts" / "alerts.jsonl")
            .read_text().splitlines()]
    assert [a["kind"] for a in sent] == ["retrain_exhausted"]  # once, not every tick


def test_a_check_failing_day_after_day_is_one_alert_per_episode(tmp_path, monkeypatch):
    """Days 1-3 fail, day 4 passes, day 5 fails: two alerts (days 1 and 5), not four; each day's failure is
    still recorded on its partition. (Before, the sensor sent one alert per failed evaluation.)"""
    _env(tmp_path, monkeypatch)
    from ml_assets.defs.days import day_check_spec

    failing = {"2013-01-01", "2013-01-02", "2013-01-03", "2013-01-05"}
    days = dg.DailyPartitionsDefinition("2013-01-01", end_date="2013-01-06")

    @dg.asset(key=key("toy"), partitions_def=days,
              check_specs=[day_check_spec("steady", asset=key("toy"), partitions_def=days)])
    def toy(context):
        return dg.MaterializeResult(check_results=[dg.AssetCheckResult(
            check_name="steady", passed=context.partition_key not in failing, severity=dg.AssetCheckSeverity.WARN)])

    with dg.DagsterInstance.get() as instance:
        tick = _ticker("flights_check_failure_alert", instance)
        cursor = tick(None).cursor
        for day in ("2013-01-01", "2013-01-02", "2013-01-03", "2013-01-04", "2013-01-05"):
            assert dg.materialize([toy], instance=instance, partition_key=day).success
            cursor = tick(cursor).cursor
        failed_days = {r.partition for r in instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(key("toy"), "steady"), limit=10) if r.status.value == "FAILED"}
    assert failed_days == failing
    sent = [json.loads(line) for line in (make_path(os.environ["ML_ASSETS_HOME"]) / "alerts" / "alerts.jsonl")
            .read_text().splitlines()]
    assert [(a["check"], a["partition"]) for a in sent] == [("steady", "2013-01-01"), ("steady", "2013-01-05")]
