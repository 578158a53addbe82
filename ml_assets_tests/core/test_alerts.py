"""Alert lines (appended locally, one object per alert on an object store) and webhook delivery (a real server)."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ml_assets.core import alerts
from ml_assets_tests.processes import free_port


class _Hook:
    def __init__(self, status: int = 200):
        self.status = status
        self.received: list[dict] = []
        self.headers: list[dict] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.received.append(json.loads(body))
                hook.headers.append(dict(self.headers))
                self.send_response(hook.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    hook = _Hook()
    yield hook
    hook.close()


def _closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}/alerts"  # nothing listens there any more


def _alert(**kw) -> alerts.Alert:
    base = dict(kind="check_failure", severity="error", message="schema: column dep_delay has 3 nulls",
                run_id="abc123", asset="flights/raw_schedule", check="schema", partition="2013-01-05")
    return alerts.Alert(**{**base, **kw})


def test_alert_json_has_every_field_and_utc_time():
    a = _alert()
    data = json.loads(a.to_json())
    assert {"kind", "severity", "message", "run_id", "asset", "check", "partition", "time", "job",
            "details"} <= set(data)
    assert data["time"].endswith("Z") and "T" in data["time"]
    assert "flights/raw_schedule/schema [2013-01-05]" in a.subject
    with pytest.raises(ValueError, match="severity"):
        _alert(severity="catastrophic")


def test_lines_are_appended_under_alerts(root):
    alerts.append_alert(root, _alert(check="schema"))
    path = alerts.append_alert(root, _alert(check="unique_key", severity="warning"))
    assert str(path).endswith("alerts/alerts.jsonl")
    lines = alerts.read_alerts(root)
    assert [x["check"] for x in lines] == ["schema", "unique_key"]
    assert lines[1]["severity"] == "warning"


def test_deliver_writes_the_line_and_posts_the_same_json(root, webhook):
    out = alerts.deliver(_alert(), root, webhook=webhook.url)
    assert out.ok and out.webhook == webhook.url
    assert webhook.received == alerts.read_alerts(root)
    assert webhook.headers[0]["Content-Type"] == "application/json"


def test_webhook_taken_from_the_environment(root, webhook, monkeypatch):
    monkeypatch.setenv(alerts.WEBHOOK_ENV, webhook.url)
    assert alerts.deliver(_alert(), root).ok
    assert len(webhook.received) == 1
    monkeypatch.delenv(alerts.WEBHOOK_ENV)
    alerts.deliver(_alert(), root)
    assert len(webhook.received) == 1 and len(alerts.read_alerts(root)) == 2


def test_a_dead_or_failing_webhook_never_raises_and_the_line_is_still_written(root, caplog):
    out = alerts.deliver(_alert(), root, webhook=_closed_port_url())
    assert not out.ok and "failed" in out.errors[0]
    assert len(alerts.read_alerts(root)) == 1
    assert any("alert delivery" in r.message for r in caplog.records)

    hook = _Hook(status=500)
    try:
        out = alerts.deliver(_alert(), root, webhook=hook.url)
    finally:
        hook.close()
    assert out.errors == [f"webhook {hook.url} answered HTTP 500"]
    assert len(hook.received) == 1 and len(alerts.read_alerts(root)) == 2

    assert alerts.deliver(_alert(), root, webhook="not a url").errors  # malformed URL: reported, not raised


def test_an_unwritable_root_is_reported_not_raised(tmp_path, webhook):
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where the alerts folder should be
    from ml_assets.core.storage import make_path
    out = alerts.deliver(_alert(), make_path(str(blocker)), webhook=webhook.url)
    assert out.file is None and "could not write" in out.errors[0]
    assert len(webhook.received) == 1  # the webhook still gets it


def test_on_an_object_store_each_alert_is_its_own_object():
    from upath import UPath

    root = UPath("memory://alerts-test/home")
    try:
        first = alerts.append_alert(root, _alert(check="schema"))
        second = alerts.append_alert(root, _alert(check="unique_key"))
        assert first != second and "/alerts/objects/" in str(first)
        assert [x["check"] for x in alerts.read_alerts(root)] == ["schema", "unique_key"]  # oldest first
    finally:
        root.fs.rm(root.path, recursive=True)


def test_no_alerts_yet_and_truncated_messages(root):
    assert alerts.read_alerts(root) == []
    assert alerts.truncate("x" * 10, limit=5) == "xxxx…" and alerts.truncate(None) == ""
    assert alerts.deliver(_alert(), None, webhook="").ok  # nowhere to deliver: nothing to fail
