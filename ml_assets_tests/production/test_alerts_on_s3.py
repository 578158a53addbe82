"""Alerts written to S3 (moto's server): concurrent writers lose nothing, readers see them in time order."""
from concurrent.futures import ThreadPoolExecutor

from ml_assets.core import alerts
from ml_assets.core.storage import make_path


def test_alerts_written_at_once_by_many_sensors_are_all_kept(s3):
    root = make_path(f"s3://{s3.bucket}/prod")
    sent = [alerts.Alert(kind="check_failure", severity="warning", message=f"alert {i}", partition="2013-01-05")
            for i in range(12)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        deliveries = list(pool.map(lambda a: alerts.deliver(a, root, webhook=""), sent))
    assert all(d.ok for d in deliveries), [d.errors for d in deliveries]
    assert sorted(a["message"] for a in alerts.read_alerts(root)) == sorted(a.message for a in sent)
    assert len(s3.keys("prod/alerts/objects/")) == 12

    later = alerts.Alert(kind="run_failure", severity="error", message="the newest")
    alerts.deliver(later, root, webhook="")
    assert alerts.read_alerts(root)[-1]["message"] == "the newest"
