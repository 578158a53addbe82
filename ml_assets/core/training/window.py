"""Which rows a model for day D learns from, and the history-rate features derived from them.

The model for day D is trained on the labelled rows of days D-W .. D-1 (it is used the evening before D,
so D itself is never in its training data). The last days of that window are the validation split: a
time-based split, because a random split would let the model peek at the same weather day it is
validated on and overstate its quality.

History rates (route, carrier, origin late rates) are target statistics. To keep them free of leakage:
- the shipped encoding is fitted on the training split only (never on validation or scored rows);
- training rows get *leave-one-day-out* rates: a row of day d sees the rates of the other training days.
  A row never sees its own label, nor its own day's weather-driven lateness, which mirrors scoring, where
  the scored day is never part of the rates.
The encoding is plain JSON (``HistoryRates.to_json``) and is embedded as lookup tables in the ONNX graph.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from ml_assets.core.features import LABEL

# The order rows are sorted in before training: any input order gives the same model bytes.
ROW_ORDER = ["date", "sched_dep_time", "carrier", "flight", "origin", "dest", "tailnum"]
RATE_KEYS = ["route", "carrier", "origin"]
# A category seen in PRIOR_WEIGHT flights is pulled halfway toward the global rate.
DEFAULT_PRIOR_WEIGHT = 20.0
# Single-day windows fall back to a row split: this share of the (time-sorted) rows is validation.
SINGLE_DAY_VALIDATION_SHARE = 0.2


def rate_column(key: str) -> str:
    return f"{key}_late_rate"


RATE_COLUMNS = [rate_column(k) for k in RATE_KEYS]


def canonical_order(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows in a fixed order, so that a model does not depend on the order its rows arrived in."""
    return frame.sort(ROW_ORDER, nulls_last=True, maintain_order=True)


def labelled_window(frame: pl.DataFrame, day: dt.date, window_days: int = 28) -> pl.DataFrame:
    """Labelled rows of days ``day - window_days`` .. ``day - 1``, in a canonical order."""
    start = day - dt.timedelta(days=window_days)
    return canonical_order(
        frame.filter(pl.col("date").is_between(start, day, closed="left") & pl.col(LABEL).is_not_null())
    )


