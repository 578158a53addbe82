"""PNG plots for reports (matplotlib, headless)."""
from __future__ import annotations

import io

import polars as pl


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    _figure().close(fig)
    return buf.getvalue()


def drift_bars(drift: pl.DataFrame, thresholds: dict[str, float], title: str) -> bytes:
    """Horizontal bars of each column's drift, with the warning thresholds drawn."""
    plt = _figure()
    d = drift.fill_nan(None).drop_nulls("value").sort("value")
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.28 * d.height)))
    colors = ["#d62728" if v > thresholds.get(k, 1.0) else "#1f77b4"
              for v, k in zip(d["value"].to_list(), d["metric"].to_list())]
    ax.barh(d["column"].to_list(), d["value"].to_list(), color=colors)
    for metric, t in thresholds.items():
        ax.axvline(t, linestyle="--", linewidth=1, color="gray")
        ax.text(t, -0.8, f" {metric} {t}", fontsize=7, color="gray")
    ax.set_xlabel("drift vs trailing window (L-inf for categoricals, Jensen-Shannon for numerics)")
    ax.set_title(title)
    return _png(fig)


def daily_series(days: list, values: list[float], title: str, ylabel: str) -> bytes:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 2.8))
    ax.plot(days, values, marker="o")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.autofmt_xdate()
    return _png(fig)
