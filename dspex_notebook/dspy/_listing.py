"""Which variables the DSPy integration made or drives: for ``%var dspy`` and
``dspex-notebook dspy`` (no dspy import: listing works without the extra)."""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from typing import Any

from .._display import short
from ._knobs import META_PROGRAM, META_ROLE, META_TARGET

COLUMNS = ("name", "type", "value", "role", "program", "target")


def dspy_rows(variables: Iterable[Any]) -> list[dict[str, Any]]:
    """One row per variable whose metadata says the DSPy integration made it:
    ``sync_dspy_parameters`` parameters (role ``parameter``, with their target) and
    variable-aware optimizer results (role ``result``)."""
    rows = []
    for var in variables:
        meta = var.metadata or {}
        if META_TARGET not in meta and META_ROLE not in meta:
            continue
        rows.append({"name": var.name, "type": var.type, "value": var.value,
                     "role": meta.get(META_ROLE, ""), "program": meta.get(META_PROGRAM, ""),
                     "target": meta.get(META_TARGET, "")})
    return rows


class DSPyTable:
    """The rows as a text table (``repr``) and HTML (Jupyter)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def _cells(self) -> list[list[str]]:
        return [[r["name"], r["type"], short(r["value"]), r["role"], r["program"], r["target"]]
                for r in self.rows]

    def __repr__(self) -> str:
        if not self.rows:
            return "no DSPy-bound variables (bridge.sync_dspy_parameters / %var dspy sync make them)"
        cells = self._cells()
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(COLUMNS)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(COLUMNS, widths, strict=True)),
                 "  ".join("-" * w for w in widths)]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                  for row in cells]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        if not self.rows:
            return f"<p>{escape(repr(self))}</p>"
        head = "".join(f"<th>{h}</th>" for h in COLUMNS)
        body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>"
                       for row in self._cells())
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
