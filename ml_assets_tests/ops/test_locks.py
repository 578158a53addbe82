"""The instance lock between real processes (refused, freed by SIGKILL, waited for) and the daemon heartbeat."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest

from ml_assets.ops.locks import LOCK_FILE, InstanceBusy, daemon_heartbeat_age, daemon_is_running, instance_lock
from ml_assets_tests.processes import stop_process_group, tail

REPO = Path(__file__).resolve().parents[2]

HOLDER = textwrap.dedent("""
    import sys, time
    from ml_assets.ops.locks import instance_lock

    with instance_lock(sys.argv[1], "test holder"):
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def _start_holder(directory: Path, log: Path, hold_seconds: float) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-c", HOLDER, str(directory), str(hold_seconds)], cwd=REPO,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for_line(proc: subprocess.Popen, log: Path, prefix: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and any(line.startswith(prefix) for line in log.read_text().splitlines()):
            return
        assert proc.poll() is None, f"child exited with {proc.returncode} before {prefix!r}:\n{tail(log)}"
        time.sleep(0.05)
    raise AssertionError(f"no {prefix!r} from the child within {timeout} s:\n{tail(log)}")


def test_a_live_holder_refuses_others_and_its_death_frees_the_lock(tmp_path):
    home = tmp_path / "dagster_home"  # created by the lock
    child = _start_holder(home, tmp_path / "child.log", 60)
    try:
        _wait_for_line(child, tmp_path / "child.log", "held")
        with pytest.raises(InstanceBusy) as busy:
            with instance_lock(home, "second process", wait_seconds=0):
                pytest.fail("two processes held the lock")
        message = str(busy.value)
        assert f"pid {child.pid} " in message and "test holder" in message and "\n" not in message
        assert busy.value.holder["pid"] == child.pid and busy.value.holder["argv"][0] == "-c"
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        stop_process_group(child, grace_seconds=1)

    started = time.monotonic()
    with instance_lock(home, "after the kill", wait_seconds=0) as record:
        assert record["pid"] == os.getpid()
        assert json.loads((home / LOCK_FILE).read_text())["purpose"] == "after the kill"
    assert time.monotonic() - started < 1
    assert (home / LOCK_FILE).read_text() == ""  # released: it names nobody


def test_waiting_gets_the_lock_once_the_holder_releases_it(tmp_path):
    child = _start_holder(tmp_path, tmp_path / "child.log", 1.5)
    try:
        _wait_for_line(child, tmp_path / "child.log", "held")
        with pytest.raises(InstanceBusy):
            with instance_lock(tmp_path, "impatient", wait_seconds=0.2):
                pass
        started = time.monotonic()
        with instance_lock(tmp_path, "patient", wait_seconds=20):
            waited = time.monotonic() - started
            assert child.wait(timeout=10) == 0  # the holder finished and let go
        assert 0.1 < waited < 20
    finally:
        stop_process_group(child, grace_seconds=1)


def test_the_lock_is_not_reentrant_and_is_released_on_errors(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with instance_lock(tmp_path, "first"):
            with pytest.raises(InstanceBusy, match=f"pid {os.getpid()} "):
                with instance_lock(tmp_path, "nested"):
                    pass
            raise RuntimeError("boom")
    with instance_lock(tmp_path, "again"):
        pass


def test_daemon_heartbeat(tmp_path):
    # Test only: DaemonHeartbeat is internal; the daemon writes it through the instance's public method.
    from dagster._daemon.types import DaemonHeartbeat

    with dg.DagsterInstance.local_temp(str(tmp_path)) as instance:
        assert daemon_heartbeat_age(instance) is None
        assert not daemon_is_running(instance)
        instance.add_daemon_heartbeat(DaemonHeartbeat(time.time() - 3600, "SENSOR", "old-daemon", None))
        assert daemon_heartbeat_age(instance) == pytest.approx(3600, abs=30)
        assert not daemon_is_running(instance)
        instance.add_daemon_heartbeat(DaemonHeartbeat(time.time(), "BACKFILL", "live-daemon", None))
        assert daemon_heartbeat_age(instance) < 30
        assert daemon_is_running(instance)
        assert not daemon_is_running(instance, within_seconds=-1)
