"""The daemon path itself: a real ``dagster-daemon run`` on a temp instance executes an ``ml-assets backfill``
(the backfill daemon) and then carries a newly landed day through automation (the automation sensor's own
backfills and runs). Every check evaluation of those runs is recorded on its own day, runs say which sensor
started them, and the day's predictions come from the champion decided two days before."""
import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from ml_assets import cli
from ml_assets.core import landing as L
from ml_assets.core.spec import load_spec
from ml_assets.core.storage import make_path
from ml_assets_tests.processes import stop_process_group, tail

pytestmark = pytest.mark.cost(60)  # seconds alone (see conftest)

ROOT = Path(__file__).resolve().parents[2]
# Per wait: a wait fails only on a real stall (each run is a process of its own, slow to start under contention).
TIMEOUT = 420
# ``dagster-daemon`` itself (its own CLI and daemons), with Dagster's default daemon interval (a module constant, not
# a setting: the 30 s the backfill daemon sleeps between iterations) made 3 s: the test waits for what the daemon
# does, not for its sleep.
DAGSTER_DAEMON = ("import sys; import dagster._daemon.controller as c; c.DEFAULT_DAEMON_INTERVAL_SECONDS = 3; "
                  "from dagster._daemon.cli import main; sys.argv[0] = 'dagster-daemon'; sys.exit(main())")


def key(name):
    return dg.AssetKey(["flights", name])


@pytest.fixture
def env(tmp_path, monkeypatch):
    (tmp_path / "dagster").mkdir()
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster" / "dagster.yaml")
    values = {"ML_ASSETS_HOME": str(tmp_path / "home"), "DAGSTER_HOME": str(tmp_path / "dagster"),
              "ML_ASSETS_FAMILIES": "xgboost", "ML_ASSETS_WINDOW_DAYS": "3", "ML_ASSETS_EXECUTOR": "in_process",
              "ML_ASSETS_SENSOR_INTERVAL_SECONDS": "2", "MLFLOW_TRACKING_URI": "",
              "PYTHONPATH": str(ROOT)}
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return {**os.environ, **values}


def _wait(predicate, what: str, daemon, log: Path, timeout: float = TIMEOUT) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if daemon.poll() is not None:
            pytest.fail(f"dagster-daemon exited while waiting for {what}:\n{tail(log)}")
        time.sleep(2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}:\n{tail(log)}")


def _evaluations(instance, run_ids):
    out = []
    for run_id in run_ids:
        for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION,
                                                   limit=10_000).records:
            out.append(record.event_log_entry.dagster_event.event_specific_data)
    return out


def _ticks(instance, sensor: str) -> list:
    from dagster._core.scheduler.instigation import InstigatorType

    states = [s for s in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
              if s.instigator_name == sensor]
    return [t for s in states for t in instance.get_ticks(s.instigator_origin_id, s.selector_id)]


def test_the_daemon_executes_backfills_and_automation_with_per_day_truth(env, tmp_path):
    spec = load_spec()
    root = make_path(env["ML_ASSETS_HOME"])
    L.land_days(root, spec, dt.date(2013, 1, 1), dt.date(2013, 1, 3))
    assert cli.main(["backfill", "--start", "2013-01-01", "--end", "2013-01-03"]) == 0  # registered, not executed
    log = tmp_path / "daemon.log"
    with open(log, "w") as out:
        daemon = subprocess.Popen([sys.executable, "-c", DAGSTER_DAEMON, "run", "-w", str(ROOT / "workspace.yaml")],
                                  cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with dg.DagsterInstance.get() as instance:
            backfill = instance.get_backfills()[0]
            # The backfill daemon records the backfill's end one iteration after its last run: the evening of 01-03
            # does not wait for that, it is checked at the end.
            _wait(lambda: "2013-01-03" in instance.get_materialized_partitions(key("batch_predictions")),
                  "the backfill's last day", daemon, log)

            # the evening of 01-03: upstream delivers 01-04's schedule and weather; automation (the daemon's
            # sensor) predicts 01-04 with the champion decided on 01-02
            L.land_days(root, spec, dt.date(2013, 1, 4), dt.date(2013, 1, 4), sources=["schedule", "weather"])
            _wait(lambda: "2013-01-04" in instance.get_materialized_partitions(key("batch_predictions")),
                  "automation to predict 2013-01-04", daemon, log)
            automated = [r for r in instance.get_runs() if r.tags.get("dagster/sensor_name") == "flights_automation"
                         or r.tags.get("dagster/from_automation_condition")]
            assert automated, "no run attributed to the automation sensor"
            assert all(e.partition is not None for e in _evaluations(instance, [r.run_id for r in automated]))
            # the daemon's landing sensor started from what the CLI had reported (its first tick has no cursor):
            # 01-01's delivery is reported once, 01-04's once, none twice
            for day in ("2013-01-01", "2013-01-04"):
                reports = instance.fetch_materializations(dg.AssetRecordsFilter(
                    asset_key=key("landing_schedule"), asset_partitions=[day]), limit=10).records
                assert len(reports) == 1, (day, len(reports))
            # the check-failure sensor (one alert per episode) ran on the daemon over these runs without an error
            _wait(lambda: len(_ticks(instance, "flights_check_failure_alert")) >= 2, "check-failure sensor ticks",
                  daemon, log)
            failed = [t for t in _ticks(instance, "flights_check_failure_alert") if t.status.value == "FAILURE"]
            assert not failed, [t.error for t in failed]

            # the morning of 01-05: 01-04's outcomes; automation decides champion 01-04, and only that day (Dagster
            # 1.13 re-requested D-1 with every champion D until the champion became subsettable)
            L.land_days(root, spec, dt.date(2013, 1, 4), dt.date(2013, 1, 4), sources=["outcomes"])
            _wait(lambda: "2013-01-04" in instance.get_materialized_partitions(key("champion")),
                  "automation to decide the champion of 2013-01-04", daemon, log)
            decided = [e.dagster_event.partition for r in instance.get_runs()
                       for e in instance.all_logs(r.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
                       if e.dagster_event.asset_key == key("champion")]
            assert sorted(decided) == ["2013-01-01", "2013-01-02", "2013-01-03", "2013-01-04"], decided

            _wait(lambda: instance.get_backfill(backfill.backfill_id).status.value.startswith("COMPLETED"),
                  "the backfill's end", daemon, log)
            assert instance.get_backfill(backfill.backfill_id).status.value == "COMPLETED_SUCCESS"
            runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill.backfill_id}))
            evaluations = _evaluations(instance, [r.run_id for r in runs])
            assert evaluations and all(e.partition is not None for e in evaluations)
            assert "2013-01-03" in instance.get_materialized_partitions(key("champion"))
    finally:
        stop_process_group(daemon)
