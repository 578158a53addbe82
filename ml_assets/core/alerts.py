"""Alerts as data: one JSON object per event, appended to ``<root>/alerts/alerts.jsonl`` (on an object store:
one object per alert under ``<root>/alerts/objects/``) and, when ``ML_ASSETS_ALERT_WEBHOOK`` is set, POSTed
to that URL.

No Dagster here: the sensors in ``ml_assets.defs.automation`` turn run failures and failed asset checks
into ``Alert`` values and hand them to ``deliver``. Delivery never raises: an alert channel that is down
must not fail the sensor that noticed the problem; what went wrong is returned (and logged by the caller).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import urllib.error
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from upath import UPath

from ml_assets.core.storage import atomic_write_bytes, is_local

WEBHOOK_ENV = "ML_ASSETS_ALERT_WEBHOOK"
ALERTS_KEY = ("alerts", "alerts.jsonl")
OBJECTS_KEY = ("alerts", "objects")
WEBHOOK_TIMEOUT_S = 5.0
SEVERITIES = ("error", "warning", "info")

log = logging.getLogger(__name__)


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Alert:
    kind: str                      # "run_failure" | "check_failure" | ...
    severity: str                  # "error" | "warning" | "info"
    message: str
    run_id: str | None = None
    job: str | None = None
    asset: str | None = None
    check: str | None = None
    partition: str | None = None
    time: str = field(default_factory=utc_now)  # ISO-8601 UTC, e.g. 2013-01-05T06:00:00Z
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"alert severity must be one of {SEVERITIES}, got {self.severity!r}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True, default=str, ensure_ascii=False)

    @property
    def subject(self) -> str:
        """A one-line human summary (for logs)."""
        where = "/".join(x for x in (self.asset, self.check) if x) or self.job or "?"
        part = f" [{self.partition}]" if self.partition else ""
        return f"{self.severity.upper()} {self.kind} {where}{part}: {self.message}"


def alerts_file(root: UPath) -> UPath:
    return root.joinpath(*ALERTS_KEY)


def append_alert(root: UPath, alert: Alert) -> UPath:
    """Record one alert. Locally an O_APPEND write of one JSON line (writers never interleave or overwrite).

    An object store cannot append, and reading the file and putting it back whole would lose an alert
    whenever two sensors write at once (the last PUT wins). There each alert is its own object, named by
    the time it was written, so listing order is time order.
    """
    line = (alert.to_json() + "\n").encode()
    path = alerts_file(root)
    if is_local(path):
        target = os.fspath(path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "ab") as fh:
            fh.write(line)
        return path
    written = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    path = root.joinpath(*OBJECTS_KEY, f"{written}-{uuid.uuid4().hex[:8]}.json")
    atomic_write_bytes(path, line)
    return path


def read_alerts(root: UPath) -> list[dict[str, Any]]:
    """Every recorded alert, oldest first."""
    path = alerts_file(root)
    if is_local(path):
        lines = path.read_text().splitlines() if path.exists() else []
    else:
        folder = root.joinpath(*OBJECTS_KEY)
        lines = [p.read_text() for p in sorted(folder.iterdir(), key=lambda p: p.name)] if folder.exists() else []
    return [json.loads(line) for line in lines if line.strip()]


def post_alert(url: str, alert: Alert, timeout: float = WEBHOOK_TIMEOUT_S) -> str | None:
    """POST the alert's JSON; returns None on a 2xx answer, else what went wrong. Never raises."""
    try:
        request = urllib.request.Request(url, data=alert.to_json().encode(), method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "User-Agent": "ml-assets-alerts/1"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        return f"webhook {url} answered HTTP {exc.code}"
    except Exception as exc:  # URLError, timeouts, refused connections, bad URLs: report, never raise
        return f"webhook {url} failed: {type(exc).__name__}: {exc}"
    if not 200 <= status < 300:
        return f"webhook {url} answered HTTP {status}"
    return None


@dataclass
class Delivery:
    alert: Alert
    file: str | None = None
    webhook: str | None = None          # the URL posted to, when one is configured
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def deliver(alert: Alert, root: UPath | None, webhook: str | None = None) -> Delivery:
    """Write the alert's JSON line under ``root`` and POST it to ``webhook`` (default: the
    ``ML_ASSETS_ALERT_WEBHOOK`` environment variable). Failures are collected and logged, never raised."""
    out = Delivery(alert)
    if root is not None:
        try:
            out.file = str(append_alert(root, alert))
        except Exception as exc:
            out.errors.append(f"could not write {alerts_file(root)}: {type(exc).__name__}: {exc}")
    url = webhook if webhook is not None else os.environ.get(WEBHOOK_ENV, "").strip()
    if url:
        out.webhook = url
        error = post_alert(url, alert)
        if error:
            out.errors.append(error)
    for error in out.errors:
        log.warning("alert delivery: %s (alert: %s)", error, alert.subject)
    return out


def truncate(text: str | None, limit: int = 2000) -> str:
    text = (text or "").strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"
