"""PNG plots for reports (matplotlib's Agg canvas: no pyplot state, safe in any thread)."""
from __future__ import annotations

import io

import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

DPI = 110  # readable in the UI panel without zooming


def png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def fit_bar_labels(fig: Figure, labels: list[str], fontsize: float = 10.0) -> None:
    """Room on the left for horizontal bars' labels, from their length.

    ``tight_layout`` measures every text by drawing it and costs ~0.2 s a figure, more than the plot itself:
    two such plots a day are a visible share of a year's backfill. An average glyph is ~0.6 em wide.
    """
    width, height = fig.get_size_inches()
    label_inches = 0.6 * fontsize / 72 * max((len(s) for s in labels), default=1) + 0.25
    fig.subplots_adjust(left=min(0.6, label_inches / width), right=0.97,
                        bottom=min(0.4, 0.55 / height), top=1 - min(0.3, 0.4 / height))


def drift_bars(drift: pl.DataFrame, thresholds: dict[str, float], title: str, top: int = 20) -> bytes:
    """Horizontal bars of the ``top`` most drifted columns, with the warning thresholds drawn (the drift table
    beside it lists every column)."""
    d = drift.fill_nan(None).drop_nulls("value").sort("value").tail(top)
    fig = Figure(figsize=(7, max(2.5, 0.28 * d.height)))
    ax = fig.add_subplot()
    colors = ["#d62728" if v > thresholds.get(k, 1.0) else "#1f77b4"
              for v, k in zip(d["value"].to_list(), d["metric"].to_list())]
    ax.barh(d["column"].to_list(), d["value"].to_list(), color=colors)
    for metric, t in thresholds.items():
        ax.axvline(t, linestyle="--", linewidth=1, color="gray")
        ax.text(t, -0.8, f" {metric} {t}", fontsize=7, color="gray")
    ax.set_xlabel("drift vs trailing window (L-inf: categorical, Jensen-Shannon: numeric)", fontsize=9)
    ax.set_title(title)
    fit_bar_labels(fig, d["column"].to_list())
    return png(fig)


def daily_series(days: list, values: list[float], title: str, ylabel: str,
                 band: list[tuple[float, float, float]] | None = None) -> bytes:
    """Daily points; with ``band`` (mean, low, high per day) a rolling mean line and its shaded interval."""
    fig = Figure(figsize=(7, 2.8))
    ax = fig.add_subplot()
    ax.plot(days, values, marker="o", linestyle="none", markersize=3, label="day")
    if band:
        ax.plot(days, [b[0] for b in band], color="tab:orange", label="rolling mean")
        ax.fill_between(days, [b[1] for b in band], [b[2] for b in band], color="tab:orange", alpha=0.2)
        ax.legend(loc="lower left", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    fig.autofmt_xdate()
    return png(fig)


def distributions(current: pl.DataFrame, reference: pl.DataFrame, columns: list[str]) -> bytes:
    """Small multiples: the day's histogram of each numeric column (blue) over the trailing window's (grey).

    Drawn as one step artist per histogram (``stairs``), not a patch per bar: a fraction of ``hist``'s cost."""
    import numpy as np

    n = len(columns)
    cols = 4
    rows = max(1, (n + cols - 1) // cols)
    fig = Figure(figsize=(10, 2.0 * rows))
    for i, column in enumerate(columns):
        ax = fig.add_subplot(rows, cols, i + 1)
        today = current[column].drop_nulls().cast(pl.Float64).to_numpy()
        past = reference[column].drop_nulls().cast(pl.Float64).to_numpy() if reference.height else np.array([])
        both = np.concatenate([today, past])
        if both.size:
            bins = np.histogram_bin_edges(both, bins=20)
            if past.size:
                ax.stairs(np.histogram(past, bins=bins, density=True)[0], bins, fill=True, color="lightgrey")
            if today.size:
                ax.stairs(np.histogram(today, bins=bins, density=True)[0], bins, color="tab:blue")
        ax.set_title(column, fontsize=8)
        ax.set_yticks([])  # densities: the shapes matter, not the numbers (and ticks are most of the drawing)
        ax.tick_params(labelsize=6)
        ax.xaxis.set_major_locator(MaxNLocator(4))
    fig.subplots_adjust(hspace=0.6, wspace=0.3, left=0.04, right=0.99, top=0.93, bottom=0.06)
    return png(fig)
