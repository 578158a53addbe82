"""Model training: the window and its history rates (``window``), the XGBoost and MLP candidates (``xgb``,
``mlp``) and optional tuning (``tuning``). Submodules are imported explicitly so that using the window
logic does not load torch."""
