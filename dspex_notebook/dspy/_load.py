"""Import dspy on first use, with an error that says how to get it."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

#: the lowest dspy this integration is tested with: the lock pins 3.4.1, the release whose LM
#: engine interface (``dspy.LM(engine=...)``) the tests and notebook use (pyproject says the same).
MIN_VERSION = (3, 4, 1)


def available() -> bool:
    """Whether ``dspy`` can be imported (without importing it)."""
    return importlib.util.find_spec("dspy") is not None


def load_dspy() -> ModuleType:
    """The ``dspy`` module.

    Raises:
        ImportError: dspy is not installed (``pip install 'dspex-notebook[dspy]'``), or older
            than :data:`MIN_VERSION`.
    """
    try:
        dspy = importlib.import_module("dspy")
    except ImportError as exc:
        raise ImportError(
            "the DSPy integration needs the optional extra: pip install 'dspex-notebook[dspy]' "
            f"(import dspy failed: {exc})") from exc
    version = tuple(int(p) for p in _numeric(getattr(dspy, "__version__", "0")))
    if version < MIN_VERSION:
        raise ImportError(f"the DSPy integration needs dspy >= {'.'.join(map(str, MIN_VERSION))}, "
                          f"found {dspy.__version__}")
    return dspy


def _numeric(version: str) -> list[str]:
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(digits or "0")
    return parts
