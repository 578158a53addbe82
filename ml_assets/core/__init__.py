"""Pure logic: no Dagster imports here, so every piece is unit-testable alone."""
