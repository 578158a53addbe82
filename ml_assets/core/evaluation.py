"""Holdout metrics, slices, calibration, latency, a markdown report and PNG plots.

Small numpy implementations (checked against scikit-learn in the tests) so that the metric a promotion
depends on is readable in one screen and has no hidden options.

Decision threshold: a late-flight model at a ~20% base rate rarely predicts p > 0.5, so 0.5 gives near
zero recall. The threshold used for precision/recall/F1 is therefore the one that maximizes F1 on the
*validation* split (chosen at training time and stored with the model, ``best_f1_threshold``); the
holdout is only measured with it, never used to choose it. 0.5 is the fallback when no validation rows exist.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Iterable, Mapping

import numpy as np
import polars as pl
DEFAULT_THRESHOLD = 0.5
CALIBRATION_BINS = 10
# A slice smaller than this is reported but never flagged: its AUC is too noisy to act on.
MIN_SLICE_ROWS = 150
# A slice whose AUC is this far below the overall AUC is flagged.
SLICE_GAP_TOLERANCE = 0.05


# ---------------------------------------------------------------- scalar metrics


def _arrays(y, p) -> tuple[np.ndarray, np.ndarray]:
    y_arr = np.asarray(y, dtype=np.float64).ravel()
    p_arr = np.asarray(p, dtype=np.float64).ravel()
    if y_arr.shape != p_arr.shape:
        raise ValueError(f"labels {y_arr.shape} and predictions {p_arr.shape} differ in length")
    return y_arr, p_arr


def _tie_averaged_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of the ranks they span."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    last_rank = np.cumsum(counts)
    return (last_rank - (counts - 1) / 2.0)[inverse]


def roc_auc(y, p) -> float:
    """Mann-Whitney U / (n_pos * n_neg); NaN when only one class is present."""
    y, p = _arrays(y, p)
    n_pos = float(y.sum())
    n_neg = float(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return math.nan
    rank_sum = _tie_averaged_ranks(p)[y == 1].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _descending_counts(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thresholds (distinct scores, high to low) with true/false positives when predicting p >= t."""
    order = np.argsort(-p, kind="mergesort")
    p_sorted, y_sorted = p[order], y[order]
    group_ends = np.r_[np.flatnonzero(np.diff(p_sorted)), p_sorted.size - 1]
    tp = np.cumsum(y_sorted)[group_ends]
    fp = (group_ends + 1) - tp
    return p_sorted[group_ends], tp, fp


def average_precision(y, p) -> float:
    """PR-AUC as average precision: sum over thresholds of (recall step) x precision."""
    y, p = _arrays(y, p)
    n_pos = y.sum()
    if n_pos == 0:
        return math.nan
    _, tp, fp = _descending_counts(y, p)
    precision = tp / (tp + fp)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def log_loss(y, p, eps: float = 1e-15) -> float:
    y, p = _arrays(y, p)
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def brier_score(y, p) -> float:
    y, p = _arrays(y, p)
    return float(np.mean((p - y) ** 2))


def reliability_curve(y, p, bins: int = CALIBRATION_BINS) -> list[dict]:
    """Equal-width probability bins: mean predicted vs observed late rate (empty bins omitted)."""
    y, p = _arrays(y, p)
    index = np.clip((p * bins).astype(int), 0, bins - 1)
    curve = []
    for b in range(bins):
        in_bin = index == b
        if in_bin.any():
            curve.append({
                "bin_low": b / bins, "bin_high": (b + 1) / bins, "count": int(in_bin.sum()),
                "mean_predicted": float(p[in_bin].mean()), "observed_rate": float(y[in_bin].mean()),
            })
    return curve


def expected_calibration_error(y, p, bins: int = CALIBRATION_BINS) -> float:
    """Row-weighted mean |predicted - observed| over the reliability bins."""
    y, _ = _arrays(y, p)
    if y.size == 0:
        return math.nan
    curve = reliability_curve(y, p, bins)
    return float(sum(b["count"] * abs(b["mean_predicted"] - b["observed_rate"]) for b in curve) / y.size)


