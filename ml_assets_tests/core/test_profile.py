import math

import numpy as np
import polars as pl
import pytest

from ml_assets.core import profile as P


def test_linf_by_hand():
    assert P.linf_distance({"a": 0.5, "b": 0.5}, {"a": 0.2, "b": 0.7, "c": 0.1}) == pytest.approx(0.3)
    assert P.linf_distance({"a": 1.0}, {"a": 1.0}) == 0.0


def test_js_by_hand():
    # p=(1,0), q=(0,1): disjoint -> 1 bit. p=(.5,.5), q=(1,0): m=(.75,.25)
    assert P.js_divergence(np.array([1, 0]), np.array([0, 1])) == pytest.approx(1.0)
    kl_pm = 0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25)
    kl_qm = 1.0 * math.log2(1 / 0.75)
    assert P.js_divergence(np.array([5, 5]), np.array([3, 0])) == pytest.approx((kl_pm + kl_qm) / 2)
    assert P.js_divergence(np.array([2, 2]), np.array([1, 1])) == pytest.approx(0.0)


def test_drift_sees_a_shift_and_not_the_same_data():
    rng = np.random.default_rng(0)
    ref = pl.DataFrame({"x": rng.normal(0, 1, 5000), "c": rng.choice(["a", "b"], 5000, p=[0.8, 0.2])})
    same = pl.DataFrame({"x": rng.normal(0, 1, 5000), "c": rng.choice(["a", "b"], 5000, p=[0.8, 0.2])})
    moved = pl.DataFrame({"x": rng.normal(2, 1, 5000), "c": rng.choice(["a", "b"], 5000, p=[0.3, 0.7])})
    d_same = dict(P.drift(same, ref, ["x"], ["c"]).select("column", "value").iter_rows())
    d_moved = dict(P.drift(moved, ref, ["x"], ["c"]).select("column", "value").iter_rows())
    assert d_same["x"] < 0.01 and d_same["c"] < 0.03
    assert d_moved["x"] > 0.3 and d_moved["c"] == pytest.approx(0.5, abs=0.03)


def test_stats_count_nulls_and_rates():
    f = pl.DataFrame({"x": [1.0, 2.0, None, 4.0], "c": ["a", "a", None, "b"], "y": [True, False, None, True]})
    stats = P.numeric_stats(f, ["x"]).row(0, named=True)
    assert (stats["count"], stats["nulls"], stats["min"], stats["max"]) == (4, 1, 1.0, 4.0)
    cats = P.categorical_stats(f, ["c"]).row(0, named=True)
    assert cats["distinct"] == 3 and cats["top"].startswith("a 50.0%")
    assert P.label_rate(f, "y") == pytest.approx(2 / 3)
    assert P.row_count_deviation(50, [100, 100, 90]) == pytest.approx(0.5)
    assert P.row_count_deviation(5, []) is None


def test_the_plotted_columns_are_the_most_drifted_judged_ones_then_the_quiet_ones():
    drift = pl.DataFrame({"column": ["a", "b", "q", "c", "cat", "n"], "value": [0.1, 0.5, 0.9, 0.3, 0.8, float("nan")]})
    numeric = ["a", "b", "q", "c", "n"]
    assert P.most_drifted(drift, numeric, quiet=["q"], n=3) == ["b", "c", "a"]
    assert P.most_drifted(drift, numeric, quiet=["q"], n=10) == ["b", "c", "a", "q"]  # no NaN, no categorical
    nothing = drift.with_columns(value=pl.lit(float("nan")))
    assert P.most_drifted(nothing, numeric, quiet=[], n=2) == ["a", "b"]  # no reference yet: the first ones
