"""The ``grid_search`` optimizer: evaluate a fixed list of values, in order.

The grid is the explicit ``values`` list when given; otherwise every option of a choice or
boolean space, every value of an integer (or stepped float) range, or ``n_points`` evenly
spaced floats (geometrically spaced on a log scale). The run ends with ``grid_exhausted``
once every grid point has been evaluated, or with ``max_iterations`` when the budget is
shorter than the grid (``truncated`` is then True).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import BaseOptimizer, StopReason
from .errors import OptimizerConfigError, SearchSpaceError

__all__ = ["GridSearchOptimizer"]

_DEFAULT_POINTS = 11


class GridSearchOptimizer(BaseOptimizer):
    """Exhaustive search over a grid (``"grid_search"``, alias ``"grid"``).

    Config keys (defaults): ``values`` (``None``; explicit grid, each value must be in the
    space), ``n_points`` (``None``; number of points for float/integer ranges: floats default
    to ``min(max_iterations, 11)``, integers to the whole range, thinned evenly to
    ``max_iterations`` when longer), ``shuffle`` (``False``; visit in seeded random order
    instead of ascending). ``convergence_threshold`` does not apply to a grid.

    Raises:
        OptimizerConfigError: ``values`` and ``n_points`` together, an empty or invalid
            ``values`` list, or ``n_points`` that is not an integer >= 2 or exceeds the budget.
    """

    name = "grid_search"
    check_convergence = False
    config_defaults = {"values": None, "n_points": None, "shuffle": False}

    def setup(self) -> None:
        if not isinstance(self.config["shuffle"], bool):
            raise OptimizerConfigError(f"{self.name}: config 'shuffle' must be true or false")
        grid = self._build()
        if self.config["shuffle"]:
            grid = [grid[int(i)] for i in self.rng.permutation(len(grid))]
        budget = self.max_iterations
        #: True when the budget is shorter than the grid (the run ends with max_iterations).
        self.truncated = budget is not None and len(grid) > budget
        self.grid: tuple[Any, ...] = tuple(grid[:budget] if self.truncated else grid)
        self._cursor = 0

    def _build(self) -> list[Any]:
        values, n_points = self.config["values"], self.config["n_points"]
        if values is not None and n_points is not None:
            raise OptimizerConfigError(f"{self.name}: give 'values' or 'n_points', not both")
        if values is not None:
            return self._explicit(values)
        sp = self.space
        if n_points is not None:
            if not sp.is_ordered:
                raise OptimizerConfigError(
                    f"{self.name}: 'n_points' applies to float and integer variables, "
                    f"not {sp.kind}; the grid is every option"
                )
            n = int(self._config_number("n_points", low=2, integer=True))
            if self.max_iterations is not None and n > self.max_iterations:
                raise OptimizerConfigError(
                    f"{self.name}: n_points={n} exceeds max_iterations={self.max_iterations}"
                )
            return self._spaced(n)
        if not sp.is_ordered:
            return list(sp.choices)
        if not sp.is_discrete:
            return self._spaced(min(self.max_iterations or _DEFAULT_POINTS, _DEFAULT_POINTS))
        size = sp.size
        assert size is not None
        if self.max_iterations is not None and size > self.max_iterations:
            return self._spaced(self.max_iterations)
        return list(sp.values())

    def _explicit(self, values: Any) -> list[Any]:
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise OptimizerConfigError(f"{self.name}: config 'values' must be a non-empty list")
        out = []
        for v in values:
            try:
                out.append(self.space.validate(v))
            except SearchSpaceError as exc:
                raise OptimizerConfigError(f"{self.name}: grid value rejected: {exc}") from None
        return out

    def _spaced(self, n: int) -> list[Any]:
        """``n`` points evenly spaced in unit space (so geometric when ``log``), deduplicated."""
        sp = self.space
        if n == 1:
            return [sp.from_unit(0.0)]
        # i / (n - 1) is exact at the ends and correctly rounded in between, so the float grid
        # on [0, 1] with 11 points contains exactly 0.8, not 0.8000000000000002.
        out: list[Any] = []
        for i in range(n):
            v = sp.from_unit(i / (n - 1))
            if not out or v != out[-1]:
                out.append(v)
        return out

    def propose(self) -> Any | None:
        if self._cursor >= len(self.grid):
            self.stop(StopReason.MAX_ITERATIONS if self.truncated else StopReason.GRID_EXHAUSTED)
            return None
        value = self.grid[self._cursor]
        self._cursor += 1
        return value

    def update(self, value: Any, objective: float | None) -> None:
        # Ends as soon as the last grid point is in, so status shows the reason right away.
        if self._cursor >= len(self.grid) and self.pending is None and not self.truncated:
            self.stop(StopReason.GRID_EXHAUSTED)

    def converged(self, threshold: float) -> bool:
        """A grid never converges early: every point is evaluated."""
        return False