def validation_day_count(n_days: int, validation_days: int) -> int:
    """Validation never takes more than half of the days, yet at least one when there are two or more."""
    if n_days < 2:
        return 0
    return max(1, min(validation_days, n_days // 2))


def split_window(
    frame: pl.DataFrame, day: dt.date, window_days: int = 28, validation_days: int = 3
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(train, valid) from the labelled rows of the ``window_days`` days before ``day``.

    The last ``validation_days`` days are validation (fewer when the window is short, see
    ``validation_day_count``). With a single day, the last 20% of that day's rows in scheduled-time
    order are validation: still "the later rows validate the earlier ones", and deterministic.
    """
    rows = labelled_window(frame, day, window_days)
    days = rows.get_column("date").unique().sort().to_list()
    n_valid_days = validation_day_count(len(days), validation_days)
    if n_valid_days:
        first_valid = days[len(days) - n_valid_days]
        return rows.filter(pl.col("date") < first_valid), rows.filter(pl.col("date") >= first_valid)
    n_valid = int(round(rows.height * SINGLE_DAY_VALIDATION_SHARE))
    if rows.height >= 2:
        n_valid = min(max(n_valid, 1), rows.height - 1)
    return rows.head(rows.height - n_valid), rows.tail(n_valid)


@dataclass(frozen=True)
class HistoryRates:
    """Smoothed late rates per category, fitted on training rows: the JSON-serializable encoding."""

    global_rate: float
    prior_weight: float
    tables: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "global_rate": self.global_rate,
            "prior_weight": self.prior_weight,
            "tables": {k: dict(sorted(v.items())) for k, v in sorted(self.tables.items())},
        }

    @classmethod
    def from_json(cls, data: dict) -> HistoryRates:
        return cls(
            global_rate=float(data["global_rate"]),
            prior_weight=float(data["prior_weight"]),
            tables={k: {str(c): float(r) for c, r in v.items()} for k, v in data["tables"].items()},
        )

    def default_for(self, key: str) -> float:
        """The rate of a category never seen in training: the global rate."""
        return self.global_rate


def _as_float32(value: float) -> float:
    # Rates are stored at float32 precision: the models see float32 and the ONNX lookup tables hold
    # float32, so rounding once here makes native and ONNX inputs bit-identical.
    return float(np.float32(value))


def _smoothed(late: pl.Expr, count: pl.Expr, prior_rate: pl.Expr | float, prior_weight: float) -> pl.Expr:
    return (late + prior_weight * prior_rate) / (count + prior_weight)


def fit_history_rates(train: pl.DataFrame, prior_weight: float = DEFAULT_PRIOR_WEIGHT) -> HistoryRates:
    """Late rate per route / carrier / origin over ``train``, shrunk toward the global rate."""
    labels = train.get_column(LABEL).drop_nulls()
    global_rate = _as_float32(labels.mean() if labels.len() else 0.0)
    tables: dict[str, dict[str, float]] = {}
    for key in RATE_KEYS:
        per = (
            train.filter(pl.col(LABEL).is_not_null() & pl.col(key).is_not_null())
            .group_by(key)
            .agg(late=pl.col(LABEL).cast(pl.Float64).sum(), count=pl.len())
            .with_columns(rate=_smoothed(pl.col("late"), pl.col("count"), global_rate, prior_weight))
            .sort(key)
        )
        tables[key] = {c: _as_float32(r) for c, r in zip(per[key].to_list(), per["rate"].to_list())}
    return HistoryRates(global_rate=global_rate, prior_weight=prior_weight, tables=tables)


def apply_history_rates(frame: pl.DataFrame, rates: HistoryRates) -> pl.DataFrame:
    """Attach ``<key>_late_rate`` columns to a frame to be scored (validation, holdout, serving)."""
    return frame.with_columns(
        pl.col(key)
        .replace_strict(rates.tables[key], default=rates.default_for(key), return_dtype=pl.Float64)
        .alias(rate_column(key))
        for key in RATE_KEYS
    )


def add_out_of_day_rates(train: pl.DataFrame, prior_weight: float = DEFAULT_PRIOR_WEIGHT) -> pl.DataFrame:
    """Training rows' rate features, each from the *other* training days (leave-one-day-out)."""
    label = pl.col(LABEL).cast(pl.Float64)
    totals = train.select(late=label.sum(), count=pl.len())
    late_all, count_all = float(totals["late"][0] or 0.0), int(totals["count"][0])
    per_day = train.group_by("date").agg(day_late=label.sum(), day_count=pl.len())
    # The prior of a day is the global rate of the other days; with one day only, there are no other
    # days: fall back to that day's own global rate (a constant, so it carries no per-row signal).
    per_day = per_day.with_columns(
        prior=pl.when(pl.col("day_count") < count_all)
        .then((late_all - pl.col("day_late")) / (count_all - pl.col("day_count")))
        .otherwise(late_all / max(count_all, 1))
    )
    out = train.join(per_day.select("date", "prior"), on="date", how="left", maintain_order="left")
    for key in RATE_KEYS:
        by_key = train.group_by(key).agg(key_late=label.sum(), key_count=pl.len())
        by_key_day = train.group_by(key, "date").agg(kd_late=label.sum(), kd_count=pl.len())
        out = (
            out.join(by_key, on=key, how="left", maintain_order="left", nulls_equal=True)
            .join(by_key_day, on=[key, "date"], how="left", maintain_order="left", nulls_equal=True)
            .with_columns(
                _smoothed(
                    pl.col("key_late") - pl.col("kd_late"),
                    pl.col("key_count") - pl.col("kd_count"),
                    pl.col("prior"),
                    prior_weight,
                )
                .cast(pl.Float32)
                .cast(pl.Float64)
                .alias(rate_column(key))
            )
            .drop("key_late", "key_count", "kd_late", "kd_count")
        )
    return out.drop("prior")


def add_history_rates(
    train_frame: pl.DataFrame, score_frame: pl.DataFrame, prior_weight: float = DEFAULT_PRIOR_WEIGHT
) -> pl.DataFrame:
    """``score_frame`` with rate columns computed from ``train_frame`` only (convenience wrapper)."""
    return apply_history_rates(score_frame, fit_history_rates(train_frame, prior_weight))


def encoding_to_json_text(rates: HistoryRates) -> str:
    return json.dumps(rates.to_json(), sort_keys=True)
