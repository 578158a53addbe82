"""training_set: for day D, the labelled features of the trailing window D-W..D-1, split by time."""
import dagster as dg
import polars as pl

from ml_assets.core.dates import parse_day
from ml_assets.core.features import LABEL
from ml_assets.core.profile import label_rate
from ml_assets.core.training.window import split_window
from ml_assets.core.versioning import frame_hash
from ml_assets.defs.metadata import frame_metadata
from ml_assets.defs.partitions import daily_partitions

DEFAULT_WINDOW_DAYS = 28
VALIDATION_DAYS = 3
TRAINING_CODE_VERSION = "training-set-v1"


def build_training_set(window_days: int = DEFAULT_WINDOW_DAYS) -> dg.AssetsDefinition:
    """The window is part of the graph (its partition mapping), so it is fixed when Definitions are built."""

    @dg.asset(
        name="training_set", partitions_def=daily_partitions, group_name="models", kinds={"polars"},
        code_version=f"{TRAINING_CODE_VERSION}-w{window_days}",
        # One range read of the window (the IO manager concatenates it), not W loads.
        ins={"flight_features": dg.AssetIn(partition_mapping=dg.TimeWindowPartitionMapping(
            start_offset=-window_days, end_offset=-1, allow_nonexistent_upstream_partitions=True))},
        backfill_policy=dg.BackfillPolicy.multi_run(1),
        description=f"Labelled flight_features of the {window_days} days before D (fewer at the start of the "
                    f"data); the last {VALIDATION_DAYS} days are the validation split (column `split`).",
    )
    def training_set(context: dg.AssetExecutionContext, flight_features: pl.DataFrame):
        day = parse_day(context.partition_key)
        train, valid = split_window(flight_features, day, window_days, VALIDATION_DAYS)
        if train.is_empty():
            raise ValueError(f"training_set {day}: no labelled rows in the {window_days} days before it "
                             f"(materialize flight_features for earlier days first)")
        frame = pl.concat([train.with_columns(split=pl.lit("train")), valid.with_columns(split=pl.lit("valid"))])
        days = frame["date"].unique().sort()
        yield dg.Output(frame, data_version=dg.DataVersion(frame_hash(frame)), metadata={
            **frame_metadata(frame),
            "train_rows": train.height, "valid_rows": valid.height, "days": days.len(),
            "date_span": f"{days.min()}..{days.max()}",
            "late_share": label_rate(frame, LABEL) or 0.0,
            "window_days": window_days,
        })

    return training_set
