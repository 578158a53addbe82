"""ml_assets: a continuously-trained ML system as a Dagster asset graph."""
