"""Online serving of a deployment bundle (FastAPI + onnxruntime): see ``ml_assets.serving.app``."""
from __future__ import annotations

from typing import Any

__all__ = ["create_app", "serve"]


def __getattr__(name: str) -> Any:
    # Lazy, so ``python -m ml_assets.serving.app`` does not import the module twice.
    if name in __all__:
        from ml_assets.serving import app

        return getattr(app, name)
    raise AttributeError(name)
