"""Plain-text tables with aligned columns, and the same numbers as JSON-ready dicts."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import attrs

Value = float | int | str | bool | None
Row = dict[str, Value]


def fmt_num(value: Value) -> str:
    """Numbers with as many decimals as their size deserves; text as it is; None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        magnitude = abs(value)
        if magnitude >= 10_000:
            return f"{value:,.0f}"
        if magnitude >= 100:
            return f"{value:,.1f}"
        return f"{value:.2f}"
    return str(value)


def fmt_ratio(value: Value) -> str:
    if value is None or isinstance(value, (str, bool)):
        return fmt_num(value)
    if value >= 100:
        return f"{value:,.0f}x"
    return f"{value:.1f}x"


@attrs.frozen
class Column:
    key: str
    header: str
    fmt: Callable[[Value], str] = fmt_num
    align: str = ""  # "<" or ">"; default: right for numbers, left for text


@attrs.define
class Table:
    """A titled table: columns, rows of raw values (keyed by column key), and notes."""

    name: str
    title: str
    columns: Sequence[Column]
    rows: list[Row] = attrs.field(factory=list)
    notes: list[str] = attrs.field(factory=list)

    def add(self, **values: Value) -> None:
        self.rows.append(dict(values))

    def render(self) -> str:
        headers = [c.header for c in self.columns]
        cells = [[c.fmt(row.get(c.key)) for c in self.columns] for row in self.rows]
        widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
        aligns = []
        for i, col in enumerate(self.columns):
            if col.align:
                aligns.append(col.align)
                continue
            numeric = all(
                isinstance(row.get(col.key), (int, float)) or row.get(col.key) is None for row in self.rows
            )
            aligns.append(">" if numeric and i > 0 else "<")

        def line(parts: Sequence[str]) -> str:
            return "  ".join(f"{p:{a}{w}}" for p, a, w in zip(parts, aligns, widths, strict=True)).rstrip()

        out = [self.title, "=" * len(self.title), line(headers), line(["-" * w for w in widths])]
        out.extend(line(r) for r in cells)
        out.extend(f"  * {n}" for n in self.notes)
        return "\n".join(out)

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "columns": [{"key": c.key, "header": c.header} for c in self.columns],
            "rows": [{k: _json_value(v) for k, v in row.items()} for row in self.rows],
            "notes": self.notes,
        }


def _json_value(value: Value) -> Value:
    """NaN/inf (a loop that measured nothing) become null: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
