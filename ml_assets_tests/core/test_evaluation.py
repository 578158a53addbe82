import math

import numpy as np
import polars as pl
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from ml_assets.core import evaluation as E


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
    """Carrier BAD is scored at random; everything else is scored well."""
    rng = np.random.default_rng(seed)
    n = 4000
    carrier = np.where(rng.random(n) < 0.25, "BAD", "GOOD")
    y = rng.random(n) < 0.25
    p = np.where(carrier == "BAD", rng.random(n), np.clip(0.25 + 0.4 * (y - 0.25) + rng.normal(0, 0.1, n), 0, 1))
    frame = pl.DataFrame({
        "carrier": carrier, "origin": np.where(rng.random(n) < 0.5, "JFK", "LGA"),
        "dep_hour": rng.integers(0, 24, n).astype(float), "is_late": y,
    }).with_columns(pl.when(pl.int_range(pl.len()) % 50 == 0).then(None).otherwise(pl.col("is_late")).alias("is_late"))
    return frame, p


def test_evaluate_flags_the_weak_slice_and_skips_unlabelled_rows():
    frame, p = _slice_frame()
    result = E.evaluate(frame, p, threshold=0.3)
    assert result["overall"]["rows"] == frame["is_late"].is_not_null().sum()
    assert result["flagged_slices"] == ["carrier=BAD"]
    assert result["largest_gaps"][0]["value"] == "BAD"
    bands = {s["value"]: s["rows"] for s in result["slices"] if s["slice"] == "hour_band"}
    assert set(bands) == {"night", "morning", "afternoon", "evening"}
    assert result["threshold_source"] == "validation_best_f1"
    assert E.evaluate(frame, p)["overall"]["threshold"] == 0.5


def test_report_and_plots_are_produced():
    frame, p = _slice_frame()
    result = E.evaluate(frame, p, threshold=0.3)
    plots = E.evaluation_plots(frame, p, result)
    assert set(plots) == {"roc.png", "pr.png", "calibration.png", "slices.png"}
    assert all(png.startswith(b"\x89PNG") and len(png) > 1000 for png in plots.values())
    latency = E.measure_latency(lambda f: np.zeros(f.height), frame, single_rows=5, batch_repeats=2)
    md = E.report_markdown(result, "Candidate", latency=latency, size_bytes=1234, plot_files=sorted(plots))
    assert "carrier=BAD" in md and "| roc_auc |" in md and "![roc.png](roc.png)" in md
    assert "model_size_bytes" in md and latency["batch_rows"] == frame.height and latency["single_row_p50_ms"] >= 0


def test_model_size_counts_every_file():
    assert E.model_size_bytes(b"abc") == 3
    assert E.model_size_bytes({"a": b"ab", "b": b"cde"}) == 5
