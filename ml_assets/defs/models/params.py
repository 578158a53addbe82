"""<family>_params: the hyperparameters a tunable family trains with, searched every few days within a budget.

On a search day (every ``tune_every_days`` days from the feed's first day) the day's training set is searched
(``core.tuning.search``: out of sample on the window's last week, the best trial adopted only when it beats the
defaults by more than a standard error, paired per day); on the other days nothing is searched and the value says
so. A candidate of day D trains with the newest search of the two cycles before D (else the defaults): the daily
refits reuse the weekly search, and the lineage, the MLflow run and the UI say which search that was.
"""

import dagster as dg
import polars as pl

from ml_assets.core import families as FAM
from ml_assets.core.tuning import WINDOW_PARAM, search
from ml_assets.defs.blueprint import MODELS, Blueprint, day_offset, window
from ml_assets.defs.days import DayResult, Days, Refused, emit_days
from ml_assets.defs.metadata import table

CODE_VERSION = "params-v1"
VALIDATION_DAYS = 7
WINDOW_CHOICES = (None, 42, 28)  # None: the whole training window


def not_searched(reason: str) -> dict:
    return {"searched": False, "reason": reason}


def search_day(bp: Blueprint, family: str, day: str, training: pl.DataFrame | Refused) -> DayResult:
    if not bp.tune_every_days:
        return DayResult(not_searched("searches are off (ML_ASSETS_TUNE_EVERY_DAYS=0): the spec's recipe trains"),
                         {"searched": False})
    if not bp.is_search_day(day):
        return DayResult(not_searched(f"not a search day (every {bp.tune_every_days} days from "
                                      f"{bp.spec.first_day})"), {"searched": False})
    if isinstance(training, Refused):
        return DayResult(not_searched(f"training_set {day}: {training.reason}"), {"searched": False})
    from ml_assets.defs.models.candidates import model_inputs

    rows = training.drop("split")
    n_days = rows["date"].n_unique()
    # A week validates (a quarter of a short window), at least twice as many days train
    validation = min(VALIDATION_DAYS, max(1, n_days // 4))
    found = search(FAM.get(family), rows, model_inputs(bp), bp.tune_trials, bp.tune_seconds,
                   validation_days=validation, min_train_days=2 * validation, window_choices=WINDOW_CHOICES,
                   base_params=bp.spec.models.get(family))
    value = {"searched": found["search"]["trials"] > 0, "day": day, **found}
    shown = {k: v for k, v in found["params"].items() if not isinstance(v, (dict, list))}
    metadata = {"searched": value["searched"], "adopted": bool(found["search"].get("adopted", False)),
                "params": table(pl.DataFrame({"param": list(shown), "value": [str(v) for v in shown.values()]})),
                "search": dg.MetadataValue.json(found["search"])}
    return DayResult(value, metadata)


def params_asset(bp: Blueprint, family: str) -> dg.AssetsDefinition:
    from ml_assets.defs.models.candidates import recipe_version

    @dg.asset(key=bp.params(family), partitions_def=bp.partitions, group_name=MODELS, kinds={"optuna"},
              io_manager_key="json_io_manager", code_version=f"{CODE_VERSION}-every{bp.tune_every_days}-"
              f"{bp.tune_trials}x{bp.tune_seconds}s-{recipe_version(bp, family)}", ins={"training_set": dg.AssetIn(bp.key("training_set"))},
              backfill_policy=dg.BackfillPolicy.single_run(), owners=list(bp.owners),
              tags=bp.tags(layer="models", family=family),
              description=f"The {family} hyperparameters: an optuna search of {bp.tune_trials} trials (at most "
                          f"{bp.tune_seconds} s) every {bp.tune_every_days or 'no'} days "
                          f"(ML_ASSETS_TUNE_EVERY_DAYS), out of sample on the window's last {VALIDATION_DAYS} days, "
                          "adopted only when clearly better than the dataset's recipe.")
    def _params(context: dg.AssetExecutionContext, training_set: Days):
        results = {day: search_day(bp, family, day, training_set.day(day)) for day in context.partition_keys}
        yield from emit_days(context, results)

    return _params


def params_input(bp: Blueprint, family: str) -> dg.AssetIn:
    """What a candidate of D reads: the searches of the two cycles up to D (the newest that searched wins)."""
    span = max(1, 2 * bp.tune_every_days)
    return dg.AssetIn(bp.params(family), partition_mapping=window(-(span - 1), 0))


def params_for(searches: Days, day: str, span: int) -> tuple[dict, dict]:
    """(params over the defaults, lineage) for a candidate of ``day``: the newest search up to ``day``."""
    for key in sorted(searches.usable([day_offset(day, -i) for i in range(span)]), reverse=True):
        value = searches[key]
        if value.get("searched"):
            params = dict(value["params"])
            return params, {"params_from": key, "search": value["search"]}
    return {}, {"params_from": "defaults (no search in the last cycles)"}


def build(bp: Blueprint) -> list:
    return [params_asset(bp, f) for f in bp.tuned_families]


__all__ = ["WINDOW_PARAM", "build", "params_for", "params_input"]
