"""Static pictures for reports and the command line (``dspex-notebook plot``)."""

from __future__ import annotations

import os
from typing import Any

from .._errors import InvalidArgument
from .._types import VariableUpdate
from .buffer import SeriesBuffer

__all__ = ["plot_variable_history", "save_plot"]


def plot_variable_history(name: str, entries: list[dict[str, Any]], units: str = "") -> Any:
    """A Figure of a variable's kept versions over time (``get_variable_history`` entries)."""
    from .render import draw_series, new_figure

    buffer = SeriesBuffer(name, maxlen=max(1, len(entries)))
    for e in sorted(entries, key=lambda e: e["version"]):
        buffer.add(VariableUpdate("", name, e.get("value"), None, "set", int(e.get("revision") or 0),
                                  version=int(e["version"]), timestamp=e.get("updated_at"),
                                  source=str(e.get("updated_by") or "")))
    return draw_series(new_figure(), buffer, units)


async def save_plot(session: Any, name: str, out: str | os.PathLike[str], *, kind: str = "trials",
                    limit: int = 1000) -> str:
    """Write a PNG of ``name``'s optimization trials (``kind="trials"``) or of its value
    history (``kind="values"``) to ``out``; returns a one-line description.

    Raises:
        InvalidArgument: unknown ``kind``, or nothing to plot.
        VariableNotFoundError: no such variable.
    """
    from .render import plot_optimization_history

    if kind == "trials":
        status = await session.get_optimization_status(name)
        history = await session.get_optimization_history(name, limit=limit,
                                                         optimizer_id=status.get("optimization_id"))
        if not history:
            raise InvalidArgument(f"{name!r} has no optimization trials to plot")
        fig = plot_optimization_history(history, direction=status.get("direction") or "maximize",
                                        metric=status.get("metric") or "objective", name=name)
        what = f"{len(history)} trials of run {status.get('optimization_id')}"
    elif kind == "values":
        entries = await session.get_variable_history(name, limit=min(limit, 10_000))
        fig = plot_variable_history(name, entries)
        what = f"{len(entries)} versions"
    else:
        raise InvalidArgument(f"plot kind must be 'trials' or 'values', got {kind!r}")
    fig.savefig(out, format="png")
    return f"{name}: {what} -> {os.fspath(out)}"
