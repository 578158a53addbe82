"""Operational machinery used by the CLI and the in-process ticker; kept apart from the asset definitions."""
