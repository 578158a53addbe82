"""``ml-assets`` as a user meets it: one-line errors with distinct exit codes, landing on the timeline, a
backfill that names its refused days, and a Ctrl-C/SIGTERM that stops cleanly and resumes."""
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from ml_assets import cli
from ml_assets.core import landing as L
from ml_assets.core.spec import load_spec
from ml_assets.core.storage import make_path, write_parquet

pytestmark = pytest.mark.cost(30)  # seconds alone (see conftest)

ROOT = Path(__file__).resolve().parents[1]
EXE = str(Path(sys.executable).with_name("ml-assets"))


@pytest.fixture
def home(tmp_path, monkeypatch):
    (tmp_path / "dagster").mkdir()
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster" / "dagster.yaml")
    monkeypatch.setenv("ML_ASSETS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    monkeypatch.setenv("ML_ASSETS_FAMILIES", "xgboost")
    monkeypatch.setenv("ML_ASSETS_WINDOW_DAYS", "3")
    monkeypatch.delenv("ML_ASSETS_ENV", raising=False)
    return tmp_path


def _run(*args, env=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=timeout, env=env or os.environ.copy())


MISTAKES = [
    (["land", "--start", "2012-12-30", "--end", "2013-01-01"], {}, 2, "outside the flights feed"),
    (["land", "--start", "9999-12-31", "--end", "9999-12-31"], {}, 2, "outside the flights feed"),
    (["land", "--start", "2013-01-01", "--end", "2013-01-02"], {"ML_ASSETS_WINDOW_DAYS": "abc"}, 2,
     "ML_ASSETS_WINDOW_DAYS='abc' is not a whole number"),
    (["status"], {"ML_ASSETS_ENV": "prod"}, 2, "ML_ASSETS_ENV must be 'local' or 'production'"),
    (["status"], {"ML_ASSETS_DATASET": "no-such"}, 2, "no such file and no shipped spec"),
    (["rollback"], {}, 5, "no champion yet"),
    (["backfill", "--start", "2013-01-01", "--end", "2013-01-02"], {}, 2, "have not landed"),
]


def _one_line(stderr: str, says: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in stderr, stderr


@pytest.mark.parametrize("args,env,code,says", MISTAKES)
def test_known_mistakes_are_one_line_with_a_distinct_exit_code(home, capsys, monkeypatch, args, env, code, says):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert cli.main(args) == code
    _one_line(capsys.readouterr().err, says)
    assert not (home / "home" / "landing").exists() or args[0] != "land"


def test_the_real_process_prints_only_that_line(home):
    """What a shell shows (imports, logging and warnings included), for one mistake of each exit code."""
    for args, env, code, says in (MISTAKES[0], MISTAKES[5]):
        result = _run(*args, env={**os.environ, **env})
        assert result.returncode == code, result.stderr
        _one_line(result.stderr, says)


@pytest.mark.parametrize("args", [["demo", "--days", "0"], ["demo", "--days", "-3"], ["serve", "--port", "99999"],
                                  ["land", "--as-of", "2013-01-02 18:00"]])
def test_bad_arguments_are_refused_before_anything_runs(home, capsys, args):
    with pytest.raises(SystemExit) as refused:
        cli.main(args)
    err = capsys.readouterr().err
    assert refused.value.code == 2 and "Traceback" not in err and "error:" in err


def test_debug_shows_the_traceback(home):
    result = _run("--debug", "land", "--start", "2012-12-30", "--end", "2013-01-01")
    assert result.returncode != 0 and "Traceback" in result.stderr and "OutOfRange" in result.stderr


def test_land_as_of_delivers_exactly_what_upstream_had_delivered(home):
    assert cli.main(["land", "--as-of", "2013-01-02T06:00"]) == 0
    root, spec = make_path(str(home / "home")), load_spec()
    assert L.landed_days(root, spec, "schedule") == [dt.date(2013, 1, 1), dt.date(2013, 1, 2)]
    assert L.landed_days(root, spec, "outcomes") == [dt.date(2013, 1, 1)]


def test_status_ignores_empty_landings(home, capsys):
    root, spec = make_path(str(home / "home")), load_spec()
    L.land_days(root, spec, dt.date(2013, 1, 1), dt.date(2013, 1, 2))
    empty = L.source_rows(spec, "schedule", dt.date(2013, 1, 3)).head(0)
    write_parquet(L.day_dir(root, spec, "schedule", dt.date(2013, 1, 3)) / "v0001.parquet", empty)
    assert cli.main(["status"]) == 0
    assert "newest landed 2013-01-02" in capsys.readouterr().out


def _blank_weather(home, day: dt.date) -> None:
    root, spec = make_path(str(home / "home")), load_spec()
    path = L.latest_file(root, spec, "weather", day)
    write_parquet(path.parent / "v0002.parquet", pl.read_parquet(path.read_bytes()).head(0))


def test_a_backfill_names_its_refused_day_and_exits_non_zero(home):
    root, spec = make_path(str(home / "home")), load_spec()
    L.land_days(root, spec, dt.date(2013, 1, 1), dt.date(2013, 1, 3))
    _blank_weather(home, dt.date(2013, 1, 3))
    result = _run("backfill", "--start", "2013-01-01", "--end", "2013-01-03", "--assets", "data", "--wait",
                  timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "days: 2 processed, 1 refused, 0 not attempted" in result.stdout
    assert "2013-01-03  refused: upstream" in result.stdout and "raw_weather 2013-01-03: refused by contract" in \
        result.stdout
    # the rerun resumes: nothing is left to do
    again = _run("backfill", "--start", "2013-01-01", "--end", "2013-01-03", "--assets", "data", "--wait")
    assert "nothing to do" in again.stdout


def test_sigterm_stops_a_backfill_cleanly_and_a_rerun_resumes(home):
    root, spec = make_path(str(home / "home")), load_spec()
    L.land_days(root, spec, dt.date(2013, 1, 1), dt.date(2013, 1, 10))
    proc = subprocess.Popen([EXE, "backfill", "--start", "2013-01-01", "--end", "2013-01-10", "--wait"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # wait until the run is under way
            if list((home / "home").glob("assets/flights/features/*.parquet")):
                break
            time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGTERM)
        started = time.time()
        out, _ = proc.communicate(timeout=60)
        stopped_in = time.time() - started
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, out
    assert "interrupted" in out
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        assert all(r.status in (dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.SUCCESS,
                                dg.DagsterRunStatus.FAILURE) for r in instance.get_runs())
        statuses = [r.status for r in instance.get_runs()]
        assert dg.DagsterRunStatus.CANCELED in statuses, statuses  # the run under way was stopped, not finished
    assert not list((home / "home").rglob("*.tmp")), "a half-written file was left behind"
    rerun = _run("backfill", "--start", "2013-01-01", "--end", "2013-01-10", "--assets", "data", "--wait",
                 timeout=300)
    assert rerun.returncode in (0, 1) and "days:" in rerun.stdout, rerun.stdout + rerun.stderr
    assert stopped_in < 30
