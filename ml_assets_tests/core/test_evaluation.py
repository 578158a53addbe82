"""Holdout metrics against scikit-learn, slices from the spec's SQL expressions, the AUC interval, reports."""
import math

import numpy as np
import polars as pl
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from ml_assets.core import evaluation as E
from ml_assets.core.stats import auc_ci


@pytest.fixture(params=[0, 1, 2])
def random_scores(request):
    rng = np.random.default_rng(request.param)
    n = 2000
    y = (rng.random(n) < 0.2).astype(float)
    p = np.clip(0.2 + 0.25 * (y - 0.2) + rng.normal(0, 0.15, n), 0.001, 0.999)
    if request.param == 2:
        p = np.round(p, 2)  # many ties: rank averaging and threshold grouping matter
    return y, p


def test_metrics_match_scikit_learn(random_scores):
    y, p = random_scores
    assert E.roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert E.average_precision(y, p) == pytest.approx(skm.average_precision_score(y, p), abs=1e-12)
    assert E.log_loss(y, p) == pytest.approx(skm.log_loss(y, p), abs=1e-12)
    assert E.brier_score(y, p) == pytest.approx(skm.brier_score_loss(y, p), abs=1e-12)
    prf = E.precision_recall_f1(y, p, 0.3)
    predicted = p >= 0.3
    assert prf["precision"] == pytest.approx(skm.precision_score(y, predicted))
    assert prf["recall"] == pytest.approx(skm.recall_score(y, predicted))
    assert prf["f1"] == pytest.approx(skm.f1_score(y, predicted))


def test_reliability_curve_matches_scikit_learn(random_scores):
    y, p = random_scores
    # Bin edges are [low, high) here; scikit-learn puts a score exactly on an edge in the lower bin. Compare
    # on scores off the edges, where the two conventions agree.
    off_edge = ~np.isclose(p * 10, np.round(p * 10))
    y, p = y[off_edge], p[off_edge]
    observed, predicted = calibration_curve(y, p, n_bins=10, strategy="uniform")
    curve = E.reliability_curve(y, p)
    assert [b["observed_rate"] for b in curve] == pytest.approx(list(observed))
    assert [b["mean_predicted"] for b in curve] == pytest.approx(list(predicted))
    assert sum(b["count"] for b in curve) == y.size


def test_ece_is_small_when_calibrated_and_large_when_not():
    rng = np.random.default_rng(0)
    p = rng.random(20000)
    y = (rng.random(20000) < p).astype(float)
    assert E.expected_calibration_error(y, p) < 0.02
    assert E.expected_calibration_error(y, np.clip(p + 0.3, 0, 1)) > 0.2


def test_best_f1_threshold_beats_every_other_cut(random_scores):
    y, p = random_scores
    best = E.best_f1_threshold(y, p)
    best_f1 = E.precision_recall_f1(y, p, best)["f1"]
    for t in np.unique(p):
        assert E.precision_recall_f1(y, p, t)["f1"] <= best_f1 + 1e-12
    assert E.best_f1_threshold(np.zeros(5), np.linspace(0, 1, 5)) == E.DEFAULT_THRESHOLD


def test_degenerate_inputs_give_nan_not_fake_numbers():
    assert math.isnan(E.roc_auc([1, 1], [0.2, 0.3]))
    assert math.isnan(E.average_precision([0, 0], [0.2, 0.3]))
    with pytest.raises(ValueError):
        E.roc_auc([0, 1], [0.2])


def _slice_frame(seed: int = 0):
    """Carrier BAD is scored at random; everything else is scored well. One row in fifty has no label."""
    rng = np.random.default_rng(seed)
    n = 4000
    carrier = np.where(rng.random(n) < 0.25, "BAD", "GOOD")
    y = rng.random(n) < 0.25
    p = np.where(carrier == "BAD", rng.random(n), np.clip(0.25 + 0.4 * (y - 0.25) + rng.normal(0, 0.1, n), 0, 1))
    frame = pl.DataFrame({
        "carrier": carrier, "origin": np.where(rng.random(n) < 0.5, "JFK", "LGA"),
        "sched_dep_time": rng.integers(0, 24, n) * 100 + rng.integers(0, 60, n), "is_late": y,
    }).with_columns(pl.when(pl.int_range(pl.len()) % 50 == 0).then(None).otherwise(pl.col("is_late")).alias("is_late"))
    return frame, p


