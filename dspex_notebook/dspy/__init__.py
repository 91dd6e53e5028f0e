"""DSPy integration (the optional ``dspy`` extra): variables that drive DSPy programs.

* :class:`ProgramBinding` — variables bound to LM knobs of a program (``temperature``,
  ``max_tokens``, the model ...), per predictor or program-wide, resolved at call time;
* :class:`ModuleVariableResolver` — a module whose strategy (``Predict``, ``ChainOfThought``,
  ``ReAct`` ...) is a ``module`` variable;
* :class:`DSPyOptimizationBridge` — ``sync_dspy_parameters`` (program settings <-> variables),
  ``create_variable_aware_optimizer`` (teleprompters configured from variables, results
  written back) and ``program_objective`` (a DSPy program on a dev set as the objective of
  ``start_optimization``).

``import dspex_notebook.dspy`` works without dspy; the names load it on first use and raise
ImportError with the install command when it is missing. See docs/dspy.md.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._load import available

_HOMES = {
    "DSPyOptimizationBridge": ".bridge",
    "VariableAwareOptimizer": ".optimizer",
    "ModuleVariableResolver": ".resolver",
    "VariableModule": ".resolver",
    "ProgramBinding": ".binding",
}

__all__ = ["DSPyOptimizationBridge", "ModuleVariableResolver", "ProgramBinding",
           "VariableAwareOptimizer", "VariableModule", "available"]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
