"""Alerts written to S3 (moto's server): concurrent writers lose nothing, readers see them in time order.

The alerts are the ones the check-failure sensor makes (``check_evaluation_to_alert``) from per-day check
evaluations of the graph: a refused raw day (error) and a refused promotion (info), each naming its own day.
"""
from concurrent.futures import ThreadPoolExecutor

import dagster as dg

from ml_assets.core import alerts
from ml_assets.core.storage import make_path
from ml_assets.defs.automation.sensors import check_evaluation_to_alert

RAW_WEATHER = dg.AssetKey(["flights", "raw_weather"])
CHAMPION = dg.AssetKey(["flights", "champion"])


def _refused_day(day: str) -> dg.AssetCheckEvaluation:
    return dg.AssetCheckEvaluation(asset_key=RAW_WEATHER, check_name="contract", passed=False, partition=day,
                                   severity=dg.AssetCheckSeverity.ERROR, blocking=True,
                                   description=f"raw_weather {day}: every reading is null",
                                   metadata={"violations": dg.MetadataValue.int(24)})


def test_alerts_written_at_once_by_many_sensors_are_all_kept(s3):
    root = make_path(f"s3://{s3.bucket}/prod")
    days = [f"2013-01-{d:02d}" for d in range(1, 13)]
    sent = [check_evaluation_to_alert(_refused_day(day), set(), run_id=f"run-{day}", job="__ASSET_JOB",
                                      timestamp=None) for day in days]
    assert {(a.kind, a.severity, a.asset, a.check) for a in sent} == {
        ("check_failure", "error", "flights/raw_weather", "contract")}
    with ThreadPoolExecutor(max_workers=6) as pool:
        deliveries = list(pool.map(lambda a: alerts.deliver(a, root, webhook=""), sent))
    assert all(d.ok for d in deliveries), [d.errors for d in deliveries]
    kept = alerts.read_alerts(root)
    assert sorted(a["partition"] for a in kept) == days  # one per day, none lost to a concurrent PUT
    assert all(a["message"].endswith("(24 violation(s))") and a["details"]["blocking"] for a in kept)
    assert len(s3.keys("prod/alerts/objects/")) == len(days)

    refused = dg.AssetCheckEvaluation(asset_key=CHAMPION, check_name="promotion", passed=False,
                                      partition="2013-01-13", severity=dg.AssetCheckSeverity.WARN,
                                      metadata={"reason": dg.MetadataValue.text("the newest: keep the champion")})
    later = check_evaluation_to_alert(refused, {dg.AssetCheckKey(CHAMPION, "promotion")}, run_id="run-later",
                                      job="__ASSET_JOB", timestamp=None)
    assert (later.kind, later.severity) == ("promotion_refused", "info")
    assert alerts.deliver(later, root, webhook="").ok
    newest = alerts.read_alerts(root)[-1]
    assert (newest["message"], newest["partition"]) == ("the newest: keep the champion", "2013-01-13")
