"""Clean up after processes that were killed: runs they left in progress, backfills they were driving, and the
temp files and folders of their writers.

Dagster cannot know that a run executed *inside* a CLI process (``execute_in_process``, or the backfill daemon's
code played by ``ml-assets backfill --wait``) died: nothing watches that process, so a SIGKILL leaves the run
STARTED for ever and automation keeps treating its day as in progress. So every process that executes runs
itself tags them with :func:`owner_tags` (pid, host, process start time), and the next process calls
:func:`recover` before it plans work: a run whose owner is gone is marked failed through the instance, like
Dagster's own run monitoring does it. Runs without owner tags (launched by a daemon or the webserver) are
left to Dagster: their code server fails them when their run worker dies, and run monitoring fails the ones
that never start (see ``dagster.yaml``).

Call :func:`recover` while holding :func:`ml_assets.ops.locks.instance_lock`, so no other CLI process is
executing runs on the same instance at that moment.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import dagster as dg
from upath import UPath

if TYPE_CHECKING:
    from dagster._core.execution.backfill import PartitionBackfill

OWNER_PID_TAG = "ml_assets/owner_pid"
OWNER_HOST_TAG = "ml_assets/owner_host"
# The owner's start time (clock ticks since boot, Linux): a pid alone may be reused by a new process, which
# is common in containers, where a restarted CLI often gets the very pid of the one that was killed.
OWNER_STARTED_TAG = "ml_assets/owner_started"

# Runs that may still be waiting on, or be executed by, their owner.
UNFINISHED_RUN_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]

# The temp names of core/storage.atomic_write_bytes and core/bundle._write_local: ".<name>.<uuid4 hex>.tmp"
# (a file, or a bundle folder being written) and ".<name>.<uuid4 hex>.stale" (a half-copied folder moved aside).
TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{32}\.(?:tmp|stale)$")


# ---------------------------------------------------------------- who owns what


def _host() -> str:
    return socket.gethostname()


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat from the state on (Linux); None where there is no /proc or no such pid.

    The command name (field 2) is in parentheses and may itself contain spaces or parentheses: split after
    the last ``)``.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            text = fh.read().decode("ascii", errors="replace")
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()


def _start_ticks(pid: int) -> str | None:
    fields = _proc_stat(pid)
    return fields[19] if fields and len(fields) > 19 else None  # field 22, starttime


def owner_tags() -> dict[str, str]:
    """Tags a process puts on the runs (and backfills) it executes itself, so a later process can tell
    whether their owner is still alive. Put them only on work this process executes: a run or backfill
    handed to a daemon must not carry them (the daemon's runs are watched by Dagster itself)."""
    tags = {OWNER_PID_TAG: str(os.getpid()), OWNER_HOST_TAG: _host()}
    started = _start_ticks(os.getpid())
    if started is not None:
        tags[OWNER_STARTED_TAG] = started
    return tags


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists (``os.kill(pid, 0)``; a PermissionError means it exists but
    belongs to someone else). An exited process its parent has not reaped yet (a zombie) counts as gone:
    it will never write another event."""
    if pid <= 0:  # 0 and negative pids address process groups, not a process
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    fields = _proc_stat(pid)
    return not (fields and fields[0] == "Z")


def _dead_owner(tags: Mapping[str, str]) -> int | None:
    """The owner pid named by ``tags`` if it ran on this host and is gone; None if there is no owner, it
    ran elsewhere (its liveness cannot be checked from here), or it is alive."""
    if tags.get(OWNER_HOST_TAG) != _host():
        return None
    try:
        pid = int(tags.get(OWNER_PID_TAG, ""))
    except ValueError:
        return None
    if not process_alive(pid):
        return pid
    started = tags.get(OWNER_STARTED_TAG)
    if started is not None and _start_ticks(pid) not in (None, started):
        return pid  # the pid was reused by a newer process: the owner is gone
    return None


def _launched_through_run_launcher(run: dg.DagsterRun) -> bool:
    """Whether a run launcher started this run in a run worker of a code server (DefaultRunLauncher).

    Private API, unavoidable: Dagster has no public way to tell how a run was launched. Such runs are
    watched by their code server and run monitoring, and they may carry owner tags that are not theirs:
    runs of a backfill inherit the backfill's tags, so a daemon continuing a backfill that a CLI process
    started would launch runs naming that (dead) CLI process.
    """
    from dagster._core.storage.tags import GRPC_INFO_TAG

    return GRPC_INFO_TAG in run.tags


def _unfinished_backfills(instance: dg.DagsterInstance) -> list[PartitionBackfill]:
    """Backfills still REQUESTED or CANCELING (that a backfill daemon would still work on).

    Private API, unavoidable: ``instance.get_backfills`` takes its filter and status types from
    ``dagster._core.execution.backfill``; Dagster exports neither at the top level.
    """
    from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus

    statuses = [BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING]
    return list(instance.get_backfills(filters=BulkActionsFilter(statuses=statuses)))


# ---------------------------------------------------------------- runs and backfills


def _mark_gone(instance: dg.DagsterInstance, run_id: str, pid: int) -> bool:
    """Fail (or, if it was being canceled, cancel) a run whose owner is gone. False if it finished meanwhile."""
    run = instance.get_run_by_id(run_id)  # re-read: it may have finished since it was listed
    if run is None or run.status not in UNFINISHED_RUN_STATUSES:
        return False
    if run.status == dg.DagsterRunStatus.CANCELING:
        # As Dagster's run monitoring does for a cancellation that never completes: the run ends CANCELED.
        instance.report_run_canceled(
            run, f"run {run_id} was left CANCELING by process {pid}, which is gone: marked canceled")
    else:
        instance.report_run_failed(
            run, f"run {run_id} was left {run.status.value} by process {pid}, which is gone: marked failed")
    return True


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the unfinished runs whose owner tags name this host and a process that is gone.

    Runs without owner tags (launched by a daemon or the webserver), runs launched through a run launcher
    and runs owned by another host are left alone. Returns the ids of the runs it ended, oldest first.
    """
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=UNFINISHED_RUN_STATUSES,
                                                   tags={OWNER_HOST_TAG: _host()}))
    ended = []
    for run in reversed(list(runs)):  # get_runs lists the newest first
        if _launched_through_run_launcher(run):
            continue
        pid = _dead_owner(run.tags)
        if pid is not None and _mark_gone(instance, run.run_id, pid):
            ended.append(run.run_id)
    return ended