def precision_recall_f1(y, p, threshold: float) -> dict[str, float]:
    """Predict late when p >= threshold."""
    y, p = _arrays(y, p)
    predicted = p >= threshold
    tp = float(np.sum(predicted & (y == 1)))
    fp = float(np.sum(predicted & (y == 0)))
    fn = float(np.sum(~predicted & (y == 1)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"threshold": float(threshold), "precision": precision, "recall": recall, "f1": f1}


def best_f1_threshold(y, p) -> float:
    """The score that, used as ``p >= t``, maximizes F1 (chosen on validation, stored with the model)."""
    y, p = _arrays(y, p)
    n_pos = y.sum()
    if y.size == 0 or n_pos == 0 or n_pos == y.size:
        return DEFAULT_THRESHOLD
    thresholds, tp, fp = _descending_counts(y, p)
    f1 = 2 * tp / (tp + fp + n_pos)
    return float(thresholds[int(np.argmax(f1))])


def classification_metrics(y, p, threshold: float = DEFAULT_THRESHOLD) -> dict[str, float]:
    y, p = _arrays(y, p)
    return {
        "rows": int(y.size),
        "late_rate": float(y.mean()) if y.size else math.nan,
        "mean_p_late": float(p.mean()) if p.size else math.nan,
        "roc_auc": roc_auc(y, p),
        "pr_auc": average_precision(y, p),
        "log_loss": log_loss(y, p) if y.size else math.nan,
        "brier": brier_score(y, p) if y.size else math.nan,
        "ece": expected_calibration_error(y, p),
        **precision_recall_f1(y, p, threshold),
    }


# ---------------------------------------------------------------- slices and the full evaluation


def slice_values(frame: pl.DataFrame, slices: Mapping[str, str]) -> pl.DataFrame:
    """One column per slice (its SQL expression evaluated on the rows), as strings."""
    return frame.select(pl.sql_expr(expr).cast(pl.String).alias(name) for name, expr in slices.items())


def labelled_rows(frame: pl.DataFrame, p: np.ndarray, label: str) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """Rows with a label (e.g. cancelled flights have none), their labels and their predictions."""
    p = np.asarray(p, dtype=np.float64).ravel()
    if p.size != frame.height:
        raise ValueError(f"{p.size} predictions for {frame.height} rows")
    keep = frame.get_column(label).is_not_null().to_numpy()
    rows = frame.filter(pl.Series(keep))
    return rows, rows.get_column(label).cast(pl.Float64).to_numpy(), p[keep]


def slice_metrics(values: pl.DataFrame, y: np.ndarray, p: np.ndarray, threshold: float, overall_auc: float,
                  min_rows: int = MIN_SLICE_ROWS, gap_tolerance: float = SLICE_GAP_TOLERANCE) -> list[dict]:
    """Metrics per value of each slice column (``values``: the slice columns of the labelled rows)."""
    out = []
    for column in values.columns:
        column_values = values.get_column(column).to_numpy()
        for value in sorted({v for v in column_values if v is not None}):
            in_slice = column_values == value
            m = classification_metrics(y[in_slice], p[in_slice], threshold)
            gap = m["roc_auc"] - overall_auc
            out.append({"slice": column, "value": str(value), **m, "auc_gap": gap,
                        "flagged": bool(m["rows"] >= min_rows and not math.isnan(gap) and gap < -gap_tolerance)})
    return out


def largest_gaps(slices: list[dict], top: int = 5, min_rows: int = MIN_SLICE_ROWS) -> list[dict]:
    """The slices (large enough to trust) that fall furthest below the overall AUC."""
    sized = [s for s in slices if s["rows"] >= min_rows and not math.isnan(s["auc_gap"])]
    return sorted(sized, key=lambda s: s["auc_gap"])[:top]


def evaluate(frame: pl.DataFrame, p: np.ndarray, threshold: float | None, label: str,
             slices: Mapping[str, str] | None = None, min_rows: int = MIN_SLICE_ROWS) -> dict:
    """Everything reports and gates need, on the labelled rows of ``frame`` (with the AUC's 95% interval)."""
    from ml_assets.core.stats import auc_ci

    chosen = DEFAULT_THRESHOLD if threshold is None else float(threshold)
    rows, y, p_labelled = labelled_rows(frame, p, label)
    overall = classification_metrics(y, p_labelled, chosen)
    if y.size and 0 < y.sum() < y.size:
        overall["auc_ci_low"], overall["auc_ci_high"] = (float(v) for v in auc_ci(y, p_labelled))
    else:
        overall["auc_ci_low"] = overall["auc_ci_high"] = math.nan
    result = slice_metrics(slice_values(rows, slices or {}), y, p_labelled, chosen, overall["roc_auc"], min_rows)
    return {
        "overall": overall,
        "threshold_source": "validation_best_f1" if threshold is not None else "default_0.5",
        "calibration": reliability_curve(y, p_labelled),
        "slices": result,
        "largest_gaps": largest_gaps(result, min_rows=min_rows),
        "flagged_slices": [f"{s['slice']}={s['value']}" for s in result if s["flagged"]],
    }


# ---------------------------------------------------------------- cost: latency and size


def measure_latency(
    predict: Callable[[pl.DataFrame], np.ndarray], frame: pl.DataFrame, single_rows: int = 50, batch_repeats: int = 3
) -> dict[str, float]:
    """Single-row latency (p50/p95 over the first rows) and whole-frame batch latency (best of repeats)."""
    predict(frame.head(1))  # warm-up: first-call costs (allocation, lazy init) are not steady state
    singles = []
    for i in range(min(single_rows, frame.height)):
        start = time.perf_counter()
        predict(frame.slice(i, 1))
        singles.append(time.perf_counter() - start)
    batches = []
    for _ in range(batch_repeats):
        start = time.perf_counter()
        predict(frame)
        batches.append(time.perf_counter() - start)
    batch = min(batches)
    return {
        "single_row_p50_ms": float(np.percentile(singles, 50) * 1e3) if singles else math.nan,
        "single_row_p95_ms": float(np.percentile(singles, 95) * 1e3) if singles else math.nan,
        "batch_rows": frame.height,
        "batch_ms": batch * 1e3,
        "batch_rows_per_second": frame.height / batch if batch > 0 else math.inf,
    }


def model_size_bytes(files: bytes | dict[str, bytes]) -> int:
    return len(files) if isinstance(files, (bytes, bytearray)) else sum(len(b) for b in files.values())


# ---------------------------------------------------------------- report


def _fmt(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def _table(rows: list[dict], columns: list[str]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return lines


def report_markdown(
    evaluation: dict,
    title: str = "Model evaluation",
    latency: dict | None = None,
    size_bytes: int | None = None,
    plot_files: Iterable[str] = (),
) -> str:
    """A human-readable report; ``plot_files`` are relative image paths to link (e.g. ``roc.png``)."""
    o = evaluation["overall"]
    lines = [f"# {title}", "", "## Overall", ""]
    lines += _table([{"metric": k, "value": v} for k, v in o.items()], ["metric", "value"])
    lines += ["", f"Threshold {o['threshold']:.4f} ({evaluation['threshold_source']}).", ""]
    lines += ["## Calibration", ""]
    lines += _table(evaluation["calibration"], ["bin_low", "bin_high", "count", "mean_predicted", "observed_rate"])
    lines += ["", "## Slices (largest AUC gaps vs overall)", ""]
    slice_cols = ["slice", "value", "rows", "late_rate", "roc_auc", "auc_gap", "pr_auc", "brier", "f1", "flagged"]
    lines += _table(evaluation["largest_gaps"], slice_cols)
    flagged = evaluation["flagged_slices"]
    lines += ["", f"Flagged slices: {', '.join(flagged) if flagged else 'none'}.", "", "## All slices", ""]
    lines += _table(evaluation["slices"], slice_cols)
    if latency or size_bytes is not None:
        lines += ["", "## Cost", ""]
        cost = [{"measure": k, "value": v} for k, v in (latency or {}).items()]
        if size_bytes is not None:
            cost.append({"measure": "model_size_bytes", "value": size_bytes})
        lines += _table(cost, ["measure", "value"])
    for name in plot_files:
        lines += ["", f"![{name}]({name})"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- plots (Agg canvas, no pyplot state)


def roc_points(y, p) -> tuple[np.ndarray, np.ndarray]:
    y, p = _arrays(y, p)
    _, tp, fp = _descending_counts(y, p)
    n_pos, n_neg = max(y.sum(), 1), max(y.size - y.sum(), 1)
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos]


def plot_roc(y, p) -> bytes:
    from matplotlib.figure import Figure

    from ml_assets.core.plots import png as _png

    fpr, tpr = roc_points(y, p)
    fig = Figure(figsize=(4, 4))
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, label=f"AUC {roc_auc(y, p):.3f}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax.legend(loc="lower right")
    return _png(fig)


def plot_pr(y, p) -> bytes:
    from matplotlib.figure import Figure

    from ml_assets.core.plots import png as _png

    y_arr, p_arr = _arrays(y, p)
    _, tp, fp = _descending_counts(y_arr, p_arr)
    fig = Figure(figsize=(4, 4))
    ax = fig.add_subplot()
    ax.step(tp / max(y_arr.sum(), 1), tp / (tp + fp), where="post", label=f"AP {average_precision(y, p):.3f}")
    ax.axhline(y_arr.mean() if y_arr.size else 0, linestyle="--", color="grey")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper right")
    return _png(fig)


def plot_calibration(y, p) -> bytes:
    from matplotlib.figure import Figure

    from ml_assets.core.plots import png as _png

    curve = reliability_curve(y, p)
    fig = Figure(figsize=(4, 4))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.plot([b["mean_predicted"] for b in curve], [b["observed_rate"] for b in curve], marker="o",
            label=f"ECE {expected_calibration_error(y, p):.3f}")
    ax.set(xlabel="mean predicted p_late", ylabel="observed late rate", title="Calibration", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left")
    return _png(fig)


def plot_slices(slices: list[dict], overall_auc: float, min_rows: int = MIN_SLICE_ROWS) -> bytes:
    from matplotlib.figure import Figure

    from ml_assets.core.plots import fit_bar_labels, png as _png

    rows = [s for s in slices if not math.isnan(s["roc_auc"])]
    fig = Figure(figsize=(6, max(2.5, 0.25 * len(rows) + 1)))
    ax = fig.add_subplot()
    labels = [f"{s['slice']}={s['value']}" for s in rows]
    colors = ["tab:red" if s["flagged"] else "tab:blue" if s["rows"] >= min_rows else "lightgrey" for s in rows]
    ax.barh(labels, [s["roc_auc"] for s in rows], color=colors)
    ax.axvline(overall_auc, color="black", linestyle="--")
    ax.set(xlabel="ROC-AUC (slices with fewer rows than the minimum are grey)", title="AUC per slice (red: flagged)",
           xlim=(0.0, 1.0))
    ax.invert_yaxis()
    fit_bar_labels(fig, labels)
    return _png(fig)


def evaluation_plots(frame: pl.DataFrame, p: np.ndarray, evaluation: dict, label: str) -> dict[str, bytes]:
    """PNG bytes by file name, ready to store next to the report."""
    _, y, p_labelled = labelled_rows(frame, p, label)
    return {
        "roc.png": plot_roc(y, p_labelled),
        "pr.png": plot_pr(y, p_labelled),
        "calibration.png": plot_calibration(y, p_labelled),
        "slices.png": plot_slices(evaluation["slices"], evaluation["overall"]["roc_auc"]),
    }
