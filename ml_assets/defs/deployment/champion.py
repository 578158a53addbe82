"""champion: the bundle in production. Materializing it applies every promotion the deployment_bundle
partitions decided since its last materialization (in data-day order), moves MLflow's ``champion`` alias,
and shows the history."""

import dagster as dg
import polars as pl

from ml_assets.core import champion as C
from ml_assets.core.dates import parse_day
from ml_assets.defs.deployment.bundle import MODEL_LINES
from ml_assets.defs.metadata import markdown_table
from ml_assets.resources.storage import StorageRoot
from ml_assets.resources.tracking import MLflowTracking

BUNDLE = dg.AssetKey("deployment_bundle")
CURSOR = "applied_through"  # storage id of the newest deployment_bundle materialization already applied


def _own_cursor(context: dg.AssetExecutionContext) -> int:
    event = context.instance.get_latest_materialization_event(context.asset_key)
    value = event.asset_materialization.metadata.get(CURSOR) if event and event.asset_materialization else None
    return int(value.value) if value is not None else 0


def _bundle_materializations_after(instance: dg.DagsterInstance, after: int) -> list:
    records, cursor = [], None
    while True:
        page = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=BUNDLE, after_storage_id=after),
                                               limit=500, cursor=cursor, ascending=True)
        records += page.records
        if not page.has_more:
            return records
        cursor = page.cursor


def _value(materialization, key: str):
    entry = materialization.metadata.get(key)
    return None if entry is None else entry.value


def pending_promotions(records: list) -> list[dict]:
    """Promotions decided by deployment_bundle materializations (``promote`` true), oldest data day first."""
    out = []
    for record in records:
        m = record.asset_materialization
        if _value(m, "promote") is True:
            out.append({"day": parse_day(m.partition), "model_line": _value(m, "model_line"),
                        "version": _value(m, "version"), "bundle": _value(m, "bundle"),
                        "reason": f"promotion check passed on {m.partition}"})
    return sorted(out, key=lambda p: p["day"])


@dg.asset(
    group_name="deployment", kinds={"mlflow"}, code_version="champion-v1", deps=[BUNDLE],
    description="The champion: which bundle serves. Applies the promotions deployment_bundle decided (the "
                "blocking `promotion` check), moves the MLflow registry alias `champion`, keeps the history "
                "(champion/history.json) that batch predictions and `ml-assets rollback` use.",
)
def champion(context: dg.AssetExecutionContext, storage: StorageRoot, mlflow: MLflowTracking):
    root = storage.path()
    records = _bundle_materializations_after(context.instance, _own_cursor(context))
    applied = []
    for p in pending_promotions(records):
        now = C.current(C.read_history(root))
        if now and (now["model_line"], now["version"]) == (p["model_line"], p["version"]):
            continue
        C.promote(root, p["model_line"], p["version"], p["bundle"], p["day"], p["reason"])
        applied.append(f"{p['model_line']} {p['version']} ({p['day']})")
    events = C.read_history(root)
    now = C.current(events)
    if now is not None:
        registry_version = mlflow.set_champion(now["model_line"], now["version"], MODEL_LINES)
    cursor = max([r.storage_id for r in records], default=_own_cursor(context))
    history = pl.DataFrame([{k: e[k] for k in ("seq", "action", "model_line", "version", "day", "at", "reason")}
                            for e in events[-20:][::-1]]) if events else pl.DataFrame()
    return dg.MaterializeResult(
        data_version=dg.DataVersion(f"{now['model_line']}-{now['version']}" if now else "none"),
        metadata={
            CURSOR: cursor,
            "champion": f"{now['model_line']} {now['version']}" if now else "none yet",
            "version": now["version"] if now else "", "model_line": now["model_line"] if now else "",
            "bundle": now["bundle"] if now else "", "data_day": now["day"] if now else "",
            "registry_version": registry_version if now else "",
            "applied_now": ", ".join(applied) or "nothing new",
            "history": dg.MetadataValue.md(markdown_table(history, max_rows=20)) if events else "empty",
        })
