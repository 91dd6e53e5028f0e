"""Search spaces and optimizers for one variable: ``bayesian``, ``grid_search``, ``gradient``.

Everything here is pure numpy and knows nothing about sessions or the wire: an optimization
run drives an optimizer through ``suggest()`` / ``observe()`` (ask/tell) and the notebook
evaluates the objective. See ``docs/optimizers.md``.
"""

from .base import BaseOptimizer, Observation, StopReason
from .bayesian import BayesianOptimizer
from .errors import OptimizerConfigError, SearchSpaceError
from .gp import GaussianProcess
from .gradient import GradientOptimizer
from .grid import GridSearchOptimizer
from .registry import (
    BUILTIN_OPTIMIZERS,
    OptimizerRegistry,
    available_optimizers,
    default_registry,
    make_optimizer,
    register_optimizer,
    unregister_optimizer,
)
from .space import SearchSpace, space_for

__all__ = [
    "BUILTIN_OPTIMIZERS",
    "BaseOptimizer",
    "BayesianOptimizer",
    "GaussianProcess",
    "GradientOptimizer",
    "GridSearchOptimizer",
    "Observation",
    "OptimizerConfigError",
    "OptimizerRegistry",
    "SearchSpace",
    "SearchSpaceError",
    "StopReason",
    "available_optimizers",
    "default_registry",
    "make_optimizer",
    "register_optimizer",
    "space_for",
    "unregister_optimizer",
]
