"""live_performance: day D's predictions (batch, online, shadow) joined with D's outcomes when they land.

Judged as a daily series: ``live_auc_drop`` warns when the rolling 7-day live AUC of the batch predictions is
significantly below the 28 days before it, judged against the series' own day-to-day spread (one noisy day never
fires it); ``label_balance`` when the day's positive share moved by the band or more against the trailing 28
days, beyond what those days' own spread allows (a stormy day is late more often); ``serving_skew`` when the
server's logged feature rows differ from the stored features of the same events.
"""

import datetime as dt

import dagster as dg
import polars as pl
from pydantic import Field

from ml_assets.core import live
from ml_assets.core import prediction_log as LOG
from ml_assets.core.schemas import feature_dtypes
from ml_assets.defs.blueprint import MONITORING, Blueprint, window
from ml_assets.defs.days import DayResult, Days, day_check_spec, emit_days, refused_upstream
from ml_assets.defs.metadata import numbers, png, table
from ml_assets.resources.storage import StorageRoot


class MonitoringSettings(dg.ConfigurableResource):
    alpha: float = Field(0.01, description="one-sided significance of a live AUC drop (Feb-Jun 2013: fires on 2% "
                                           "of normal days at 1%, 7% at 5%)")
    label_band: float = Field(0.2, description="a move of the positive share by this much (inclusive) warns")
    skew_max_share: float = Field(0.01, description="share of logged rows allowed to differ from the stored ones")


def _series(bp: Blueprint, predictions: Days, labelled: Days, days: list[str]) -> list[dict]:
    key, label, prediction = bp.spec.features.key, bp.spec.label.name, bp.spec.prediction
    out = []
    for day in days:
        p, lab = predictions.get(day), labelled.get(day)
        if isinstance(p, pl.DataFrame) and isinstance(lab, pl.DataFrame) and p.height:
            out.append({"day": day, **live.day_estimate(live.join_labels(p, lab, key, label, prediction), label,
                                                        prediction)})
        else:
            out.append({"day": day, "rows": 0, "auc": float("nan"), "variance": float("nan")})
    return out


def _online(bp: Blueprint, root, day: str, labelled: pl.DataFrame, skew_max_share: float
            ) -> tuple[dict, list[dg.AssetCheckResult], dict]:
    spec = bp.spec
    key, label, prediction = spec.features.key, spec.label.name, spec.prediction
    dtypes = feature_dtypes(spec)
    lines = LOG.read_day(root, spec.name, day)
    frame = LOG.as_frame(lines, key, {c: dtypes[c] for c in key}, prediction)
    joined = live.join_labels(frame, labelled, key, label, prediction)
    rows = {"online": live.day_estimate(joined, label, prediction)}
    shadow = joined.filter(pl.col("shadow_p").is_not_null())
    if shadow.height:
        rows["shadow"] = live.day_estimate(shadow.with_columns(pl.col("shadow_p").alias(prediction)), label, prediction)
        rows["online_vs_shadow_rows"] = {"rows": shadow.height}
    checks, about = [], {"online_requests": len(lines), "online_events": frame.height}
    if lines:
        from ml_assets.core import stats

        skew = live.skew(LOG.logged_features(lines), labelled, key, spec.model_inputs)
        about["serving_skew"] = dg.MetadataValue.json(skew)
        checks.append(dg.AssetCheckResult(
            check_name="serving_skew", passed=skew["rows"] > 0 and skew["share"] <= skew_max_share,
            severity=dg.AssetCheckSeverity.WARN, metadata={"rows": skew["rows"], "differing_rows": skew["differing_rows"],
                                                           "share": skew["share"]}))
        if shadow.height >= 20 and shadow[label].n_unique() == 2:
            d = stats.paired_auc_difference(shadow[label].cast(pl.Float64).to_numpy(), shadow["shadow_p"].to_numpy(),
                                            shadow[prediction].to_numpy())
            about["shadow_vs_champion"] = dg.MetadataValue.json(d.as_dict())
    return rows, checks, about


def _label_delay(context, bp: Blueprint, day: str) -> dict:
    """The label delay actually observed: when the day's outcomes were delivered (raw_outcomes' metadata)."""
    records = context.instance.fetch_materializations(dg.AssetRecordsFilter(
        asset_key=bp.raw(bp.spec.outcomes_name), asset_partitions=[day]), limit=1).records
    meta = records[0].asset_materialization.metadata if records else {}
    hours = meta.get("hours_after_the_day")
    return {"label_delay_hours": hours.value} if hours is not None else {}


def _drop_check(drop: dict) -> list[dg.AssetCheckResult]:
    if not drop["evaluated"]:  # the start of the feed: nothing to compare with, not a failure
        return []
    return [dg.AssetCheckResult(
        check_name="live_auc_drop", passed=drop["passed"], severity=dg.AssetCheckSeverity.WARN,
        description=drop["reason"], metadata=numbers({k: drop[k] for k in ("drop", "se", "day_to_day_sd", "p_value")}
                                                     | {"window_auc": drop["window"]["mean"],
                                                        "reference_auc": drop["reference"]["mean"]}))]


