"""The DSPy knobs a variable can be bound to, and what a binding target looks like.

No dspy import here: the CLI and the magics list DSPy-bound variables without the extra.

A **target** names one knob, in DSPy's own attribute names:

==============================  ==========================================================
``lm.<key>``                    the LM request kwarg ``<key>`` of every call of the program
                                (``lm.copy(<key>=value)`` under ``dspy.context(lm=...)``)
``lm``                          the program's LM itself (the model: a choice/module variable)
``<path>.config.<key>``         predictor ``<path>``'s own request kwarg (``Predict.config``,
                                which DSPy merges over the LM's kwargs)
``<path>.lm``                   predictor ``<path>``'s own LM (``Predict.lm``)
==============================  ==========================================================

``<path>`` is a name from ``program.named_predictors()`` (``predict``, ``extract.predict``, or
``self`` for a bare ``dspy.Predict``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: the request kwargs a variable may drive: type and the constraints given to variables that
#: ``sync_dspy_parameters`` creates (temperature's 0-2 is the canonical range of DSPy's lm15
#: ``Config``; top_p is a probability).
KNOBS: dict[str, tuple[str, dict[str, Any]]] = {
    "temperature": ("float", {"min": 0.0, "max": 2.0}),
    "max_tokens": ("integer", {"min": 1, "max": 1_000_000}),
    "top_p": ("float", {"min": 0.0, "max": 1.0}),
    "n": ("integer", {"min": 1, "max": 128}),
    "seed": ("integer", {}),
}

#: metadata keys of variables created by the DSPy integration (read by ``%var dspy`` and
#: ``dspex-notebook dspy``)
META_TARGET = "dspy.target"
META_PROGRAM = "dspy.program"
META_ROLE = "dspy.role"


@dataclass(frozen=True, slots=True)
class Target:
    """One knob: ``path`` is None for the program-wide LM, ``key`` None for the LM itself."""

    path: str | None
    key: str | None

    @property
    def is_model(self) -> bool:
        return self.key is None

    def __str__(self) -> str:
        if self.path is None:
            return "lm" if self.key is None else f"lm.{self.key}"
        return f"{self.path}.lm" if self.key is None else f"{self.path}.config.{self.key}"


def parse_target(text: str) -> Target:
    """Parse a target string (see the module docstring).

    Raises:
        ValueError: not of one of the four forms, or an unknown request kwarg.
    """
    if not isinstance(text, str) or not text:
        raise ValueError(f"a DSPy binding target must be a non-empty string, got {text!r}")
    if text == "lm":
        return Target(None, None)
    if text.startswith("lm.") and "." not in text[3:]:
        return Target(None, _knob(text[3:], text))
    if text.endswith(".lm") and len(text) > 3:
        return Target(text[:-3], None)
    path, sep, key = text.rpartition(".config.")
    if sep and path and key and "." not in key:
        return Target(path, _knob(key, text))
    raise ValueError(
        f"DSPy binding target {text!r} is not one of 'lm', 'lm.<kwarg>', '<predictor>.lm', "
        f"'<predictor>.config.<kwarg>' (kwargs: {', '.join(KNOBS)})")


def _knob(key: str, text: str) -> str:
    if key not in KNOBS:
        raise ValueError(f"DSPy binding target {text!r}: {key!r} is not a request kwarg this "
                         f"integration binds (one of: {', '.join(KNOBS)})")
    return key


def coerce(key: str, value: Any, variable: str) -> Any:
    """``value`` as the request kwarg ``key`` expects it (an integer may arrive as 3.0).

    Raises:
        TypeError: not a number, or not integral for an integer kwarg.
    """
    kind = KNOBS[key][0]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"variable {variable!r} drives DSPy {key!r} but holds {value!r}, not a number")
    if kind == "integer":
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            raise TypeError(f"variable {variable!r} drives DSPy {key!r} (an integer) but holds {value!r}")
        return int(value)
    return float(value)


def variable_name(prefix: str, path: str, key: str, single: bool) -> str:
    """``cot_temperature`` for a one-predictor program, ``cot_<path>_temperature`` otherwise."""
    if single:
        return f"{prefix}{key}"
    clean = "".join(c if c.isalnum() else "_" for c in path).strip("_")
    while "__" in clean:
        clean = clean.replace("__", "_")
    return f"{prefix}{clean}_{key}"
