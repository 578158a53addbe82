"""Semantic versions for deployment bundles, and the registered name of each model line.

A version says *what changed* between the champion and its successor:

- no previous version, or a different model family -> ``1.0.0``: a family is its own model line
  (its own registered name, see ``model_line``), so its versions start over;
- changed hyperparameters or changed feature code -> MAJOR bump (``2.0.0``): the model is a different
  function of its inputs, and consumers comparing scores across versions must not assume continuity;
- new training data only -> MINOR bump (``1.1.0``): the same recipe refreshed on newer data, the daily case;
- nothing changed -> PATCH bump (``1.0.1``).

Why PATCH (rather than "reuse the previous version") when nothing changed: bundles are immutable, and a
rebuild from identical inputs can still produce different bytes (nondeterministic training threads, a new
ONNX exporter, a regenerated model card or metrics). A new artifact always gets a new version, so an
existing ``bundles/<version>/`` is never overwritten and a rollback target never changes under anyone's
feet; PATCH is the bump that promises "same recipe, same data".

The caller passes the latest version *of the candidate's own line* as ``previous`` (or the champion of
another family, which yields ``1.0.0`` for a first version of a new line).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

FIRST_VERSION = "1.0.0"
_VERSION = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
_FAMILY = re.compile(r"^[a-z][a-z0-9_]*$")
REQUIRED_KEYS = ("family", "params", "feature_code_version", "training_data_version")


def parse_version(version: str) -> tuple[int, int, int]:
    """``"MAJOR.MINOR.PATCH"`` -> ints; anything else (``v1.0``, ``1.0``, ``01.0.0``) is a ValueError."""
    match = _VERSION.match(str(version))
    if not match:
        raise ValueError(f"invalid version {version!r}: expected MAJOR.MINOR.PATCH, e.g. 1.4.0")
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


def format_version(major: int, minor: int, patch: int) -> str:
    return f"{major}.{minor}.{patch}"


@dataclass(frozen=True)
class VersionDecision:
    version: str
    bump: str  # "new_line" | "major" | "minor" | "patch"
    reasons: tuple[str, ...]


def _require(d: dict[str, Any], which: str) -> None:
    missing = [k for k in REQUIRED_KEYS if k not in d]
    if missing:
        raise ValueError(f"{which} lacks {', '.join(missing)} (needs {', '.join(REQUIRED_KEYS)})")


def _changed_params(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k, _MISSING) != new.get(k, _MISSING))


_MISSING = object()


def decide_version(previous: dict[str, Any] | None, candidate: dict[str, Any]) -> VersionDecision:
    """``next_version`` with the bump kind and the reasons (for lineage and the model card)."""
    _require(candidate, "candidate")
    if not isinstance(candidate["family"], str) or not _FAMILY.match(candidate["family"]):
        raise ValueError(f"invalid model family {candidate['family']!r}: expected lower-case letters, digits, "
                         "underscores")
    if previous is None:
        return VersionDecision(FIRST_VERSION, "new_line", ("no previous version",))
    if "version" not in previous:
        raise ValueError("previous lacks version")
    _require(previous, "previous")
    major, minor, patch = parse_version(previous["version"])
    if previous["family"] != candidate["family"]:
        return VersionDecision(FIRST_VERSION, "new_line", (
            f"family {candidate['family']!r} differs from {previous['family']!r}: a new model line",))
    reasons = []
    params = _changed_params(dict(previous["params"] or {}), dict(candidate["params"] or {}))
    if params:
        reasons.append(f"hyperparameters changed: {', '.join(params)}")
    if previous["feature_code_version"] != candidate["feature_code_version"]:
        reasons.append(f"feature code {previous['feature_code_version']} -> {candidate['feature_code_version']}")
    if reasons:
        return VersionDecision(format_version(major + 1, 0, 0), "major", tuple(reasons))
    if previous["training_data_version"] != candidate["training_data_version"]:
        return VersionDecision(format_version(major, minor + 1, 0), "minor", (
            f"training data {previous['training_data_version']} -> {candidate['training_data_version']}",))
    return VersionDecision(format_version(major, minor, patch + 1), "patch",
                           ("same family, hyperparameters, feature code and training data: a rebuild",))


def next_version(previous: dict[str, Any] | None, candidate: dict[str, Any]) -> str:
    """The candidate's version given the latest version of its line (see the module docstring for the rules)."""
    return decide_version(previous, candidate).version
