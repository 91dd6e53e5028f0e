"""The dependency-graph figure of ``%var deps NAME --graph`` and ``dspex-notebook deps NAME
--graph FILE.png``: a layered layout of our own (no networkx).

The variable sits in the middle column. What it depends on (``get_dependencies(...,
include_transitive=True)``) is drawn to its left, one column per depth; what depends on it
(``get_dependents``) to its right. Arrows point the way data flows, from a dependency to the
variable that depends on it, coloured by the edge's type (data / constraint / optimization).
Each entry's ``via`` names the variable its edge starts or ends at, which gives the arrows.

:func:`layered_layout` is pure (testable without matplotlib); :func:`dependency_figure` draws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["EDGE_COLORS", "GraphLayout", "dependency_figure", "layered_layout"]

#: edge type -> colour of its arrow
EDGE_COLORS = {"data": "#1f77b4", "constraint": "#d62728", "optimization": "#2ca02c"}


@dataclass(frozen=True)
class GraphLayout:
    """Where each variable goes and which arrows join them."""

    center: str
    positions: dict[str, tuple[float, float]]  # name -> (column, row)
    edges: list[tuple[str, str, str]]  # (from dependency, to dependent, edge type)


def layered_layout(name: str, dependencies: Sequence[Mapping[str, Any]],
                   dependents: Sequence[Mapping[str, Any]]) -> GraphLayout:
    """Columns by depth (dependencies negative, dependents positive), rows centred per column
    in the order the breadth-first walk found them."""
    columns: dict[int, list[str]] = {0: [name]}
    edges: list[tuple[str, str, str]] = []
    for entries, sign in ((dependencies, -1), (dependents, 1)):
        for e in entries:
            other, via = str(e["name"]), str(e.get("via") or name)
            col = sign * int(e.get("depth") or 1)
            if other not in columns.setdefault(col, []):
                columns[col].append(other)
            kind = str(e.get("type") or "data")
            # a dependency flows into the variable it was reached from; a dependent takes in `via`
            edges.append((other, via, kind) if sign < 0 else (via, other, kind))
    positions: dict[str, tuple[float, float]] = {}
    for col, names in columns.items():
        top = (len(names) - 1) / 2
        for row, n in enumerate(names):
            positions.setdefault(n, (float(col), top - row))
    return GraphLayout(name, positions, edges)


def dependency_figure(name: str, dependencies: Sequence[Mapping[str, Any]],
                      dependents: Sequence[Mapping[str, Any]]) -> Any:
    """A ``matplotlib.figure.Figure`` of ``name``'s dependency graph (see the module doc)."""
    from .render import new_figure

    layout = layered_layout(name, dependencies, dependents)
    cols = [p[0] for p in layout.positions.values()]
    rows = [p[1] for p in layout.positions.values()]
    width = 2.2 * (max(cols) - min(cols) + 1) + 1
    height = 0.9 * (max(rows) - min(rows) + 1) + 1.2
    fig = new_figure(min(width, 16.0), min(height, 12.0))
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.86))
    ax.set_axis_off()
    ax.set_xlim(min(cols) - 0.6, max(cols) + 0.6)
    ax.set_ylim(min(rows) - 0.6, max(rows) + 0.6)
    for src, dst, kind in layout.edges:
        ax.annotate("", xy=layout.positions[dst], xytext=layout.positions[src],
                    arrowprops={"arrowstyle": "-|>", "color": EDGE_COLORS.get(kind, "gray"),
                                "shrinkA": 18, "shrinkB": 18, "lw": 1.4})
    for n, (x, y) in layout.positions.items():
        center = n == name
        ax.text(x, y, n, ha="center", va="center", fontsize=10,
                fontweight="bold" if center else "normal",
                bbox={"boxstyle": "round,pad=0.4", "fc": "#fff3c4" if center else "white",
                      "ec": "#444444"})
    used = sorted({k for _, _, k in layout.edges})
    legend = ", ".join(f"{k} ({EDGE_COLORS.get(k, 'gray')})" for k in used) or "no dependencies"
    fig.suptitle(f"{name}: depends on (left) / depended on by (right); arrows: data flow\n"
                 f"edge types: {legend}", fontsize=9)
    return fig
