"""Search spaces: the set of values an optimizer may propose for one variable.

A :class:`SearchSpace` is derived from a variable's type and constraints by :func:`space_for`:

* ``float`` with ``min``/``max`` (optional ``log``; optional ``step`` makes it a grid),
* ``integer`` with ``min``/``max`` (optional ``step``, optional ``log``),
* ``choice``/``module`` with ``choices`` (``allowed_modules`` is accepted for modules),
* ``boolean`` (``False``, ``True``),
* any other type only when ``choices`` (or ``enum`` for strings) lists the candidates.

Ordered spaces map to the unit interval (``to_unit``/``from_unit``) so optimizers work on
``u`` in [0, 1] whatever the units, and on a log scale when ``log`` is set.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .._constraints import check_constraints
from .._errors import InvalidArgument
from .._types import TYPE_ALIASES, TYPE_NAMES
from .errors import SearchSpaceError

__all__ = ["SearchSpace", "space_for", "same_value"]

SpaceKind = Literal["float", "integer", "choice", "boolean"]

#: Type names other implementations use for the same types (kept in line with ``_types``).
_NOT_SEARCHABLE = ("string", "embedding", "tensor", "list", "dict")
_KNOWN = TYPE_NAMES
# Above this many values an ordered discrete space is never materialized as a list.
_MAX_ENUMERATE = 100_000


def same_value(a: Any, b: Any) -> bool:
    """Return whether two proposed values are the same (``==``, safe for arrays and odd types)."""
    if a is b:
        return True
    # True == 1 in Python, but a boolean and a number are different proposals.
    if isinstance(a, (bool, np.bool_)) != isinstance(b, (bool, np.bool_)):
        return False
    try:
        return bool(a == b)
    except (TypeError, ValueError):  # e.g. numpy arrays compare elementwise
        return False


def _label(name: str) -> str:
    return f"variable {name!r}" if name else "the variable"


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


@dataclass(frozen=True)
class SearchSpace:
    """The values an optimizer may propose for one variable.

    Build one with :func:`space_for` rather than directly; the constructor does not validate.

    Attributes:
        kind: ``"float"``, ``"integer"``, ``"choice"`` or ``"boolean"``.
        name: The variable's name (used in error messages only).
        var_type: The variable type the space was derived from (e.g. ``"module"``).
        low, high: Bounds of an ordered space (inclusive).
        log: Whether the unit mapping is logarithmic.
        step: Grid step of a discrete ordered space (always set for integers), else ``None``.
        choices: Candidate values of a ``choice``/``boolean`` space.
    """

    kind: SpaceKind
    name: str = ""
    var_type: str = ""
    low: float = 0.0
    high: float = 1.0
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = field(default=())

    # -- shape -----------------------------------------------------------------------------

    @property
    def is_ordered(self) -> bool:
        """Whether values have an order and a unit mapping (float and integer spaces)."""
        return self.kind in ("float", "integer")

    @property
    def is_discrete(self) -> bool:
        """Whether the space is a finite set of values."""
        return self.kind != "float" or self.step is not None

    @property
    def size(self) -> int | None:
        """Number of values in a discrete space, ``None`` for a continuous one."""
        if not self.is_ordered:
            return len(self.choices)
        if self.step is None:
            return None
        return int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1

    def value_at(self, index: int) -> Any:
        """Return the ``index``-th value of a discrete space (ascending for ordered spaces)."""
        size = self.size
        if size is None or not 0 <= index < size:
            raise IndexError(f"index {index} outside a space of size {size}")
        if not self.is_ordered:
            return self.choices[index]
        assert self.step is not None
        if self.kind == "integer":
            return int(self.low) + int(self.step) * index
        # 15 significant digits remove representation noise (0.1 * 3 = 0.30000000000000004).
        return float(f"{self.low + self.step * index:.15g}")

    def values(self) -> tuple[Any, ...]:
        """Return every value of a discrete space, in order.

        Raises:
            SearchSpaceError: the space is continuous or too large to enumerate.
        """
        size = self.size
        if size is None or size > _MAX_ENUMERATE:
            raise SearchSpaceError(
                f"{_label(self.name)}: the space {self} is too large to enumerate"
            )
        return tuple(self.value_at(i) for i in range(size))

    def index_of(self, value: Any) -> int:
        """Return the index of ``value`` in a discrete space (after :meth:`validate`)."""
        value = self.validate(value)
        if not self.is_ordered:
            return next(i for i, c in enumerate(self.choices) if same_value(c, value))
        assert self.step is not None
        return int(round((value - self.low) / self.step))

    @property
    def _top(self) -> float:
        size = self.size
        return self.high if size is None else float(self.value_at(size - 1))

    # -- membership ------------------------------------------------------------------------

    def validate(self, value: Any) -> Any:
        """Return ``value`` in canonical form (``float``/``int``/choice) if it is in the space.

        Raises:
            SearchSpaceError: the value is not in the space, naming the variable and the rule.
        """
        where = _label(self.name)
        if self.kind == "boolean":
            if isinstance(value, (bool, np.bool_)):
                return bool(value)
            raise SearchSpaceError(f"{where}: {value!r} is not a boolean")
        if self.kind == "choice":
            for c in self.choices:
                if same_value(c, value):
                    return c
            raise SearchSpaceError(f"{where}: {value!r} is not one of {list(self.choices)!r}")
        if not _is_real(value) or not math.isfinite(float(value)):
            raise SearchSpaceError(f"{where}: {value!r} is not a finite {self.kind} value")
        v = float(value)
        if v < self.low or v > self.high:
            raise SearchSpaceError(f"{where}: {value!r} is outside [{self.low}, {self.high}]")
        if self.step is None:
            return v
        k = (v - self.low) / self.step
        if abs(k - round(k)) > 1e-9 * max(1.0, abs(k)):
            raise SearchSpaceError(
                f"{where}: {value!r} is not on the grid {self.low} + k*{self.step}"
            )
        return self.value_at(int(round(k)))

    def contains(self, value: Any) -> bool:
        """Return whether ``value`` is in the space."""
        try:
            self.validate(value)
        except SearchSpaceError:
            return False
        return True

    # -- unit mapping (ordered spaces) -------------------------------------------------------

    def to_unit(self, value: Any) -> float:
        """Map a value to ``u`` in [0, 1] (log scale when ``log``); choices map to index/(n-1)."""
        if not self.is_ordered:
            n = len(self.choices)
            return self.index_of(value) / (n - 1) if n > 1 else 0.0
        v, lo, hi = float(value), self.low, self._top
        if hi <= lo:
            return 0.0
        if self.log:
            return (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo))
        return (v - lo) / (hi - lo)

    def from_unit(self, u: float) -> Any:
        """Map ``u`` (clipped to [0, 1]) back to the nearest value in the space."""
        u = min(1.0, max(0.0, float(u)))
        if not self.is_ordered:
            return self.choices[int(round(u * (len(self.choices) - 1)))]
        lo, hi = self.low, self._top
        if self.log:
            x = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
        else:
            x = lo + u * (hi - lo)
        if self.step is None:
            # Snap the ends exactly so a bound is reachable despite rounding.
            return lo if u == 0.0 else hi if u == 1.0 else min(hi, max(lo, x))
        size = self.size
        assert size is not None
        return self.value_at(min(size - 1, max(0, int(round((x - lo) / self.step)))))

    def sample(self, rng: np.random.Generator) -> Any:
        """Draw one value uniformly (in unit space for ordered spaces, by index otherwise)."""
        if self.is_discrete and not self.is_ordered:
            return self.choices[int(rng.integers(len(self.choices)))]
        return self.from_unit(float(rng.random()))

    def __str__(self) -> str:
        if self.is_ordered:
            def num(v: float) -> str:
                return str(int(v)) if self.kind == "integer" else str(v)

            extra = ", log" if self.log else ""
            if self.step is not None and not (self.kind == "integer" and self.step == 1):
                extra += f", step={num(self.step)}"
            return f"{self.kind}[{num(self.low)}, {num(self.high)}{extra}]"
        return f"{self.kind}{list(self.choices)!r}"


# ----------------------------------------------------------------------------------------------
# derivation from a variable


def space_for(
    var_type: Any, constraints: Mapping[str, Any] | None = None, name: str = ""
) -> SearchSpace:
    """Derive the search space of a variable from its type and constraints.

    Parameters:
        var_type: The variable type (``"float"``, ``"integer"``, ``"choice"``, ``"module"``,
            ``"boolean"``, ...); enum members and aliases such as ``"int"`` are accepted.
        constraints: The variable's constraints (``min``, ``max``, ``step``, ``log``,
            ``choices``); other keys (``dimensions``, ``pattern``, ...) are ignored.
        name: The variable name, used in error messages.

    Returns:
        The :class:`SearchSpace`.

    Raises:
        SearchSpaceError: the type cannot be searched without ``choices``, a bound is missing
            or not a finite number, ``min > max``, ``log`` with ``min <= 0``, or bad ``choices``.
    """
    where = _label(name)
    raw = getattr(var_type, "value", var_type)
    if not isinstance(raw, str):
        raise SearchSpaceError(f"{where}: variable type must be a string, got {raw!r}")
    vtype = TYPE_ALIASES.get(raw.strip().lstrip(":").lower(), raw.strip().lstrip(":").lower())
    if vtype not in _KNOWN:
        raise SearchSpaceError(
            f"{where}: unknown variable type {raw!r}; known types: {', '.join(_KNOWN)}"
        )
    c: Mapping[str, Any] = constraints or {}
    if not isinstance(c, Mapping):
        raise SearchSpaceError(f"{where}: constraints must be a dict, got {type(c).__name__}")

    choices_key = next((k for k in ("choices", "allowed_modules", "enum") if k in c), None)
    if vtype == "boolean":
        return SearchSpace("boolean", name, vtype, choices=(False, True))
    if choices_key is not None:
        choices = _check_choices(c[choices_key], choices_key, where)
        return SearchSpace("choice", name, vtype, choices=choices)
    if vtype in ("choice", "module"):
        raise SearchSpaceError(
            f"{where} of type {vtype!r} cannot be optimized: "
            "it needs a non-empty 'choices' constraint"
        )
    if vtype in _NOT_SEARCHABLE:
        raise SearchSpaceError(
            f"{where} of type {vtype!r} cannot be optimized: only float, integer, boolean, choice "
            "and module variables have a search space; give constraints={'choices': [...]} "
            "to search a fixed list of values"
        )
    return _ordered(vtype, c, name, where)


def _check_choices(raw: Any, key: str, where: str) -> tuple[Any, ...]:
    if isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence) or len(raw) == 0:
        raise SearchSpaceError(f"{where}: constraint {key!r} must be a non-empty list, got {raw!r}")
    out = tuple(raw)
    for i, a in enumerate(out):
        if any(same_value(a, b) for b in out[:i]):
            raise SearchSpaceError(f"{where}: constraint {key!r} lists {a!r} more than once")
    return out


def _bound(c: Mapping[str, Any], key: str, vtype: str, where: str) -> float:
    if key not in c or c[key] is None:
        raise SearchSpaceError(
            f"{where} of type {vtype!r} cannot be optimized without a {key!r} constraint "
            "(the search needs both 'min' and 'max')"
        )
    v = c[key]
    if not _is_real(v) or not math.isfinite(float(v)):
        raise SearchSpaceError(f"{where}: constraint {key!r} must be a finite number, got {v!r}")
    if vtype == "integer" and not float(v).is_integer():
        raise SearchSpaceError(f"{where}: constraint {key!r} must be an integer, got {v!r}")
    return float(v)


def _ordered(vtype: str, c: Mapping[str, Any], name: str, where: str) -> SearchSpace:
    low, high = _bound(c, "min", vtype, where), _bound(c, "max", vtype, where)
    step: float | None = c.get("step")
    if step is not None and vtype == "integer" and not (_is_real(step) and float(step).is_integer()):
        raise SearchSpaceError(f"{where}: constraint 'step' must be an integer, got {step!r}")
    # the rules a variable's constraints obey anyway (min <= max, step > 0, log needs min > 0)
    # are checked by the one validator of constraints; only what a search adds is checked here
    ordered = {k: c[k] for k in ("min", "max", "step", "log") if k in c and c[k] is not None}
    if vtype == "integer":
        ordered = {k: (int(v) if k != "log" and _is_real(v) else v) for k, v in ordered.items()}
        ordered.pop("log", None)  # integer variables have no log constraint; a search may
    try:
        check_constraints(vtype, ordered, name)
    except InvalidArgument as exc:
        raise SearchSpaceError(f"{where}: {str(exc).split(': ', 1)[-1]}") from None
    if vtype == "float" and low == high and step is None:
        raise SearchSpaceError(
            f"{where}: constraint min={c['min']!r} must be below max={c['max']!r} to search"
        )
    log = c.get("log", False)
    if not isinstance(log, bool):
        raise SearchSpaceError(f"{where}: constraint 'log' must be true or false, got {log!r}")
    if vtype == "integer" and log and low <= 0:
        raise SearchSpaceError(f"{where}: constraint log=true needs min > 0, got min={c['min']!r}")
    if vtype == "integer":
        return SearchSpace("integer", name, vtype, low, high, log, int(step or 1))
    return SearchSpace("float", name, vtype, low, high, log, None if step is None else float(step))
