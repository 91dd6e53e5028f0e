"""matplotlib renderers: each draws into one ``matplotlib.figure.Figure`` and updates its artists
in place on later calls (no pyplot, no backend; PNG through the Agg canvas).

* :func:`draw_series` — a variable's value over time (a step line: a value holds until the
  next write).
* :func:`draw_trials` — an optimization run: objective per trial with the best-so-far line,
  and objective against the trial's value.
* :func:`plot_optimization_history` — the same as a static Figure, from
  ``get_optimization_history(...)`` entries (for reports).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from typing import Any

from .buffer import SeriesBuffer, TrialBuffer

__all__ = ["draw_series", "draw_trials", "new_figure", "plot_optimization_history", "png"]


def new_figure(width: float = 7.0, height: float = 3.0, dpi: int = 100) -> Any:
    """A Figure with an Agg canvas (renderable to PNG from any thread, one at a time)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # fixed margins, not the constrained layout: it costs about half of each live frame
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def png(fig: Any) -> bytes:
    """The figure as PNG bytes."""
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def _artists(fig: Any, kind: str) -> dict[str, Any] | None:
    state = getattr(fig, "_dspex_artists", None)
    return state if state is not None and state.get("kind") == kind else None


def draw_series(fig: Any, buffer: SeriesBuffer, units: str = "") -> Any:
    """Draw (or update) the value-over-time view of ``buffer`` into ``fig``; returns ``fig``."""
    state = _artists(fig, "series")
    if state is None:
        fig.clear()
        fig.subplots_adjust(left=0.11, right=0.97, bottom=0.17, top=0.88)
        ax = fig.add_subplot(1, 1, 1)
        (line,) = ax.plot([], [], drawstyle="steps-post", marker=".", color="tab:blue",
                          label=buffer.name)
        ax.set_xlabel("time since first value (s)")
        ax.set_ylabel(f"{buffer.name} ({units})" if units else buffer.name)
        ax.grid(True, alpha=0.3)
        state = fig._dspex_artists = {"kind": "series", "ax": ax, "line": line}
    xs, ys = buffer.xy()
    state["line"].set_data(xs, ys)
    ax = state["ax"]
    last = f" = {ys[-1]:.4g}" if ys else ""
    ax.set_title(f"{buffer.name}{last} ({len(ys)} values)")
    ax.relim()
    ax.autoscale_view()
    return fig


def draw_trials(fig: Any, buffer: TrialBuffer, name: str = "", title: str = "") -> Any:
    """Draw (or update) an optimization run into ``fig``: left, objective per trial (points)
    and best so far (a step line); right, objective against the trial's value."""
    state = _artists(fig, "trials")
    metric = buffer.metric
    if state is None:
        fig.clear()
        fig.subplots_adjust(left=0.08, right=0.98, bottom=0.2, top=0.88, wspace=0.28)
        left, right = fig.subplots(1, 2, width_ratios=[3, 2])
        points = left.scatter([], [], s=14, color="tab:blue", alpha=0.7, label="trial")
        (best,) = left.plot([], [], drawstyle="steps-post", color="tab:red", lw=2,
                            label="best so far")
        left.set_xlabel("iteration")
        left.set_ylabel(metric)
        left.grid(True, alpha=0.3)
        left.legend(loc="lower right" if buffer.direction != "minimize" else "upper right",
                    fontsize="small")
        scatter = right.scatter([], [], s=14, color="tab:green", alpha=0.7)
        right.set_xlabel(name or "value")
        right.set_ylabel(metric)
        right.grid(True, alpha=0.3)
        state = fig._dspex_artists = {"kind": "trials", "left": left, "right": right,
                                      "points": points, "best": best, "scatter": scatter}
    xs, ys = buffer.series()
    bx, by = buffer.best_so_far()
    state["points"].set_offsets(list(zip(xs, ys, strict=True)) or _EMPTY)
    state["best"].set_data(bx, by)
    vx, vy, labels = buffer.values_and_objectives()
    state["scatter"].set_offsets(list(zip(vx, vy, strict=True)) or _EMPTY)
    right = state["right"]
    if labels:
        right.set_xticks(range(len(labels)), labels, rotation=30, fontsize="small")
    best = buffer.best()
    best_text = (f", best {metric} {best['objective'] + 0.0:.4g} at {best['value']!r}"
                 if best is not None else "")
    state["left"].set_title(title or f"{name or 'optimization'}: {len(xs)} trials{best_text}",
                            fontsize="medium", loc="left")
    right.set_title(f"{metric} vs {name or 'value'}", fontsize="medium")
    for ax in (state["left"], right):
        ax.relim()
        ax.update_datalim(_offsets(ax))
        ax.autoscale_view()
    return fig


_EMPTY = [[float("nan"), float("nan")]]


def _offsets(ax: Any) -> list[tuple[float, float]]:
    """Scatter points do not take part in ``relim``: their offsets, for the data limits."""
    out: list[tuple[float, float]] = []
    for coll in ax.collections:
        for x, y in coll.get_offsets():
            if x == x and y == y:  # not NaN
                out.append((float(x), float(y)))
    return out or [(0.0, 0.0), (1.0, 1.0)]


def plot_optimization_history(history: Iterable[Mapping[str, Any]], *, direction: str = "maximize",
                              metric: str = "objective", name: str = "", title: str = "",
                              width: float = 8.0, height: float = 3.2) -> Any:
    """A static Figure of optimization trials (``get_optimization_history`` entries): objective
    per iteration, best-so-far line, objective against value. No pyplot: save it with
    ``fig.savefig(path)`` or show it as the cell's result."""
    fig = new_figure(width, height)
    draw_trials(fig, TrialBuffer.from_history(history, direction, metric), name, title)
    return fig