def orphaned_backfills(instance: dg.DagsterInstance) -> list[str]:
    """Ids of REQUESTED or CANCELING backfills whose owner (a process on this host) is gone.

    They are left as they are: a backfill keeps its progress in the instance, so a backfill daemon or the
    next ``ml-assets backfill --wait`` continues it where it stopped (the runs the dead owner was executing
    are failed by :func:`fail_dead_runs`). The caller says so, e.g. "backfill X was started by a process
    that is gone; resuming it".
    """
    return [b.backfill_id for b in _unfinished_backfills(instance) if _dead_owner(b.tags or {}) is not None]


# ---------------------------------------------------------------- temp files


def _local_dir(root: UPath | str | os.PathLike) -> str | None:
    """The local folder of a storage root; None for an object store (a PUT is atomic: nothing is ever
    half-written there, so there is nothing to sweep)."""
    path = root if isinstance(root, UPath) else UPath(os.fspath(root))
    if getattr(path, "protocol", "") not in ("", "file", "local"):
        return None
    return os.path.abspath(path.path if path.protocol else os.fspath(path))


def _newest_mtime(path: str, st: os.stat_result) -> float:
    """mtime of a file; of a folder, the newest of itself and its entries (a writer adds files one by one)."""
    newest = st.st_mtime
    if stat.S_ISDIR(st.st_mode):
        try:
            with os.scandir(path) as entries:
                for entry in entries:
                    newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
        except OSError:
            return time.time()  # cannot tell: treat as fresh
    return newest


def _remove_if_old(path: str, cutoff: float) -> bool:
    """Remove a temp file or temp folder last touched before ``cutoff``. Symlinks and anything that is
    neither a regular file nor a folder are never removed (the project's writers create neither)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)) or _newest_mtime(path, st) >= cutoff:
        return False
    try:
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(path)  # refuses a symlink; does not follow symlinks inside
        else:
            os.remove(path)
    except FileNotFoundError:
        return False  # its writer finished (renamed or removed it) meanwhile
    except OSError:
        return False
    return True


def _temp_candidates(top: str) -> Iterator[str]:
    """Paths under ``top`` named like temp files or folders. Never follows symlinks (os.walk lists a
    symlink to a folder but does not enter it) and never enters a temp folder (it goes, or stays, whole)."""
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        for name in [d for d in dirnames if TEMP_NAME.match(d)]:
            dirnames.remove(name)
            yield os.path.join(dirpath, name)
        for name in filenames:
            if TEMP_NAME.match(name):
                yield os.path.join(dirpath, name)


def sweep_temp_files(root: UPath | str | os.PathLike, max_age_seconds: float = 3600) -> list[str]:
    """Remove the temp files and folders killed writers left under a local storage root; returns them.

    Only hidden names of the project's writers (``.<name>.<uuid4 hex>.tmp`` / ``.stale``) older than
    ``max_age_seconds`` (mtime) go. Age is what makes this safe beside live writers: a writer creates its
    temp name and renames or removes it within seconds, so a temp name untouched for an hour belongs to a
    process that is gone. Object stores: nothing is ever half-written there, returns [].
    """
    top = _local_dir(root)
    if top is None or not os.path.isdir(top):
        return []
    cutoff = time.time() - max_age_seconds
    return sorted(path for path in _temp_candidates(top) if _remove_if_old(path, cutoff))


# ---------------------------------------------------------------- all of it


@dataclass
class RecoveryReport:
    failed_runs: list[str] = field(default_factory=list)
    orphaned_backfills: list[str] = field(default_factory=list)
    removed_temp: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.failed_runs or self.orphaned_backfills or self.removed_temp)

    def lines(self) -> list[str]:
        """What was found, for a person (the CLI prints these)."""
        out = [f"run {run_id} was left unfinished by a process that is gone: marked failed (see its events)"
               for run_id in self.failed_runs]
        out += [f"backfill {backfill_id} was started by a process that is gone"
                for backfill_id in self.orphaned_backfills]
        if self.removed_temp:
            out.append(f"removed {len(self.removed_temp)} temp file(s) left by killed writers")
        return out


def recover(instance: dg.DagsterInstance, root: UPath | str | os.PathLike,
            max_temp_age_seconds: float = 3600) -> RecoveryReport:
    """Everything above, in order; for the CLI and the ticker to call before planning work."""
    return RecoveryReport(
        failed_runs=fail_dead_runs(instance),
        orphaned_backfills=orphaned_backfills(instance),
        removed_temp=sweep_temp_files(root, max_temp_age_seconds),
    )
