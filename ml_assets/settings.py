"""Where things live, decided from the environment when asked (never at import time)."""
from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = "./.ml_assets"


def home() -> str:
    """The storage root: a local folder or a URL such as ``s3://bucket/prefix``."""
    root = os.environ.get("ML_ASSETS_HOME", DEFAULT_HOME)
    if "://" in root:
        return root.rstrip("/")
    return str(Path(root).expanduser().resolve())


def environment() -> str:
    env = os.environ.get("ML_ASSETS_ENV", "local")
    if env not in ("local", "production"):
        raise ValueError(f"ML_ASSETS_ENV must be 'local' or 'production', got {env!r}")
    return env
