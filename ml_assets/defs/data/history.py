"""delay_history: realized outcome rates per key over trailing windows, as known once day D's outcomes landed.

Features of day D+1+lag join the history of D: what was known the evening before. Refused or missing outcome
days inside the window are holes, named in the metadata.
"""

import datetime as dt

import dagster as dg
import polars as pl

from ml_assets.core import features as F
from ml_assets.core import history as H
from ml_assets.core.dates import parse_day
from ml_assets.defs.blueprint import DATA, Blueprint, window
from ml_assets.defs.days import DayResult, Days, emit_days
from ml_assets.defs.metadata import table


def _labelled_events(bp: Blueprint, events: Days, outcomes: Days, days: list[str]) -> tuple[pl.DataFrame, list[str]]:
    usable_events, usable_outcomes = events.usable(days), outcomes.usable(days)
    used = [d for d in days if d in usable_events and d in usable_outcomes]
    if not used:
        return pl.DataFrame(), []
    ev = pl.concat([usable_events[d] for d in used], how="vertical_relaxed")
    oc = pl.concat([usable_outcomes[d] for d in used], how="vertical_relaxed")
    return F.attach_label(bp.spec, F.with_date(bp.spec, ev).collect(), oc), used


def build(bp: Blueprint) -> list:
    if bp.spec.history is None:
        return []
    spec = bp.spec
    longest = max(spec.history.windows)
    lookback = window(-(longest - 1), 0)

    @dg.asset(key=bp.key("delay_history"), partitions_def=bp.partitions, group_name=DATA, kinds={"polars"},
              ins={"events": dg.AssetIn(bp.raw(spec.events_name), partition_mapping=lookback),
                   "outcomes": dg.AssetIn(bp.raw(spec.outcomes_name), partition_mapping=lookback)},
              backfill_policy=dg.BackfillPolicy.single_run(), code_version="history-v1", owners=list(bp.owners),
              tags=bp.tags(layer="features"),
              description=f"Realized {spec.label.name} rates per {', '.join(spec.history.keys)} over the trailing "
                          f"{', '.join(map(str, spec.history.windows))} days up to D, shrunk toward the overall rate "
                          f"(prior weight {spec.history.prior_weight:g}). Features of D+{1 + bp.outcome_lag} join it.")
    def delay_history(context: dg.AssetExecutionContext, events: Days, outcomes: Days):
        first = (parse_day(context.partition_keys[0]) - dt.timedelta(days=longest - 1)).isoformat()
        every = sorted(set(events) | set(outcomes) | {d for d in context.partition_keys})
        labelled, used = _labelled_events(bp, events, outcomes, [d for d in every if d >= first])
        results = {}
        for day in context.partition_keys:
            as_of = parse_day(day)
            span = {(as_of - dt.timedelta(days=i)).isoformat() for i in range(longest)}
            in_window = sorted(span & set(used))
            frame = (H.delay_history(spec, labelled, as_of) if in_window else H.empty_history())
            holes = sorted(d for d in span if d >= spec.first_day.isoformat() and d not in used)
            results[day] = DayResult(frame, {
                "dagster/row_count": frame.height, "days_used": len(in_window), "holes": len(holes),
                "hole_days": ", ".join(holes[:10]) or "none",
                "overall_rates": table(frame.filter(pl.col("name") == H.GLOBAL).select("window", "count", "rate")),
            })
        yield from emit_days(context, results)

    return [delay_history]
