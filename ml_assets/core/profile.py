"""Per-partition statistics and drift against a reference window (pure polars/numpy).

Drift: L-infinity distance between category frequency vectors for categoricals; Jensen-Shannon
divergence (base 2, so 0..1) between histograms on the reference's quantile bins for numerics.
"""
from __future__ import annotations

import math

import numpy as np
import polars as pl

QUANTILES = (0.01, 0.25, 0.5, 0.75, 0.99)
N_BINS = 10
TOP_CATEGORIES = 10


def numeric_stats(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    rows = []
    for c in columns:
        s = frame[c].cast(pl.Float64)
        q = {f"q{int(p * 100):02d}": s.quantile(p, "linear") for p in QUANTILES}
        rows.append({"column": c, "count": s.len(), "nulls": s.null_count(),
                     "null_share": s.null_count() / max(s.len(), 1), "mean": s.mean(), "std": s.std(),
                     "min": s.min(), **q, "max": s.max()})
    return pl.DataFrame(rows, schema_overrides={"count": pl.Int64, "nulls": pl.Int64})


def category_frequencies(frame: pl.DataFrame, column: str) -> dict[str, float]:
    counts = frame[column].fill_null("<null>").value_counts(sort=True, normalize=True)
    return dict(zip(counts[column].to_list(), counts["proportion"].to_list()))


def categorical_stats(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    rows = []
    for c in columns:
        freq = category_frequencies(frame, c)
        top = ", ".join(f"{k} {v:.1%}" for k, v in list(freq.items())[:TOP_CATEGORIES])
        rows.append({"column": c, "count": frame.height, "nulls": frame[c].null_count(),
                     "distinct": len(freq), "top": top})
    return pl.DataFrame(rows, schema_overrides={"count": pl.Int64, "nulls": pl.Int64, "distinct": pl.Int64})


def label_rate(frame: pl.DataFrame, label: str) -> float | None:
    s = frame[label].drop_nulls()
    return None if s.is_empty() else float(s.cast(pl.Float64).mean())


def linf_distance(current: dict[str, float], reference: dict[str, float]) -> float:
    keys = set(current) | set(reference)
    return max((abs(current.get(k, 0.0) - reference.get(k, 0.0)) for k in keys), default=0.0)


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits between two (unnormalized) histograms; 0 = same, 1 = disjoint."""
    p = np.asarray(p, dtype=float)
    q = np.asarray(q, dtype=float)
    if p.sum() == 0 or q.sum() == 0:
        return float("nan")
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / b[mask])))

    return (kl(p, m) + kl(q, m)) / 2


def histogram_bins(reference: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """Inner bin edges at the reference's quantiles (deduplicated for discrete columns)."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, n_bins + 1)[1:-1]))
    return edges


def numeric_js(current: pl.Series, reference: pl.Series) -> float:
    cur = current.drop_nulls().cast(pl.Float64).to_numpy()
    ref = reference.drop_nulls().cast(pl.Float64).to_numpy()
    if len(cur) == 0 or len(ref) == 0:
        return float("nan")
    edges = histogram_bins(ref)
    # Bin i holds values in (edges[i-1], edges[i]]; two open-ended bins at the ends.
    n = len(edges) + 1
    p = np.bincount(np.searchsorted(edges, cur, side="left"), minlength=n)
    q = np.bincount(np.searchsorted(edges, ref, side="left"), minlength=n)
    return js_divergence(p, q)


def drift(current: pl.DataFrame, reference: pl.DataFrame, numeric: list[str], categorical: list[str]) -> pl.DataFrame:
    """One row per column: kind, metric, value (NaN when either side has no data)."""
    rows = []
    for c in categorical:
        value = (linf_distance(category_frequencies(current, c), category_frequencies(reference, c))
                 if current.height and reference.height else float("nan"))
        rows.append({"column": c, "kind": "categorical", "metric": "linf", "value": value})
    for c in numeric:
        rows.append({"column": c, "kind": "numeric", "metric": "jensen_shannon",
                     "value": numeric_js(current[c], reference[c])})
    return pl.DataFrame(rows, schema={"column": pl.String, "kind": pl.String, "metric": pl.String,
                                      "value": pl.Float64})


def row_count_deviation(count: int, trailing_counts: list[int]) -> float | None:
    """Relative distance of ``count`` from the trailing median (None without history)."""
    if not trailing_counts:
        return None
    median = float(np.median(trailing_counts))
    return math.inf if median == 0 else abs(count - median) / median


def most_drifted(drift: pl.DataFrame, columns: list[str], quiet: list[str], n: int = 8) -> list[str]:
    """The ``n`` columns worth a look: the most drifted of those the drift check judges, then of the quiet ones
    (calendar, weather, day counts drift by nature); the first ``columns`` when nothing was compared."""
    ranked = (drift.with_columns(pl.col("value").fill_nan(None))
              .filter(pl.col("column").is_in(columns) & pl.col("value").is_not_null())
              .sort([pl.col("column").is_in(quiet), pl.col("value")], descending=[False, True]))
    return (ranked["column"].to_list() if ranked.height else columns)[:n]
