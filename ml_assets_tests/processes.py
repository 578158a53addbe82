"""Helpers for tests that start real servers and processes on loopback."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, chars: int = 6000) -> str:
    """The end of a process log, for failure messages."""
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no output)"


def stop_process_group(proc: subprocess.Popen, grace_seconds: float = 5) -> None:
    """SIGTERM, then SIGKILL, to a process started with ``start_new_session=True`` and its children."""
    for sig, wait in ((signal.SIGTERM, grace_seconds), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
