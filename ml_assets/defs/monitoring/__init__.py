"""Monitoring: live performance once the outcomes land (batch and online predictions, shadow challenger,
label balance, serving skew), as rolling series with intervals."""

from ml_assets.defs.blueprint import Blueprint


def build(bp: Blueprint) -> list:
    from ml_assets.defs.monitoring import live

    return live.build(bp)
