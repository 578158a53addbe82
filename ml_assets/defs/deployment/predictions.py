"""batch_predictions: every event of day D scored by the champion in effect the evening before D.

That champion is the one decided on day D-1-lag (a day's decision is made when its outcomes land), read as an
input with a time-window mapping: the graph draws champion -> batch_predictions, and a decision made with D's
own outcomes can never reach D's predictions. Outcomes are never read: this runs before they exist.
"""

import dagster as dg
import polars as pl

from ml_assets.core import bundle as B
from ml_assets.core import champion as C
from ml_assets.core.schemas import feature_dtypes
from ml_assets.defs.blueprint import DEPLOYMENT, Blueprint, day_offset, window
from ml_assets.defs.days import DayResult, Days, Refused, emit_days, refused_upstream
from ml_assets.defs.metadata import frame_metadata
from ml_assets.resources.storage import StorageRoot

MODEL_VERSION = "model_version"


def prediction_columns(bp: Blueprint) -> list[str]:
    return [*bp.spec.features.key, *bp.spec.features.carry, bp.spec.prediction, MODEL_VERSION]


def empty_predictions(bp: Blueprint) -> pl.DataFrame:
    dtypes = feature_dtypes(bp.spec)
    return pl.DataFrame(schema={**{c: dtypes[c] for c in [*bp.spec.features.key, *bp.spec.features.carry]},
                                bp.spec.prediction: pl.Float64, MODEL_VERSION: pl.String})


def score(bp: Blueprint, features: pl.DataFrame, pointer: dict, bundles: B.LoadedBundles) -> pl.DataFrame:
    version = f"{pointer['model_line']}/{pointer['version']}"
    return features.with_columns(pl.Series(bp.spec.prediction, bundles.scores(pointer, features)),
                                 pl.lit(version).alias(MODEL_VERSION)).select(prediction_columns(bp))


def build(bp: Blueprint) -> list:
    offset = bp.prediction_offset

    @dg.asset(key=bp.key("batch_predictions"), partitions_def=bp.partitions, group_name=DEPLOYMENT,
              kinds={"onnx", "polars"}, code_version="batch-v2", owners=list(bp.owners),
              ins={"features": dg.AssetIn(bp.key("features")),
                   "champion": dg.AssetIn(bp.key("champion"), input_manager_key="json_io_manager",
                                          partition_mapping=window(offset, offset))},
              backfill_policy=dg.BackfillPolicy.single_run(), tags=bp.tags(layer="deployment"),
              description=f"Every event of day D scored by the champion decided on D{offset} (the newest decision "
                          f"before the evening of D-1), from features alone. Empty while there is no champion yet.")
    def batch_predictions(context: dg.AssetExecutionContext, features: Days, champion: Days, storage: StorageRoot):
        bundles, results = B.LoadedBundles(storage.path(), keep=1), {}  # days in order: one champion at a time
        for day in context.partition_keys:
            refused = refused_upstream(day, features=features)
            if refused:
                results[day] = DayResult(refused)
                continue
            decided_on = day_offset(day, offset)
            state = champion.day(decided_on) if decided_on >= bp.spec.first_day.isoformat() else C.empty_state()
            if isinstance(state, Refused):
                results[day] = DayResult(Refused(f"upstream champion {decided_on}: {state.reason}"))
                continue
            pointer = state["champion"]
            frame = empty_predictions(bp) if pointer is None else score(bp, features[day], pointer, bundles)
            results[day] = DayResult(frame, {**frame_metadata(frame), "champion": C.name(pointer),
                                             "champion_decided_on": decided_on,
                                             f"mean_{bp.spec.prediction}": float(frame[bp.spec.prediction].mean() or 0)})
        yield from emit_days(context, results)

    return [batch_predictions]
