"""The synthetic day (``core.synthetic``): the spec's landing schemas, seeded, chunk-independent, plausible."""
from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from ml_assets.core import schemas
from ml_assets.core import synthetic as S
from ml_assets.core.features import attach_label, build_features
from ml_assets.core.spec import load_spec

DAY = dt.date(2013, 6, 15)
ROWS = 5_000


@pytest.fixture(scope="module")
def profile(spec, tables):
    return S.fit_profile(spec, tables)


@pytest.fixture(scope="module")
def day(profile):
    return S.synthetic_day(profile, DAY, ROWS, seed=7, chunk_rows=2_000)


def _frames_equal(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame]) -> bool:
    return a.keys() == b.keys() and all(a[k].equals(b[k]) for k in a)


def test_same_seed_same_rows_whatever_the_chunks_other_seed_other_rows(profile, day):
    assert _frames_equal(S.synthetic_day(profile, DAY, ROWS, seed=7, chunk_rows=2_000), day)
    assert _frames_equal(S.synthetic_day(profile, DAY, ROWS, seed=7, chunk_rows=ROWS), day)
    chunks = list(S.event_chunks(profile, DAY, 2_500, seed=1, chunk_rows=1_000))
    assert [c[profile.spec.events_name].height for c in chunks] == [1_000, 1_000, 500]
    other = S.synthetic_day(profile, DAY, ROWS, seed=8, chunk_rows=2_000)
    assert not other[profile.spec.events_name].equals(day[profile.spec.events_name])


@pytest.mark.parametrize("dataset", ["nycflights13", "rain"])
def test_every_source_and_reference_is_schema_valid(dataset, spec, day):
    if dataset != "nycflights13":  # the generator is generic: the other shipped spec, from its own replay data
        spec = load_spec(dataset)
        day = S.synthetic_day(S.fit_profile(spec), DAY, 500, seed=1)
    assert set(day) == set(spec.sources) | set(spec.reference)
    for name in spec.sources:
        assert day[name].columns == list(spec.sources[name].columns)
        assert schemas.schema_violations(day[name], schemas.source_schema(spec, name)) == [], name
        assert schemas.date_violations(day[name], DAY, spec.replay.date_parts) == [], name
    for name in spec.reference:
        assert schemas.schema_violations(day[name], schemas.reference_schema(spec, name)) == [], name


def test_keys_stay_unique_and_outcomes_belong_to_the_events(spec, profile, day):
    assert (profile.free, profile.key_room) == ("flight", 99_999 - 8_500)  # fresh flight numbers above the real ones
    events, outcomes = day[spec.events_name], day[spec.outcomes_name]
    assert events.height == outcomes.height == ROWS
    assert schemas.duplicate_key_violations(events, spec.events_source.key) == []
    assert schemas.unmatched_key_violations(outcomes, events, spec.outcomes_source.key) == []


def test_plausible_rows_that_feed_the_feature_path(spec, day, tables):
    real = tables[spec.events_source.table]
    events = day[spec.events_name]
    # Drawn from the real June: known carriers and routes, each route at its real distance.
    routes = real.select("origin", "dest", "distance").unique()
    assert events.select("origin", "dest", "distance").unique().join(
        routes, on=["origin", "dest", "distance"], how="anti").is_empty()
    sources = {name: day[name] for name in [*spec.schedule_sources, *spec.reference]}
    features = build_features(spec, sources)
    assert features.height == ROWS
    assert schemas.schema_violations(features, schemas.feature_schema(spec)) == []
    assert features["temp"].null_count() < ROWS * 0.1  # the scheduled hours find the day's weather
    labelled = attach_label(spec, features, day[spec.outcomes_name])[spec.label.name]
    assert 0.1 < labelled.drop_nulls().cast(pl.Float64).mean() < 0.4  # nycflights13 June: about 0.27 late
