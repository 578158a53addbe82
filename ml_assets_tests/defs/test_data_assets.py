"""The data layer materialized with real IO managers on a temp root, on good and bad days."""
import datetime as dt
import os

import dagster as dg
import polars as pl
import pytest

from ml_assets.core import landing
from ml_assets.core.storage import write_parquet
from ml_assets.definitions import DATA_ASSETS as ASSETS, build_resources

DAY = "2013-01-02"


def run(root, day=DAY, selection=None):
    return dg.materialize(ASSETS, partition_key=day, resources=build_resources(str(root), "local"),
                          selection=selection, raise_on_error=False)


def materialized(result):
    return {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()
            for m in [m.event_specific_data.materialization]}


def checks(result):
    return {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}


def test_real_days_pass_every_blocking_check(landed):
    for day in ("2013-01-01", "2013-01-02"):
        result = run(landed, day)
        assert result.success
        assert materialized(result) == {"raw_flights", "raw_weather", "planes", "flight_features", "data_profile"}
        blocking_failures = [k for k, e in checks(result).items()
                             if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR]
        assert blocking_failures == []
    features = pl.read_parquet(os.fspath(landed / "assets" / "flight_features" / f"{DAY}.parquet"))
    assert features.height == landing.read_landed(landing.latest_file(landed, "flights", DAY)).height
    profile = pl.read_parquet(os.fspath(landed / "assets" / "data_profile" / f"{DAY}.parquet"))
    assert {"drift", "null_share", "q50"} <= set(profile.columns)


def test_metadata_shows_rows_schema_preview_and_version(landed):
    result = run(landed)
    mats = {m.event_specific_data.materialization.asset_key.to_user_string(): m.event_specific_data.materialization
            for m in result.get_asset_materialization_events()}
    meta = mats["flight_features"].metadata
    assert meta["dagster/row_count"].value == 943
    assert "carrier" in [c.name for c in meta["dagster/column_schema"].value.columns]
    assert "| date |" in meta["preview"].value
    assert mats["flight_features"].tags.get("dagster/data_version")
    assert "data:image/png;base64," in mats["data_profile"].metadata["drift_plot"].value


def _replace_landed(root, source, frame, day=DAY):
    """Land a bad delivery as a new version (the good file stays untouched)."""
    path = landing.day_dir(root, source, dt.date.fromisoformat(day)) / "v0002.parquet"
    write_parquet(path, frame)
    return path


def _good_flights(root):
    return landing.read_landed(landing.latest_file(root, "flights", DAY))


BAD_FLIGHTS = {
    "missing column": (lambda f: f.drop("dest"), "schema", "required_column_missing"),
    "extra column": (lambda f: f.with_columns(gate=pl.lit("A1")), "schema", "unexpected_column"),
    "wrong type": (lambda f: f.with_columns(pl.col("distance").cast(pl.Float64)), "schema", "dtype"),
    "out of range": (lambda f: f.with_columns(month=pl.lit(14, dtype=pl.Int64)), "schema", "less_than_or_equal_to(12)"),
    "bad airport": (lambda f: f.with_columns(origin=pl.lit("ZZZ")), "schema", "isin"),
    "duplicate keys": (lambda f: pl.concat([f, f.head(5)]), "unique_key", "duplicate_key"),
    "empty day": (lambda f: f.head(0), "non_empty", "non_empty_day"),
    "wrong date": (lambda f: f.with_columns(day=pl.lit(3, dtype=pl.Int64)), "date_matches_partition", "date_matches_partition"),
}


@pytest.mark.parametrize("case", list(BAD_FLIGHTS))
def test_bad_flights_are_stopped_by_a_named_blocking_check(landed, case):
    corrupt, check_name, rule = BAD_FLIGHTS[case]
    good_file = landing.latest_file(landed, "flights", DAY)
    good_bytes = good_file.read_bytes()
    _replace_landed(landed, "flights", corrupt(_good_flights(landed)))
    result = run(landed)
    assert not result.success
    evaluation = checks(result)[("raw_flights", check_name)]
    assert not evaluation.passed
    assert rule in evaluation.metadata["first_failure"].value
    assert evaluation.metadata["violations"].value >= 1
    assert "flight_features" not in materialized(result) and "data_profile" not in materialized(result)
    assert good_file.read_bytes() == good_bytes


@pytest.mark.parametrize("content, message", [(b"", "is empty"), (b"year,month\n2013,1\n", "not a complete parquet"),
                                              ("truncated", "not a complete parquet")])
def test_unreadable_landing_file_fails_the_step_with_its_path(landed, content, message):
    good = landing.latest_file(landed, "weather", DAY).read_bytes()
    bad = landing.day_dir(landed, "weather", dt.date.fromisoformat(DAY)) / "v0002.parquet"
    bad.write_bytes(good[: len(good) // 3] if content == "truncated" else content)
    result = run(landed)
    assert not result.success
    failure = [e for e in result.get_step_failure_events() if e.step_key == "raw_weather"][0]
    error = failure.event_specific_data.error
    assert "LandingFileError" in error.cls_name or "LandingFileError" in str(error.cause)
    assert "v0002.parquet" in str(error.to_string()) and message in str(error.to_string())
    assert "flight_features" not in materialized(result)
    assert bad.read_bytes() == (good[: len(good) // 3] if content == "truncated" else content)


def test_bad_weather_values_are_stopped(landed):
    weather = landing.read_landed(landing.latest_file(landed, "weather", DAY))
    _replace_landed(landed, "weather", weather.with_columns(humid=pl.lit(140.0)))
    result = run(landed)
    assert not checks(result)[("raw_weather", "schema")].passed
    assert "flight_features" not in materialized(result)


def test_label_balance_shift_warns(landed):
    for day in ("2013-01-01", "2013-01-02"):
        assert run(landed, day).success
    flights = landing.read_landed(landing.latest_file(landed, "flights", "2013-01-03"))
    # A 70/30 late day after ~20% late days: the seeds' balance-shift case.
    n = flights.height
    late = pl.int_range(n, eager=True) < int(0.7 * n)
    _replace_landed(landed, "flights", flights.with_columns(arr_delay=pl.when(late).then(60).otherwise(-5).cast(pl.Int64)),
                    day="2013-01-03")
    result = run(landed, "2013-01-03")
    assert result.success  # a warning, not a stop
    evaluation = checks(result)[("data_profile", "label_balance")]
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["late_share"].value == pytest.approx(0.7, abs=0.01)
