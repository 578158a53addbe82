"""Recovery after killed processes: a run left STARTED by a SIGKILLed process is failed, nothing else is touched;
temp leftovers of killed writers are swept, nothing else is."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest

from ml_assets.ops.recovery import (
    OWNER_HOST_TAG,
    OWNER_PID_TAG,
    OWNER_STARTED_TAG,
    RecoveryReport,
    fail_dead_runs,
    orphaned_backfills,
    owner_tags,
    process_alive,
    recover,
    sweep_temp_files,
)
from ml_assets_tests.processes import stop_process_group, tail

REPO = Path(__file__).resolve().parents[2]

# A process that executes a run itself, tagged as its owner, and hangs in the middle of it.
STUCK_RUN = textwrap.dedent("""
    import os, sys, time
    import dagster as dg
    from ml_assets.ops.recovery import owner_tags

    home, never = sys.argv[1], sys.argv[2]

    @dg.op
    def wait_forever(context):
        print("started", context.run_id, flush=True)
        while not os.path.exists(never):
            time.sleep(0.1)

    @dg.job
    def stuck():
        wait_forever()

    with dg.DagsterInstance.local_temp(home) as instance:
        stuck.execute_in_process(instance=instance, tags=owner_tags())
""")


@dg.op
def noop() -> None:
    pass


@dg.job
def tiny():
    noop()


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "dagster_home").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "dagster_home")) as inst:
        yield inst


def _wait_for_line(proc: subprocess.Popen, log: Path, prefix: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines() if log.exists() else []:
            if line.startswith(prefix):
                return line
        assert proc.poll() is None, f"child exited with {proc.returncode} before {prefix!r}:\n{tail(log)}"
        time.sleep(0.05)
    raise AssertionError(f"no {prefix!r} from the child within {timeout} s:\n{tail(log)}")


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _run(instance, tags: dict[str, str], status=dg.DagsterRunStatus.STARTED) -> str:
    return instance.create_run_for_job(tiny, status=status, tags=tags).run_id


def _status(instance, run_id: str) -> dg.DagsterRunStatus:
    return instance.get_run_by_id(run_id).status


def test_process_alive():
    assert process_alive(os.getpid())
    assert not process_alive(_dead_pid())
    assert not process_alive(0) and not process_alive(-1)
    assert process_alive(1)  # init: not ours, PermissionError or not, it exists


def test_a_killed_process_not_yet_reaped_counts_as_gone():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        assert process_alive(child.pid)
        os.killpg(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while process_alive(child.pid) and time.monotonic() < deadline:  # a zombie until we wait() for it
            time.sleep(0.02)
        assert not process_alive(child.pid)
        assert child.poll() is not None  # only now reaped
    finally:
        stop_process_group(child, grace_seconds=1)


def test_owner_tags_name_this_process():
    tags = owner_tags()
    assert tags[OWNER_PID_TAG] == str(os.getpid())
    assert tags[OWNER_HOST_TAG]


def test_run_of_a_sigkilled_process_is_failed(tmp_path):
    home = tmp_path / "dagster_home"
    log = tmp_path / "child.log"
    home.mkdir()
    with dg.DagsterInstance.local_temp(str(home)) as instance:  # the parent creates the storage first
        with open(log, "w") as out:
            child = subprocess.Popen([sys.executable, "-c", STUCK_RUN, str(home), str(tmp_path / "never")],
                                     cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            run_id = _wait_for_line(child, log, "started ").split()[1]
            assert _status(instance, run_id) == dg.DagsterRunStatus.STARTED
            assert fail_dead_runs(instance) == []  # its owner is alive: not touched
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
        finally:
            stop_process_group(child, grace_seconds=1)

        assert _status(instance, run_id) == dg.DagsterRunStatus.STARTED  # nothing else ever ends it
        assert fail_dead_runs(instance) == [run_id]
        assert _status(instance, run_id) == dg.DagsterRunStatus.FAILURE
        messages = [e.message for e in instance.all_logs(run_id) if e.message]
        expected = f"run {run_id} was left STARTED by process {child.pid}, which is gone: marked failed"
        assert expected in messages
        assert fail_dead_runs(instance) == []


def test_only_runs_of_dead_owners_on_this_host_are_ended(instance):
    dead = _dead_pid()
    host = owner_tags()[OWNER_HOST_TAG]
    live = _run(instance, owner_tags())
    untagged = _run(instance, {})
    elsewhere = _run(instance, {OWNER_PID_TAG: str(dead), OWNER_HOST_TAG: "another-host"})
    # a daemon's run of a backfill a (dead) CLI process started: it inherits the backfill's owner tags, and
    # the run launcher adds the tag it finds its run worker by (internal: imported in the test only)
    from dagster._core.storage.tags import GRPC_INFO_TAG

    launched = _run(instance, {OWNER_PID_TAG: str(dead), OWNER_HOST_TAG: host, GRPC_INFO_TAG: "{}"})
    garbage = _run(instance, {OWNER_PID_TAG: "not-a-pid", OWNER_HOST_TAG: host})
    finished = _run(instance, {OWNER_PID_TAG: str(dead), OWNER_HOST_TAG: host}, dg.DagsterRunStatus.SUCCESS)
    gone = _run(instance, {OWNER_PID_TAG: str(dead), OWNER_HOST_TAG: host})
    starting = _run(instance, {OWNER_PID_TAG: str(dead), OWNER_HOST_TAG: host}, dg.DagsterRunStatus.STARTING)
    # our own pid, but started at another time: the pid was reused by a newer process
    reused = _run(instance, {OWNER_PID_TAG: str(os.getpid()), OWNER_HOST_TAG: host, OWNER_STARTED_TAG: "1"})
    canceling = _run(instance, {OWNER_PID_TAG: str(dead), OWNER_HOST_TAG: host}, dg.DagsterRunStatus.CANCELING)

    assert fail_dead_runs(instance) == [gone, starting, reused, canceling]
    for run_id in (gone, starting, reused):
        assert _status(instance, run_id) == dg.DagsterRunStatus.FAILURE
    assert _status(instance, canceling) == dg.DagsterRunStatus.CANCELED
    for run_id in (live, untagged, elsewhere, launched, garbage):
        assert _status(instance, run_id) == dg.DagsterRunStatus.STARTED
    assert _status(instance, finished) == dg.DagsterRunStatus.SUCCESS
    assert fail_dead_runs(instance) == []


def _add_backfill(instance, tags: dict[str, str]) -> str:
    # Test only: a backfill is built from Dagster's internal PartitionBackfill, as the webserver does.
    from dagster._core.execution.backfill import PartitionBackfill
    from dagster._core.utils import make_new_backfill_id

    @dg.asset(partitions_def=dg.DailyPartitionsDefinition("2013-01-01", end_date="2013-01-05"))
    def daily() -> None:
        pass

    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=make_new_backfill_id(), asset_graph=dg.Definitions(assets=[daily]).resolve_asset_graph(),
        partition_names=["2013-01-01", "2013-01-02"], asset_selection=[daily.key],
        backfill_timestamp=time.time(), tags=tags, dynamic_partitions_store=instance, all_partitions=False,
        title=None, description=None, run_config=None)
    instance.add_backfill(backfill)
    return backfill.backfill_id


def test_backfills_of_dead_owners_are_reported_and_left_requested(instance, tmp_path):
    host = owner_tags()[OWNER_HOST_TAG]
    orphan = _add_backfill(instance, {OWNER_PID_TAG: str(_dead_pid()), OWNER_HOST_TAG: host})
    mine = _add_backfill(instance, owner_tags())
    daemons = _add_backfill(instance, {})

    assert orphaned_backfills(instance) == [orphan]
    report = recover(instance, tmp_path / "storage")
    assert report == RecoveryReport(failed_runs=[], orphaned_backfills=[orphan], removed_temp=[])
    assert report.lines() == [f"backfill {orphan} was started by a process that is gone"]
    for backfill_id in (orphan, mine, daemons):
        assert instance.get_backfill(backfill_id).status.value == "REQUESTED"


# ---------------------------------------------------------------- temp files

OLD = time.time() - 2 * 3600


def _temp(name: str) -> str:
    return f".{name}.{uuid.uuid4().hex}.tmp"


def _age(path: Path, when: float = OLD) -> Path:
    os.utime(path, (when, when), follow_symlinks=False)
    return path


def test_sweep_removes_only_old_temp_leftovers(tmp_path):
    root = tmp_path / "storage"
    days = root / "assets" / "flight_features"
    line = root / "bundles" / "xgboost"
    days.mkdir(parents=True)
    line.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()

    old_file = days / _temp("2013-01-02.parquet")
    old_file.write_bytes(b"half")
    _age(old_file)
    old_folder = line / _temp("1.3.0")
    old_folder.mkdir()
    (old_folder / "model.onnx").write_bytes(b"x")
    _age(old_folder / "model.onnx")
    _age(old_folder)
    stale = line / f".1.2.0.{uuid.uuid4().hex}.stale"
    stale.mkdir()
    (stale / "features.json").write_text("{}")
    _age(stale / "features.json")
    _age(stale)

    fresh_file = days / _temp("2013-01-03.parquet")
    fresh_file.write_bytes(b"being written")
    writing = line / _temp("1.4.0")  # an old folder a live writer is still adding files to
    writing.mkdir()
    (writing / "model.onnx").write_bytes(b"x")
    _age(writing)
    fresh_folder = line / _temp("1.5.0")  # kept whole: the sweep never looks inside a temp folder
    fresh_folder.mkdir()
    inner = fresh_folder / _temp("inner")
    inner.write_bytes(b"x")
    _age(inner)
    normal = [days / "2013-01-01.parquet", days / ".hidden", days / f"x.{uuid.uuid4().hex}.tmp",
              days / ".short.abc123.tmp"]
    for path in normal:
        path.write_bytes(b"keep")
        _age(path)
    target = outside / _temp("precious")
    target.write_bytes(b"not ours")
    _age(target)
    (outside / "nested").mkdir()
    nested = outside / "nested" / _temp("precious")
    nested.write_bytes(b"not ours")
    _age(nested)
    file_link = days / _temp("link")  # named like a temp file, but a symlink out of the root
    file_link.symlink_to(target)
    _age(file_link)
    (root / "elsewhere").symlink_to(outside, target_is_directory=True)

    removed = sweep_temp_files(root, max_age_seconds=3600)

    assert removed == sorted(str(p) for p in (old_file, old_folder, stale))
    for path in (old_file, old_folder, stale):
        assert not path.exists()
    for path in (fresh_file, writing, fresh_folder, inner, *normal, target, nested):
        assert path.exists(), path
    assert file_link.is_symlink() and (root / "elsewhere").is_symlink()
    assert sweep_temp_files(root, max_age_seconds=3600) == []


def test_sweep_of_an_object_store_or_missing_root_does_nothing(tmp_path):
    assert sweep_temp_files("s3://bucket/prefix") == []
    assert sweep_temp_files(tmp_path / "missing") == []
