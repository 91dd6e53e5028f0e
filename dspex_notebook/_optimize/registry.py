"""Optimizer registry: names -> :class:`BaseOptimizer` subclasses, and :func:`make_optimizer`.

The built-ins (``bayesian``, ``grid_search`` with its alias ``grid``, ``gradient``) cannot be
replaced; user classes registered under other names can be re-registered freely, so re-running
a notebook cell that defines and registers a class just works.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import BaseOptimizer
from .bayesian import BayesianOptimizer
from .errors import OptimizerConfigError
from .gradient import GradientOptimizer
from .grid import GridSearchOptimizer
from .space import SearchSpace

__all__ = [
    "BUILTIN_OPTIMIZERS",
    "OptimizerRegistry",
    "available_optimizers",
    "default_registry",
    "make_optimizer",
    "register_optimizer",
    "unregister_optimizer",
]

BUILTIN_OPTIMIZERS: Mapping[str, type[BaseOptimizer]] = {
    "bayesian": BayesianOptimizer,
    "grid_search": GridSearchOptimizer,
    "grid": GridSearchOptimizer,
    "gradient": GradientOptimizer,
}


class OptimizerRegistry:
    """A mapping of optimizer names to classes, seeded with the built-ins.

    The module-level functions use :data:`default_registry`; a server or session that wants
    its own namespace of user optimizers creates another instance.
    """

    def __init__(self) -> None:
        self._classes: dict[str, type[BaseOptimizer]] = dict(BUILTIN_OPTIMIZERS)

    def register(self, name: str, cls: type[BaseOptimizer]) -> None:
        """Register ``cls`` under ``name`` (replacing an earlier user class of that name).

        Raises:
            OptimizerConfigError: empty name, or a built-in name.
            TypeError: ``cls`` is not a subclass of :class:`BaseOptimizer`.
        """
        if not isinstance(name, str) or not name.strip():
            raise OptimizerConfigError(f"optimizer name must be a non-empty string, got {name!r}")
        if name in BUILTIN_OPTIMIZERS:
            raise OptimizerConfigError(f"{name!r} is a built-in optimizer and cannot be replaced")
        if not isinstance(cls, type) or not issubclass(cls, BaseOptimizer):
            raise TypeError(f"optimizer class must subclass BaseOptimizer, got {cls!r}")
        self._classes[name] = cls

    def unregister(self, name: str) -> None:
        """Remove a user optimizer.

        Raises:
            OptimizerConfigError: a built-in name.
            KeyError: no such optimizer.
        """
        if name in BUILTIN_OPTIMIZERS:
            raise OptimizerConfigError(f"{name!r} is a built-in optimizer and cannot be removed")
        del self._classes[name]

    def get(self, name: str) -> type[BaseOptimizer]:
        """Return the class registered under ``name``.

        Raises:
            OptimizerConfigError: unknown name (the message lists the known names).
        """
        try:
            return self._classes[name]
        except (KeyError, TypeError):
            raise OptimizerConfigError(
                f"unknown optimizer {name!r}; known optimizers: {', '.join(self.names())}"
            ) from None

    def names(self) -> tuple[str, ...]:
        """Return every registered name, aliases included, sorted."""
        return tuple(sorted(self._classes))

    def create(
        self,
        name: str,
        space: SearchSpace,
        config: Mapping[str, Any] | None = None,
        *,
        direction: str,
        seed: int | None = None,
        max_iterations: int | None = None,
        convergence_threshold: float | None = None,
    ) -> BaseOptimizer:
        """Instantiate the optimizer registered under ``name`` (see :func:`make_optimizer`)."""
        return self.get(name)(
            space, config, direction=direction, seed=seed, max_iterations=max_iterations,
            convergence_threshold=convergence_threshold,
        )


#: The process-wide registry used by the module-level functions.
default_registry = OptimizerRegistry()


def make_optimizer(
    name: str,
    space: SearchSpace,
    config: Mapping[str, Any] | None = None,
    *,
    direction: str,
    seed: int | None = None,
    max_iterations: int | None = None,
    convergence_threshold: float | None = None,
) -> BaseOptimizer:
    """Create an optimizer by name.

    Parameters:
        name: ``"bayesian"``, ``"grid_search"`` (or ``"grid"``), ``"gradient"``, or a name
            given to :func:`register_optimizer`.
        space: The variable's search space (see :func:`space_for`).
        config: Optimizer-specific options; unknown keys are an error.
        direction: ``"minimize"`` or ``"maximize"``.
        seed: Random seed; the same seed gives the same proposals.
        max_iterations: Evaluation budget (``None``: unlimited).
        convergence_threshold: Convergence tolerance (``None``: optimizer default or off).

    Returns:
        A fresh :class:`BaseOptimizer`.

    Raises:
        OptimizerConfigError: unknown name (listing the known ones), unknown config key
            (listing the valid ones), bad config value, or unsupported space.
    """
    return default_registry.create(
        name, space, config, direction=direction, seed=seed, max_iterations=max_iterations,
        convergence_threshold=convergence_threshold,
    )


def register_optimizer(name: str, cls: type[BaseOptimizer]) -> None:
    """Register a :class:`BaseOptimizer` subclass under ``name`` in the default registry.

    Raises:
        OptimizerConfigError: empty or built-in name.
        TypeError: ``cls`` does not subclass :class:`BaseOptimizer`.
    """
    default_registry.register(name, cls)


def unregister_optimizer(name: str) -> None:
    """Remove a user optimizer from the default registry.

    Raises:
        OptimizerConfigError: a built-in name.
        KeyError: no such optimizer.
    """
    default_registry.unregister(name)


def available_optimizers() -> tuple[str, ...]:
    """Return the names known to the default registry, aliases included."""
    return default_registry.names()