def _spec_slices(spec) -> dict[str, str]:
    return {s.name: s.expression for s in spec.slices}


def test_evaluate_flags_the_weak_slice_and_skips_unlabelled_rows(spec):
    frame, p = _slice_frame()
    result = E.evaluate(frame, p, 0.3, "is_late", _spec_slices(spec))
    assert result["overall"]["rows"] == frame["is_late"].is_not_null().sum()
    assert result["flagged_slices"] == ["carrier=BAD"]
    assert result["largest_gaps"][0]["value"] == "BAD"
    # slices are the spec's SQL expressions evaluated on the rows
    bands = {s["value"]: s["rows"] for s in result["slices"] if s["slice"] == "hour_band"}
    assert set(bands) == {"night", "morning", "afternoon", "evening"}
    labelled = frame.filter(pl.col("is_late").is_not_null())
    assert bands["night"] == labelled.filter(pl.col("sched_dep_time") < 600).height
    assert {s["slice"] for s in result["slices"]} == {"carrier", "origin", "hour_band"}
    assert result["threshold_source"] == "validation_best_f1"
    default = E.evaluate(frame, p, None, "is_late")
    assert default["overall"]["threshold"] == 0.5 and default["threshold_source"] == "default_0.5"
    assert default["slices"] == [] and default["flagged_slices"] == []


def test_a_small_slice_is_reported_but_never_flagged():
    frame, p = _slice_frame()
    result = E.evaluate(frame, p, 0.3, "is_late", {"carrier": "carrier"}, min_rows=10_000)
    assert result["flagged_slices"] == [] and result["largest_gaps"] == []
    assert {s["value"] for s in result["slices"]} == {"BAD", "GOOD"}


def test_evaluate_reports_the_auc_with_its_delong_interval():
    frame, p = _slice_frame(1)
    overall = E.evaluate(frame, p, 0.3, "is_late")["overall"]
    keep = frame["is_late"].is_not_null().to_numpy()
    y = frame["is_late"].drop_nulls().cast(pl.Float64).to_numpy()
    low, high = auc_ci(y, p[keep])
    assert overall["auc_ci_low"] == pytest.approx(low) and overall["auc_ci_high"] == pytest.approx(high)
    assert overall["auc_ci_low"] < overall["roc_auc"] < overall["auc_ci_high"]
    assert overall["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p[keep]), abs=1e-12)
    one_class = frame.with_columns(is_late=pl.lit(False))
    degenerate = E.evaluate(one_class, p, 0.3, "is_late")["overall"]
    assert math.isnan(degenerate["roc_auc"]) and math.isnan(degenerate["auc_ci_low"])


def test_predictions_must_match_the_rows():
    frame, p = _slice_frame()
    with pytest.raises(ValueError, match="predictions for"):
        E.evaluate(frame, p[:-1], 0.3, "is_late")


def test_report_and_plots_are_produced(spec):
    frame, p = _slice_frame()
    result = E.evaluate(frame, p, 0.3, "is_late", _spec_slices(spec))
    plots = E.evaluation_plots(frame, p, result, "is_late")
    assert set(plots) == {"roc.png", "pr.png", "calibration.png", "slices.png"}
    assert all(png.startswith(b"\x89PNG") and len(png) > 1000 for png in plots.values())
    latency = E.measure_latency(lambda f: np.zeros(f.height), frame, single_rows=5, batch_repeats=2)
    md = E.report_markdown(result, "Candidate", latency=latency, size_bytes=1234, plot_files=sorted(plots))
    assert "carrier=BAD" in md and "| roc_auc |" in md and "![roc.png](roc.png)" in md
    assert "| auc_ci_low |" in md
    assert "model_size_bytes" in md and latency["batch_rows"] == frame.height and latency["single_row_p50_ms"] >= 0


def test_roc_points_run_from_the_origin_to_the_corner():
    fpr, tpr = E.roc_points([0, 1, 0, 1], [0.1, 0.9, 0.4, 0.35])
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(E.roc_auc([0, 1, 0, 1], [0.1, 0.9, 0.4, 0.35]))


def test_model_size_counts_every_file():
    assert E.model_size_bytes(b"abc") == 3
    assert E.model_size_bytes({"a": b"ab", "b": b"cde"}) == 5
