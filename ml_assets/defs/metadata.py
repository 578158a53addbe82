"""What a person wants to see on every materialization: rows, schema with descriptions, sortable tables, plots."""
from __future__ import annotations

import base64
import datetime as dt
import math
from typing import Any

import dagster as dg
import polars as pl

from ml_assets.core.schemas import Violation

FLOAT_DIGITS = 4


def rounded(value: Any, digits: int = FLOAT_DIGITS) -> Any:
    """Floats rounded for display (NaN stays NaN); other values as they are."""
    if isinstance(value, float):
        return value if math.isnan(value) or math.isinf(value) else round(value, digits)
    return value


def _column_type(dtype: pl.DataType) -> str:
    if dtype.is_integer():
        return "int"
    if dtype.is_float():
        return "float"
    if dtype == pl.Boolean:
        return "bool"
    return "string"


def table(frame: pl.DataFrame, max_rows: int = 50, descriptions: dict[str, str] | None = None) -> dg.MetadataValue:
    """A native (sortable) table in the UI, floats rounded, dates as text."""
    frame = frame.head(max_rows)
    schema = dg.TableSchema(columns=[dg.TableColumn(name, _column_type(dtype), description=(descriptions or {}).get(name))
                                     for name, dtype in frame.schema.items()])
    records = []
    for row in frame.iter_rows(named=True):
        clean = {}
        for k, v in row.items():
            if isinstance(v, (dt.date, list, dict)):
                v = str(v)
            elif isinstance(v, float) and math.isnan(v):
                v = None
            clean[k] = rounded(v)
        records.append(dg.TableRecord(clean))
    return dg.MetadataValue.table(records=records, schema=schema)


def frame_metadata(frame: pl.DataFrame, descriptions: dict[str, str] | None = None,
                   preview_rows: int = 5) -> dict[str, Any]:
    columns = [dg.TableColumn(name, str(dtype), description=(descriptions or {}).get(name))
               for name, dtype in frame.schema.items()]
    return {"dagster/row_count": frame.height, "dagster/column_schema": dg.TableSchema(columns=columns),
            "preview": table(frame, preview_rows)}


def png(png_bytes: bytes, title: str) -> dg.MetadataValue:
    """A PNG shown inline in the UI's metadata panel."""
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{base64.b64encode(png_bytes).decode()})")


def numbers(values: dict[str, Any]) -> dict[str, Any]:
    """Scalar metrics as metadata, rounded; None and non-scalars dropped."""
    return {k: rounded(float(v)) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def violations_check(name: str, violations: list[Violation], severity=dg.AssetCheckSeverity.ERROR,
                     **extra: Any) -> dg.AssetCheckResult:
    """A check result whose metadata names every failed rule, column, row count and examples."""
    metadata: dict[str, Any] = {"violations": len(violations), **extra}
    if violations:
        metadata["failures"] = table(pl.DataFrame([{**v.as_dict(), "examples": "; ".join(v.as_dict()["examples"])}
                                                   for v in violations]))
        metadata["first_failure"] = str(violations[0])
    return dg.AssetCheckResult(check_name=name, passed=not violations, severity=severity, metadata=metadata,
                               description=str(violations[0]) if violations else None)


def contract_check(rules: dict[str, list[Violation]], name: str = "contract", **extra: Any) -> dg.AssetCheckResult:
    """One check over several rules of a data contract: passes when every rule holds; the metadata lists each
    rule's verdict and names every failed rule, column, row count and examples. One evaluation per day instead of
    one per rule keeps a year's event log small; the rule that refused a day is still named."""
    failed = {rule: v for rule, v in rules.items() if v}
    verdicts = pl.DataFrame([{"rule": rule, "passed": not v, "violations": len(v),
                              "first": str(v[0]) if v else ""} for rule, v in rules.items()])
    result = violations_check(name, [x for v in failed.values() for x in v], **extra)
    return dg.AssetCheckResult(check_name=name, passed=result.passed, severity=result.severity,
                               description=(f"{', '.join(failed)}: {result.description}" if failed else None),
                               metadata={**result.metadata, "rules": table(verdicts)})