def _balance_check(bp: Blueprint, labelled: Days, day: str, band: float) -> list[dg.AssetCheckResult]:
    label = bp.spec.label.name
    trailing = labelled.usable([d for d in labelled if d < day][-bp.reference_window:])
    today = labelled[day][label].drop_nulls()
    if not trailing or not today.len():
        return []
    reference = [(int(f[label].drop_nulls().sum()), f[label].drop_nulls().len()) for f in trailing.values()]
    balance = live.label_balance(int(today.sum()), today.len(), reference, band)
    return [dg.AssetCheckResult(check_name="label_balance", passed=balance["passed"],
                                severity=dg.AssetCheckSeverity.WARN,
                                metadata=numbers({**{k: v for k, v in balance.items() if k != "ci"},
                                                  "shift_ci_low": balance["ci"][0],
                                                  "shift_ci_high": balance["ci"][1]}))]


def _trend(series: list[dict], window_days: int):
    from ml_assets.core.plots import daily_series  # matplotlib: not at definitions load

    rolled = live.rolling(series, window_days)
    return png(daily_series([dt.date.fromisoformat(r["day"]) for r in rolled], [r["auc"] for r in rolled],
                            f"live AUC (batch) with the rolling {window_days}-day mean and its 95% interval",
                            "ROC-AUC", band=[(r["mean"], r["low"], r["high"]) for r in rolled]), "live AUC trend")


def _day(context, bp: Blueprint, day: str, predictions: Days, labelled: Days, root, monitoring: MonitoringSettings,
         trend: bool) -> DayResult:
    """Day D's live rows (batch and online), its rolling series and its three checks."""
    start = (dt.date.fromisoformat(day) - dt.timedelta(days=bp.monitoring_window + bp.reference_window - 1))
    series = _series(bp, predictions, labelled, [d for d in sorted(set(predictions) | set(labelled))
                                                 if start.isoformat() <= d <= day])
    today = series[-1]
    drop = live.drop_test(series, bp.monitoring_window, bp.reference_window, monitoring.alpha)
    online, checks, about = _online(bp, root, day, labelled[day], monitoring.skew_max_share)
    rows = [{"date": day, "source": "batch", **{k: today.get(k) for k in ("rows", "auc", "positive_share")},
             "rolling_auc": drop["window"]["mean"], "rolling_days": drop["window"]["days"]}]
    rows += [{"date": day, "source": s, **{k: v.get(k) for k in ("rows", "auc", "positive_share")}}
             for s, v in online.items() if "auc" in v]
    frame = pl.DataFrame(rows, strict=False).with_columns(pl.col("date").str.to_date())
    checks += _drop_check(drop) + _balance_check(bp, labelled, day, monitoring.label_band)
    metadata = {"dagster/row_count": frame.height, "live_auc": table(frame), **_label_delay(context, bp, day),
                **numbers({"batch_auc": today["auc"], "rolling_auc": drop["window"]["mean"],
                           "rolling_se": drop["window"]["se"]}), **about}
    if trend and len(series) > 1:
        metadata["trend"] = _trend(series, bp.monitoring_window)
    return DayResult(frame, metadata, checks)


def build(bp: Blueprint) -> list:
    key = bp.key("live_performance")
    span = bp.monitoring_window + bp.reference_window
    kw = {"asset": key, "partitions_def": bp.partitions}

    @dg.asset(key=key, partitions_def=bp.partitions, group_name=MONITORING, kinds={"polars"},
              code_version="live-v3", owners=list(bp.owners), tags=bp.tags(layer="monitoring"),
              ins={"predictions": dg.AssetIn(bp.key("batch_predictions"), partition_mapping=window(-(span - 1), 0)),
                   "labelled": dg.AssetIn(bp.key("labelled_features"), partition_mapping=window(-(span - 1), 0))},
              check_specs=[
                  day_check_spec("live_auc_drop", description=f"rolling {bp.monitoring_window}-day live AUC not "
                                 f"significantly below the {bp.reference_window} days before (warns)", **kw),
                  day_check_spec("label_balance", description="the positive share did not move by the band or more "
                                 f"against the trailing {bp.reference_window} days, beyond their own day-to-day "
                                 "spread (warns)", **kw),
                  day_check_spec("serving_skew", description="the server's logged features equal the stored "
                                 "features of the same events (warns; evaluated when the server answered)", **kw)],
              backfill_policy=dg.BackfillPolicy.single_run(),
              description=f"Day D's batch predictions (and the server's logged online and shadow answers) joined with "
                          f"D's outcomes, {bp.outcome_lag} day(s) after D: AUC with intervals, the rolling "
                          f"{bp.monitoring_window}-day series, label balance, serving skew.")
    def live_performance(context: dg.AssetExecutionContext, predictions: Days, labelled: Days, storage: StorageRoot,
                         monitoring: MonitoringSettings):
        results = {}
        for day in context.partition_keys:
            refused = refused_upstream(day, batch_predictions=predictions, labelled=labelled)
            results[day] = DayResult(refused) if refused else _day(
                context, bp, day, predictions, labelled, storage.path(), monitoring,
                trend=day == context.partition_keys[-1])
        yield from emit_days(context, results)

    return [live_performance]
