"""ml_assets: a continuously-trained ML system as a Dagster asset graph."""
import os

# OpenMP threads that spin while they wait (libgomp's default) make xgboost and torch many times slower when
# another process shares the cores (measured: 0.2 s -> 4 s for one day's xgboost fit on 2 busy cores). Passive
# waiting must be set before either library is first imported; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
