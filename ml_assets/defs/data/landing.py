"""The landing zone as external assets, one per source: the graph starts where the data starts.

Dagster does not materialize them (upstream writes the files); ``ml-assets land`` and the landing sensor report
each delivered day as a materialization, so the UI shows when each source's day arrived.
"""

import dagster as dg

from ml_assets.defs.blueprint import LANDING, Blueprint


def build(bp: Blueprint) -> list[dg.AssetSpec]:
    spec = bp.spec
    specs = []
    for name, source in spec.sources.items():
        delivered = source.delivered
        when = (f"{delivered.day_offset:+d} day(s) from the event day at {delivered.time:%H:%M} UTC"
                if source.role != "outcomes" else f"{bp.outcome_lag} day(s) after the event day at "
                                                  f"{delivered.time:%H:%M} UTC (ML_ASSETS_OUTCOME_LAG_DAYS)")
        specs.append(dg.AssetSpec(
            bp.landing(name), group_name=LANDING, partitions_def=bp.partitions, kinds={"parquet"},
            description=f"landing/{name}/date=YYYY-MM-DD/vNNNN.parquet: {source.description} Delivered {when}.",
            metadata={"path": f"landing/{name}/date=<day>/vNNNN.parquet", "role": source.role},
            owners=list(bp.owners), tags=bp.tags(layer="landing")))
    for name, ref in spec.reference.items():
        specs.append(dg.AssetSpec(bp.landing(name), group_name=LANDING, kinds={"parquet"},
                                  description=f"landing/{name}/vNNNN.parquet: {ref.description}",
                                  metadata={"path": f"landing/{name}/vNNNN.parquet"}, owners=list(bp.owners),
                                  tags=bp.tags(layer="landing")))
    return specs
