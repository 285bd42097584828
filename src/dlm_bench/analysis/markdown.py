"""Markdown cells and tables of the summary and the paper: one way to print a number."""

from __future__ import annotations

import math


def fmt(value, digits: int = 1) -> str:
    """A number with `digits` decimals and thousands separators; an em dash for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return "—"
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}"
    return str(value)


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table of already formatted cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
