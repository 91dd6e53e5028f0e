"""The optimizer protocol: ``suggest()`` a value, ``observe()`` its objective, repeat.

:class:`BaseOptimizer` does the bookkeeping every optimizer needs (budget, one outstanding
suggestion, failed trials, best-so-far, direction, seeding, stop reasons) so that a subclass
only implements :meth:`BaseOptimizer.propose` and, usually, :meth:`BaseOptimizer.update`.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

import numpy as np

from .._errors import a_or_an
from .errors import OptimizerConfigError
from .space import SearchSpace, same_value

__all__ = ["BaseOptimizer", "Observation", "StopReason"]


class StopReason(StrEnum):
    """Why an optimizer stopped proposing values (``BaseOptimizer.stop_reason``).

    Members compare equal to their string values, e.g. ``StopReason.MAX_ITERATIONS ==
    "max_iterations"``; user optimizers may stop with any other string.
    """

    MAX_ITERATIONS = "max_iterations"  #: the evaluation budget is used up
    GRID_EXHAUSTED = "grid_exhausted"  #: grid_search evaluated every grid point
    SPACE_EXHAUSTED = "space_exhausted"  #: nothing new left to evaluate (small discrete space)
    CONVERGED = "converged"  #: ``converged(threshold)`` returned True (user optimizers)
    CONVERGED_STEP = "converged_step"  #: gradient: the step fell below threshold * range
    CONVERGED_IMPROVEMENT = "converged_improvement"  #: relative improvement <= threshold
    CONVERGED_PLATEAU = "converged_plateau"  #: gradient: zero slope around the current point
    EXHAUSTED = "exhausted"  #: ``propose()`` returned None without giving a reason
    FAILED = "failed"  #: too many failed trials to continue
    STOPPED = "stopped"  #: stopped from outside (``stop()``)


_NOTHING: Any = object()  # "no pending suggestion"; None may be a legitimate choice


@dataclass(frozen=True, slots=True)
class Observation:
    """One evaluated trial: the value and its objective (``None`` when the trial failed)."""

    value: Any
    objective: float | None

    @property
    def failed(self) -> bool:
        """Whether the trial failed (no objective)."""
        return self.objective is None


class BaseOptimizer(ABC):
    """Base class of every optimizer, built-in or registered with ``register_optimizer``.

    The protocol is ask/tell: :meth:`suggest` returns the next value to evaluate (``None`` once
    the run is over, with :attr:`stop_reason` saying why), the caller evaluates it and reports
    with :meth:`observe`. A subclass implements :meth:`propose` (the next value, or ``None``) and
    usually :meth:`update` (learn from an observation); it may override :meth:`converged`.
    The base class enforces ``max_iterations`` (one iteration = one evaluation, failed ones
    included), keeps one outstanding suggestion (calling ``suggest()`` again before
    ``observe()`` returns the same value), validates values against the space, and tracks
    :attr:`best` in the direction of the run.

    Parameters:
        space: The variable's :class:`SearchSpace`.
        config: Optimizer-specific options; keys not in :attr:`config_defaults` are refused
            (unless ``config_defaults`` is ``None``, then anything goes).
        direction: ``"minimize"`` or ``"maximize"``.
        seed: Seed of :attr:`rng`; the same seed gives the same proposals.
        max_iterations: Evaluation budget, ``None`` for no limit.
        convergence_threshold: Passed to :meth:`converged` after every observation; ``None``
            turns convergence checks off.

    Raises:
        OptimizerConfigError: bad direction, budget, threshold, config key, or a space kind
            the optimizer does not support.

    Example:
        A random-search optimizer that works on any space::

            class RandomSearch(BaseOptimizer):
                name = "random"
                config_defaults = {"n_points": None}

                def propose(self):
                    n = self.config["n_points"]
                    if n is not None and len(self.history) >= n:
                        return None              # stop_reason becomes "exhausted"
                    return self.space.sample(self.rng)

            register_optimizer("random", RandomSearch)
            opt = make_optimizer("random", space_for("float", {"min": 0, "max": 1}),
                                 direction="maximize", seed=0, max_iterations=20)
            while (x := opt.suggest()) is not None:
                opt.observe(x, accuracy(x))      # None for a failed evaluation
            print(opt.best, opt.stop_reason)
    """

    #: Name used in messages (the registry name for built-ins).
    name: ClassVar[str] = "optimizer"
    #: Accepted config keys and their defaults; ``None`` accepts any key.
    config_defaults: ClassVar[Mapping[str, Any] | None] = None
    #: Whether :meth:`observe` stops the run (reason ``"converged"``) when
    #: ``converged(convergence_threshold)`` is True. Built-ins stop themselves with a more
    #: specific reason and turn this off.
    check_convergence: ClassVar[bool] = True
    #: Space kinds this optimizer can search.
    supported_kinds: ClassVar[frozenset[str]] = frozenset({"float", "integer", "choice", "boolean"})

    def __init__(
        self,
        space: SearchSpace,
        config: Mapping[str, Any] | None = None,
        *,
        direction: str,
        seed: int | None = None,
        max_iterations: int | None = None,
        convergence_threshold: float | None = None,
    ) -> None:
        if not isinstance(space, SearchSpace):
            raise OptimizerConfigError(f"{self.name}: space must be a SearchSpace, got {space!r}")
        if space.kind not in self.supported_kinds:
            who = f"variable {space.name!r}" if space.name else "the variable"
            raise OptimizerConfigError(
                f"{self.name} cannot search {who}: it is {a_or_an(space.kind)} space and {self.name} "
                f"supports {', '.join(sorted(self.supported_kinds))} spaces"
            )
        if direction not in ("minimize", "maximize"):
            raise OptimizerConfigError(
                f"direction must be 'minimize' or 'maximize', got {direction!r}"
            )
        if max_iterations is not None and (
            not isinstance(max_iterations, numbers.Integral)
            or isinstance(max_iterations, bool)
            or max_iterations < 1
        ):
            raise OptimizerConfigError(
                f"max_iterations must be a positive integer, got {max_iterations!r}"
            )
        if convergence_threshold is not None and (
            not _is_number(convergence_threshold) or convergence_threshold < 0
        ):
            raise OptimizerConfigError(
                f"convergence_threshold must be a finite number >= 0, got {convergence_threshold!r}"
            )
        self.space = space
        self.direction = direction
        self.seed = seed
        self.max_iterations = None if max_iterations is None else int(max_iterations)
        self.convergence_threshold = (
            None if convergence_threshold is None else float(convergence_threshold)
        )
        self.config: dict[str, Any] = self._resolve_config(config)
        self.rng = np.random.default_rng(seed)
        self._history: list[Observation] = []
        self._pending: Any = _NOTHING
        self._best: Observation | None = None
        self._stop_reason: str | None = None
        self.setup()

    def setup(self) -> None:  # noqa: B027 - optional hook, deliberately empty
        """Read your config keys and initialise state; called at the end of ``__init__``.

        Override this instead of ``__init__`` (no need to repeat its signature); ``self.space``,
        ``self.config`` (defaults filled in), ``self.rng``, ``self.direction``,
        ``self.max_iterations`` and ``self.convergence_threshold`` are set.
        """

    # -- to implement ----------------------------------------------------------------------

    @abstractmethod
    def propose(self) -> Any | None:
        """Return the next value to evaluate, or ``None`` when there is nothing left to try.

        Called by :meth:`suggest` only while the run is active, the budget is not spent and
        no suggestion is outstanding. Call :meth:`stop` with a reason before returning
        ``None`` to report why (otherwise the reason is ``"exhausted"``).
        """

    def update(self, value: Any, objective: float | None) -> None:  # noqa: B027 - optional hook
        """Learn from one observation (``objective`` in the caller's units, ``None`` = failed).

        Called by :meth:`observe` after :attr:`history` and :attr:`best` are updated.
        Use :meth:`loss` to turn the objective into a value to minimize.
        """

    def converged(self, threshold: float) -> bool:
        """Return whether the run has converged at ``threshold`` (default: never)."""
        return False

    # -- protocol --------------------------------------------------------------------------

    def suggest(self) -> Any | None:
        """Return the next value to evaluate, or ``None`` once the run is over.

        Returns:
            A value from the space; the same value again while it has not been observed.
            ``None`` when stopped (see :attr:`stop_reason`).

        Raises:
            SearchSpaceError: ``propose()`` returned a value outside the space (a bug in the
                optimizer).
        """
        if self._stop_reason is not None:
            return None
        if self._pending is not _NOTHING:
            return self._pending
        if self.max_iterations is not None and len(self._history) >= self.max_iterations:
            self.stop(StopReason.MAX_ITERATIONS)
            return None
        value = self.propose()
        if value is None:
            self.stop(StopReason.EXHAUSTED)  # keeps a reason propose() already set
            return None
        self._pending = self.space.validate(value)
        return self._pending

    def observe(self, value: Any, objective: float | None) -> None:
        """Report the objective of ``value`` (``None``, NaN or inf for a failed trial).

        Usually ``value`` is the last suggestion; any other value in the space is recorded
        too (optimizers that can use extra data, like ``bayesian``, do).

        Raises:
            SearchSpaceError: ``value`` is not in the space.
            TypeError: ``objective`` is not a real number or None.
        """
        value = self.space.validate(value)
        if objective is not None and not _is_number(objective, finite=False):
            raise TypeError(f"objective must be a real number or None, got {objective!r}")
        obj = None if objective is None or not math.isfinite(objective) else float(objective)
        if self._pending is not _NOTHING and same_value(value, self._pending):
            self._pending = _NOTHING
        obs = Observation(value, obj)
        self._history.append(obs)
        if obj is not None and (
            self._best is None or self.loss(obj) < self.loss(self._best.objective)  # type: ignore[arg-type]
        ):
            self._best = obs
        if self._stop_reason is not None:
            return
        self.update(value, obj)
        thr = self.convergence_threshold
        auto = self.check_convergence and thr is not None
        if self._stop_reason is None and auto and self.converged(thr):  # type: ignore[arg-type]
            self.stop(StopReason.CONVERGED)
        if (
            self._stop_reason is None
            and self.max_iterations is not None
            and len(self._history) >= self.max_iterations
        ):
            self.stop(StopReason.MAX_ITERATIONS)

    def stop(self, reason: str = StopReason.STOPPED) -> None:
        """End the run: :meth:`suggest` returns ``None`` from now on. The first reason wins."""
        if self._stop_reason is None:
            self._stop_reason = str(reason)
            self._pending = _NOTHING

    # -- state -----------------------------------------------------------------------------

    @property
    def stop_reason(self) -> str | None:
        """Why the run ended (a :class:`StopReason` value or custom string); None while running."""
        return self._stop_reason

    @property
    def history(self) -> tuple[Observation, ...]:
        """Every observation, in order."""
        return tuple(self._history)

    @property
    def pending(self) -> Any | None:
        """The outstanding suggestion, or ``None``."""
        return None if self._pending is _NOTHING else self._pending

    @property
    def best(self) -> tuple[Any, float] | None:
        """``(value, objective)`` of the best successful observation so far, or ``None``."""
        if self._best is None:
            return None
        return self._best.value, self._best.objective  # type: ignore[return-value]

    def loss(self, objective: float) -> float:
        """Return ``objective`` as a value to minimize (negated when maximizing)."""
        return objective if self.direction == "minimize" else -objective

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.space} {self.direction} n={len(self._history)} "
            f"best={self.best!r} stop_reason={self._stop_reason!r}>"
        )

    # -- helpers for subclasses ------------------------------------------------------------

    def _resolve_config(self, config: Mapping[str, Any] | None) -> dict[str, Any]:
        if config is not None and not isinstance(config, Mapping):
            raise OptimizerConfigError(
                f"{self.name}: config must be a dict, got {type(config).__name__}"
            )
        given = dict(config or {})
        defaults = self.config_defaults
        if defaults is None:
            return given
        unknown = sorted(str(k) for k in given if k not in defaults)
        if unknown:
            valid = ", ".join(sorted(defaults)) or "(none)"
            raise OptimizerConfigError(
                f"{self.name}: unknown config key(s) {', '.join(map(repr, unknown))}; "
                f"valid keys: {valid}"
            )
        return {**defaults, **given}

    def _config_number(
        self, key: str, *, low: float | None = None, high: float | None = None,
        integer: bool = False, low_open: bool = False,
    ) -> float:
        """Return config ``key`` as a number checked against bounds (for subclass __init__)."""
        v = self.config[key]
        ok = _is_number(v) and (not integer or float(v).is_integer())
        if ok and low is not None:
            ok = v > low if low_open else v >= low
        if ok and high is not None:
            ok = v <= high
        if not ok:
            kind = "an integer" if integer else "a number"
            rng = f" {'>' if low_open else '>='} {low}" if low is not None else ""
            rng += f" and <= {high}" if high is not None else ""
            raise OptimizerConfigError(
                f"{self.name}: config {key!r} must be {kind}{rng}, got {v!r}"
            )
        return int(v) if integer else float(v)

    def _config_start(self) -> Any | None:
        """Return the ``initial_value``/``x0`` config (aliases) validated against the space."""
        a, b = self.config.get("initial_value"), self.config.get("x0")
        if a is not None and b is not None:
            raise OptimizerConfigError(f"{self.name}: give 'initial_value' or 'x0', not both")
        start = a if a is not None else b
        return None if start is None else self.space.validate(start)

    def _config_choice(self, key: str, allowed: tuple[str, ...]) -> str:
        v = self.config[key]
        if v not in allowed:
            raise OptimizerConfigError(
                f"{self.name}: config {key!r} must be one of "
                f"{', '.join(map(repr, allowed))}, got {v!r}"
            )
        return str(v)


def _is_number(v: Any, *, finite: bool = True) -> bool:
    if not isinstance(v, numbers.Real) or isinstance(v, bool):
        return False
    return math.isfinite(float(v)) if finite else True
