"""Dagster wiring: thin assets, checks, sensors that call ``ml_assets.core`` and attach what a person wants to see."""
