"""training_set: for day D, the labelled features of the trailing window D-W..D-1, split by time.

The last validation days of the window are the validation split (column ``split``): later days validate models
fitted on earlier ones. Refused or missing days inside the window are holes, named in the metadata.
"""

import datetime as dt

import dagster as dg
import polars as pl
from pydantic import Field

from ml_assets.core.dates import parse_day
from ml_assets.core.features import labelled_rows
from ml_assets.core.profile import label_rate
from ml_assets.defs.blueprint import MODELS, Blueprint, window
from ml_assets.defs.days import DayResult, Days, Refused, emit_days
from ml_assets.defs.metadata import frame_metadata

CODE_VERSION = "training-set-v2"


class TrainingSetConfig(dg.Config):
    recent_days: int | None = Field(None, description="use only the most recent N days of the window (a retrain "
                                                      "strategy after a live drop); default: the whole window")
    reason: str = Field("", description="why the window was shortened (recorded in the metadata)")


def validation_split(days: list[str], validation_days: int) -> set[str]:
    """The last ``validation_days`` days (never more than half, at least one when there are two)."""
    if len(days) < 2:
        return set()
    return set(days[-max(1, min(validation_days, len(days) // 2)):])


def window_frame(bp: Blueprint, labelled: Days, day: str, recent_days: int | None = None
                 ) -> tuple[pl.LazyFrame | Refused, dict]:
    """The window's rows as a lazy plan over the labelled days (shared by every day of a range, never copied)."""
    days = min(bp.window_days, recent_days or bp.window_days)
    start = (parse_day(day) - dt.timedelta(days=days)).isoformat()
    keys = [k for k in labelled if start <= k < day]
    usable = labelled.usable(keys)
    refused = labelled.refused(keys)
    about = {"window": f"{start}..{(parse_day(day) - dt.timedelta(days=1)).isoformat()}", "days_used": len(usable),
             "refused_days": len(refused), "holes": ", ".join(sorted(refused)[:10]) or "none"}
    if len(usable) < bp.min_training_days:
        return Refused(f"training_set {day}: {len(usable)} labelled day(s) in the {bp.window_days}-day window "
                       f"(needs {bp.min_training_days})"), about
    valid_days = validation_split(sorted(usable), bp.validation_days)
    frames = [labelled_rows(f.lazy(), bp.spec).with_columns(split=pl.lit("valid" if k in valid_days else "train"))
              for k, f in usable.items()]
    return pl.concat(frames, how="vertical_relaxed").sort([*bp.spec.features.key], nulls_last=True), about


def training_day(bp: Blueprint, labelled: Days, day: str, config: TrainingSetConfig, keep_plan: bool) -> DayResult:
    """One day's training set. ``keep_plan``: a range keeps each day as its plan (computed again when hashed and
    written), not as rows: a year of training windows held at once is gigabytes."""
    plan, about = window_frame(bp, labelled, day, config.recent_days)
    if config.recent_days:
        about = {**about, "recent_days": config.recent_days, "shortened_because": config.reason or "config"}
    if isinstance(plan, Refused):
        return DayResult(plan, about)
    frame = plan.collect()
    split = frame["split"]
    if not (split == "train").any():
        return DayResult(Refused(f"training_set {day}: no labelled training rows in the window"), about)
    return DayResult(plan if keep_plan else frame,
                     {**frame_metadata(frame), **about, "train_rows": int((split == "train").sum()),
                      "valid_rows": int((split == "valid").sum()),
                      "date_span": f"{frame['date'].min()}..{frame['date'].max()}",
                      "positive_share": label_rate(frame, bp.spec.label.name) or 0.0})


def build(bp: Blueprint) -> list:
    @dg.asset(key=bp.key("training_set"), partitions_def=bp.partitions, group_name=MODELS, kinds={"polars"},
              code_version=f"{CODE_VERSION}-w{bp.window_days}",
              ins={"labelled": dg.AssetIn(bp.key("labelled_features"), partition_mapping=window(-bp.window_days, -1))},
              backfill_policy=dg.BackfillPolicy.single_run(), owners=list(bp.owners), tags=bp.tags(layer="models"),
              description=f"Labelled rows of the {bp.window_days} days before D (fewer at the start of the feed); the "
                          f"last {bp.validation_days} days are the validation split (column `split`).")
    def training_set(context: dg.AssetExecutionContext, labelled: Days, config: TrainingSetConfig):
        keep_plan = len(context.partition_keys) > 1
        yield from emit_days(context, {day: training_day(bp, labelled, day, config, keep_plan)
                                       for day in context.partition_keys})

    return [training_set]
