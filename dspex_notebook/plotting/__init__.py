"""Plots of variables and optimization runs (docs/widgets.md, "Plots").

:mod:`.buffer` holds the data (no matplotlib); :mod:`.render` draws into a
``matplotlib.figure.Figure`` (no pyplot); :mod:`.live` renders PNG frames into an
``ipywidgets.Image`` from the IO thread. Importing :mod:`.buffer` imports neither matplotlib nor
ipywidgets.
"""

from .buffer import SeriesBuffer, TrialBuffer

__all__ = ["LivePlot", "SeriesBuffer", "TrialBuffer", "ValuePlot", "draw_series", "draw_trials",
           "plot_optimization_history"]


def __getattr__(name: str):  # matplotlib and ipywidgets only when a plot is asked for
    if name in ("draw_series", "draw_trials", "plot_optimization_history"):
        from . import render

        return getattr(render, name)
    if name in ("LivePlot", "ValuePlot"):
        from . import live

        return getattr(live, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
