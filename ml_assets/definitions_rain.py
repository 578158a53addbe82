"""The rain dataset's ``Definitions``: a second code location beside the flights in one Dagster instance.

``workspace.yaml`` cannot give one code location its own environment variable (``ML_ASSETS_DATASET``), so the
dataset is named here, in code; the commented second entry in ``workspace.yaml`` loads this module. Asset keys
carry the dataset's name (``rain/...`` beside ``flights/...``), and so do the storage paths, model lines,
MLflow experiment and sensor names, so both locations share one instance and one ``ML_ASSETS_HOME``.
Loading it also builds the default dataset's ``defs`` (``ml_assets.definitions`` builds them at import).
"""
from ml_assets.definitions import build_definitions

defs = build_definitions(dataset="rain")
