"""Data layer: the landing zone (external assets) -> raw sources -> delay history, features, labelled features,
profile. Every daily asset runs for one day or a range of days in one step (``defs.days``)."""

from ml_assets.defs.blueprint import Blueprint


def build(bp: Blueprint) -> list:
    from ml_assets.defs.data import features, history, landing, profile, raw

    return [*landing.build(bp), *raw.build(bp), *history.build(bp), *features.build(bp), *profile.build(bp)]
