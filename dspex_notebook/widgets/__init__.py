"""ipywidgets controls bound both ways to session variables (docs/widgets.md).

    from dspex_notebook.widgets import bind, control_for
    b = control_for(session, "temperature")   # a slider for a float with min and max
    b                                          # shows the slider and its status line
    b.unlink()

Importing this package imports ipywidgets; ``import dspex_notebook`` does not.
"""

from .binding import SEQ, TAG, Binding
from .controls import kind_for, make_control, summary_html
from .optimization import OptimizationPanel
from .panel import VariablePanel, bind, control_for
from .scrubber import HistoryScrubber

__all__ = ["Binding", "HistoryScrubber", "OptimizationPanel", "SEQ", "TAG", "VariablePanel", "bind",
           "control_for", "kind_for", "make_control", "summary_html"]
