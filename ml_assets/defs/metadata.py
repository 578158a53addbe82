"""What a person wants to see on every materialization: rows, schema, preview, plots."""
from __future__ import annotations

import base64
from typing import Any

import dagster as dg
import polars as pl

from ml_assets.core.schemas import Violation


def markdown_table(frame: pl.DataFrame, max_rows: int = 10, float_digits: int = 4) -> str:
    frame = frame.head(max_rows)

    def cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.{float_digits}g}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join(lines)


def frame_metadata(frame: pl.DataFrame, preview_rows: int = 5) -> dict[str, Any]:
    schema = dg.TableSchema(columns=[dg.TableColumn(name, str(dtype)) for name, dtype in frame.schema.items()])
    return {
        "dagster/row_count": frame.height,
        "dagster/column_schema": schema,
        "preview": dg.MetadataValue.md(markdown_table(frame, preview_rows)),
    }


def png_markdown(png: bytes, title: str) -> dg.MetadataValue:
    """A PNG shown inline in the UI's metadata panel."""
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{base64.b64encode(png).decode()})")


def check_result(check_name: str, violations: list[Violation], asset_key: str | None = None,
                 severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
                 **extra: Any) -> dg.AssetCheckResult:
    """A check result whose metadata names every failed rule, column, row count and examples."""
    metadata: dict[str, Any] = {"violations": len(violations), **extra}
    if violations:
        metadata["failures"] = dg.MetadataValue.md(markdown_table(
            pl.DataFrame([{**v.as_dict(), "examples": "; ".join(v.as_dict()["examples"])} for v in violations]),
            max_rows=50))
        metadata["first_failure"] = str(violations[0])
    return dg.AssetCheckResult(check_name=check_name, asset_key=asset_key, passed=not violations,
                               severity=severity, metadata=metadata)
