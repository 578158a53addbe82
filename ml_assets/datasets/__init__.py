"""Dataset specs (``*.yaml``, see ``ml_assets.core.spec``) and the registered feature functions they name.

A spec lists functions by name in ``features.functions`` (e.g. ``flights.tail_rotation``): the part before the
dot is a module of this package, imported when first used, which registers its functions with ``@register``.
A function takes the lazy feature rows built so far and a ``FeatureContext`` (the prepared sources of the same
days) and returns the rows with its columns added; it must be pure and deterministic, use only what is known
the evening before, and treat each ``date`` on its own (group by it): rows of one day never change another day's
features, so many days can be built at once (a backfill's range, a serving batch spanning days).
"""
from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable

FeatureFunction = Callable[..., object]
_REGISTRY: dict[str, FeatureFunction] = {}


def register(name: str) -> Callable[[FeatureFunction], FeatureFunction]:
    def decorate(fn: FeatureFunction) -> FeatureFunction:
        _REGISTRY[name] = fn
        return fn
    return decorate


def feature_function(name: str) -> FeatureFunction:
    module = name.split(".", 1)[0]
    if name not in _REGISTRY:
        try:
            importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError:
            raise KeyError(f"feature function {name!r}: no module ml_assets.datasets.{module}") from None
    if name not in _REGISTRY:
        raise KeyError(f"feature function {name!r} is not registered in ml_assets.datasets.{module}")
    return _REGISTRY[name]


def functions_version(spec) -> str:
    """The source text of the spec's feature functions: part of the feature code version."""
    return "".join(inspect.getsource(feature_function(n)) for n in spec.features.functions)
