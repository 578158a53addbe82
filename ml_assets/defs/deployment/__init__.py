"""Deployment: the day's bundle, the champion decision (sequential in day order), batch predictions."""

from ml_assets.defs.blueprint import Blueprint


def build(bp: Blueprint) -> list:
    from ml_assets.defs.deployment import bundle, champion, predictions

    return [*bundle.build(bp), *champion.build(bp), *predictions.build(bp)]
