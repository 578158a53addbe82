"""One process at a time on a Dagster instance, and whether a Dagster daemon is already serving it.

Two CLI processes on one ``DAGSTER_HOME`` both executing work (each ``ml-assets backfill --wait`` playing the
backfill daemon for every backfill, or ``ml-assets demo`` ticking automation beside ``dagster dev``) submit
the same runs twice. :func:`instance_lock` makes the second process wait or stop with a message naming the
first; :func:`daemon_is_running` lets a command leave the work to a daemon that is already doing it.
"""
from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import dagster as dg

LOCK_FILE = ".ml_assets.lock"
POLL_SECONDS = 0.1


class InstanceBusy(RuntimeError):
    """Another process holds the instance lock; ``holder`` is what it wrote into the lock file."""

    def __init__(self, directory: str, holder: dict[str, Any]):
        self.directory = directory
        self.holder = holder
        super().__init__(_busy_message(directory, holder))


def _busy_message(directory: str, holder: dict[str, Any]) -> str:
    if not holder.get("pid"):
        return f"{directory} is in use by another process (it has not said which yet): try again in a moment"
    argv = holder.get("argv") or []
    command = shlex.join(str(a) for a in argv) if isinstance(argv, list) else str(argv)
    if len(command) > 200:
        command = command[:197] + "..."
    return (f"{directory} is in use by pid {holder['pid']} on {holder.get('host', '?')} ({command or '?'}) "
            f"since {holder.get('since', '?')} for {holder.get('purpose', '?')}: wait for it or stop it")


def _holder_record(purpose: str) -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "purpose": purpose,
            "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "argv": list(sys.argv)}


def _read_holder(fd: int) -> dict[str, Any]:
    """The holder's record. The holder writes it just after taking the lock, so a reader may briefly see
    nothing or half of it: retry a few times, then report what there is."""
    for _ in range(10):
        data = os.pread(fd, 1 << 16, 0)
        try:
            record = json.loads(data)
            if isinstance(record, dict):
                return record
        except ValueError:
            pass
        time.sleep(0.02)
    return {}


def _write_holder(fd: int, record: dict[str, Any]) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _acquire(fd: int, directory: str, wait_seconds: float) -> None:
    deadline = time.monotonic() + max(0.0, wait_seconds)
    while not _try_lock(fd):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise InstanceBusy(directory, _read_holder(fd))
        time.sleep(min(POLL_SECONDS, remaining))


@contextmanager
def instance_lock(directory: str | os.PathLike, purpose: str, wait_seconds: float = 0.0) -> Iterator[dict[str, Any]]:
    """Hold an exclusive lock on ``<directory>/.ml_assets.lock`` (``directory`` is created if needed).

    While held, the file says who holds it (pid, host, purpose, since, argv), for the message of the
    :class:`InstanceBusy` another process gets after waiting ``wait_seconds`` in vain. ``flock`` rather than
    a pid file: the kernel releases the lock when its holder dies, SIGKILL included, so a dead holder never
    blocks anyone and there is nothing stale to clean up. Not re-entrant: a second ``instance_lock`` on the
    same directory in the same process is refused too. The descriptor is not inherited by programs the holder
    starts (close-on-exec); a child forked without exec shares the lock until it exits.
    Yields the holder record it wrote.
    """
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    # No O_TRUNC: the file is only emptied once we hold the lock (it names the current holder until then).
    fd = os.open(os.path.join(directory, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        _acquire(fd, directory, wait_seconds)
        record = _holder_record(purpose)
        _write_holder(fd, record)
        try:
            yield record
        finally:
            os.ftruncate(fd, 0)  # nobody holds it now: the file says nothing
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def daemon_heartbeat_age(instance: dg.DagsterInstance) -> float | None:
    """Seconds since the newest heartbeat any Dagster daemon wrote into this instance; None if none ever did.

    A running daemon (``dagster dev``, ``dagster-daemon run``) writes one per daemon type every 30 s.
    """
    heartbeats = instance.get_daemon_heartbeats()
    if not heartbeats:
        return None
    return max(0.0, time.time() - max(beat.timestamp for beat in heartbeats.values()))


def daemon_is_running(instance: dg.DagsterInstance, within_seconds: float = 90) -> bool:
    """Whether a daemon heartbeat is at most ``within_seconds`` old (default: three missed 30 s beats).

    A command that would tick sensors or backfills in process should leave that work to the daemon then.
    """
    age = daemon_heartbeat_age(instance)
    return age is not None and age <= within_seconds
