"""The ``gradient`` optimizer: local descent from finite differences (central or SPSA).

Ask/tell turns the classic loop inside out: the optimizer cannot call the objective, it can
only propose the next point and wait. The algorithm is therefore written as a generator that
``yield``s each point it needs and receives the loss back (``None`` for a failed trial);
:meth:`GradientOptimizer.propose` and :meth:`GradientOptimizer.update` just drive it.

Everything happens in unit space ``u`` in [0, 1] (log scale when the space is), so
``learning_rate``, ``perturbation`` and ``convergence_threshold`` are fractions of the range.

``central``: evaluate the start x, then x+h and x-h; take a Newton step from the three points
when the curvature is positive, else a step of the trust radius downhill; accept it only if
the loss improves, otherwise halve it (backtracking; a step that lands on exactly the same
loss, a flat stair of a piecewise-constant metric, is first stretched to the full radius).
Accepted steps grow the trust radius.
The run stops when the step falls below ``threshold`` (``converged_step``), the relative
improvement ``(f_old - f_new) / max(|f_old|, |f_new|, 1)`` is at most ``threshold``
(``converged_improvement``), or the slope is exactly zero (``converged_plateau``: a
piecewise-constant metric with a too small ``perturbation``).

``spsa``: simultaneous-perturbation estimates with the standard decaying gains
``a_k = a / (k + 1 + A)^0.602`` and ``c_k = c / (k + 1)^0.101``; ``a`` is calibrated from the
first estimate so the first step is ``learning_rate`` of the range. Suited to noisy
objectives; stops after two consecutive steps below ``threshold``.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any

from .base import BaseOptimizer, StopReason
from .space import same_value

__all__ = ["GradientOptimizer"]

_DEFAULT_TOLERANCE = 1e-3
_MAX_FAILURES = 5  # consecutive failed probes before giving up (SPSA)

Loss = float | None
Search = Generator[Any, Loss, None]


class GradientOptimizer(BaseOptimizer):
    """Local finite-difference descent within bounds (``"gradient"``); float and integer only.

    Config keys (defaults): ``method`` (``"central"`` or ``"spsa"``), ``learning_rate``
    (``0.1``: initial step as a fraction of the range), ``perturbation`` (``0.02``: ``h`` as
    a fraction of the range; use 0.05 or more for accuracy-like, piecewise-constant metrics),
    ``initial_value``/``x0`` (``None``: the middle of the range; pass the variable's current
    value). Without ``convergence_threshold`` the tolerance is ``1e-3``.

    It finds a *local* optimum near the start value; use ``bayesian`` for a global search.
    """

    name = "gradient"
    supported_kinds = frozenset({"float", "integer"})
    check_convergence = False
    config_defaults = {
        "method": "central",
        "learning_rate": 0.1,
        "perturbation": 0.02,
        "initial_value": None,
        "x0": None,
    }

    def setup(self) -> None:
        self.method = self._config_choice("method", ("central", "spsa"))
        self.learning_rate = self._config_number("learning_rate", low=0.0, high=1.0, low_open=True)
        self.perturbation = self._config_number("perturbation", low=0.0, high=0.5, low_open=True)
        start = self._config_start()
        self.tolerance = (
            _DEFAULT_TOLERANCE if self.convergence_threshold is None else self.convergence_threshold
        )
        self._x = self.space.to_unit(start) if start is not None else self._snap(0.5)
        # The first proposal is the start value itself, not its round trip through unit space.
        self._start = start if start is not None else self.space.from_unit(self._x)
        self._steps = 0
        self._dx: list[float] = []  # sizes of the last (up to) two descent steps
        self._last_rel: float | None = None
        self._search: Search = self._central() if self.method == "central" else self._spsa()
        self._next: Any | None = next(self._search)
        self._awaiting = False

    # -- ask/tell plumbing -----------------------------------------------------------------

    def propose(self) -> Any | None:
        if self._next is None:
            return None
        self._awaiting = True
        return self._next

    def update(self, value: Any, objective: float | None) -> None:
        if not self._awaiting or not same_value(value, self._next):
            return  # an observation we did not ask for: it counts for best, not for the descent
        self._awaiting = False
        try:
            self._next = self._search.send(None if objective is None else self.loss(objective))
        except StopIteration:
            self._next = None

    def converged(self, threshold: float) -> bool:
        """Return whether the descent has converged at ``threshold`` (fraction of the range).

        ``central``: the last step moved less than ``threshold`` or improved the loss by at
        most ``threshold`` relatively; ``spsa``: the last two steps moved less than it.
        """
        if self.stop_reason is not None and self.stop_reason.startswith("converged"):
            return True
        if self.method == "spsa":
            return len(self._dx) == 2 and max(self._dx) < threshold
        small_step = bool(self._dx) and self._dx[-1] < threshold
        return small_step or (self._last_rel is not None and self._last_rel <= threshold)

    @property
    def current(self) -> Any:
        """The current iterate (the point the descent is at), as a value of the space."""
        return self.space.from_unit(self._x)

    @property
    def steps(self) -> int:
        """Number of accepted steps so far."""
        return self._steps

    # -- geometry ----------------------------------------------------------------------------

    def _snap(self, u: float) -> float:
        """Clip to [0, 1] and, for discrete spaces, move to the nearest value's position."""
        u = min(1.0, max(0.0, u))
        return self.space.to_unit(self.space.from_unit(u)) if self.space.is_discrete else u

    def _probe(self, x: float, h: float) -> float:
        """Position ``h`` away from ``x``; at least one value away in a discrete space."""
        sp = self.space
        if not sp.is_discrete:
            return min(1.0, max(0.0, x + h))
        size = sp.size
        assert size is not None
        k = max(1, round(abs(h) * (size - 1)))
        i = sp.index_of(sp.from_unit(x)) + (k if h > 0 else -k)
        return sp.to_unit(sp.value_at(min(size - 1, max(0, i))))

    def _value(self, u: float) -> Any:
        return self.space.from_unit(u)

    def _accept(self, x_new: float, f_old: float | None = None, f_new: float | None = None) -> None:
        """Move to ``x_new``; with both losses it is a descent step that convergence judges."""
        step = f_old is not None and f_new is not None
        self._dx = [*self._dx[-1:], abs(x_new - self._x)] if step else []
        self._last_rel = (
            (f_old - f_new) / max(abs(f_old), abs(f_new), 1.0)  # type: ignore[operator,arg-type]
            if step else None
        )
        self._x = x_new
        self._steps += 1

    # -- central differences with a trust radius ---------------------------------------------

    def _central(self) -> Search:
        tol, h, radius = self.tolerance, self.perturbation, self.learning_rate
        x = self._x
        fx = yield self._start
        fx = math.inf if fx is None else fx
        while True:
            up, um = self._probe(x, h), self._probe(x, -h)
            if up == um:
                self.stop(StopReason.SPACE_EXHAUSTED)  # a single-value space
                return
            fp = fx if up == x else (yield self._value(up))
            fm = fx if um == x else (yield self._value(um))
            probes = [(u, f) for u, f in ((up, fp), (um, fm)) if f is not None and u != x]
            if not probes:
                self.stop(StopReason.FAILED)
                return
            best_u, best_f = min(probes, key=lambda p: p[1])
            if not math.isfinite(fx):  # the start failed: restart from the better probe
                self._accept(best_u)
                x, fx = best_u, best_f
                continue
            slope, curvature = _differences(um, fm, x, fx, up, fp)
            if slope == 0.0:
                if best_f < fx:  # a local maximum or a step on a staircase: move on
                    self._accept(best_u)
                    x, fx = best_u, best_f
                    continue
                self.stop(StopReason.CONVERGED_PLATEAU)
                return
            # Newton step when the parabola through the three points opens upward, else a
            # downhill step of the trust radius; either is capped by the radius.
            if curvature is not None and curvature > 0:
                step = max(-radius, min(radius, -slope / curvature))
            else:
                step = -math.copysign(radius, slope)
            while True:
                xn = self._snap(x + step)
                if abs(xn - x) < tol or xn == x:
                    # No improving step of useful size: a local optimum at this resolution.
                    if best_f < fx:
                        self._accept(best_u)
                    self.stop(StopReason.CONVERGED_STEP)
                    return
                known = next((f for u, f in probes if u == xn), None)
                fn = known if known is not None else (yield self._value(xn))
                if fn is not None and fn < fx:
                    if best_f < fn:  # a probe beat the step: stand on the probe
                        xn, fn = best_u, best_f
                    dx = abs(xn - x)
                    self._accept(xn, fx, fn)
                    rel = self._last_rel
                    x, fx = xn, fn
                    if dx < tol:
                        self.stop(StopReason.CONVERGED_STEP)
                        return
                    if rel is not None and rel <= tol:
                        self.stop(StopReason.CONVERGED_IMPROVEMENT)
                        return
                    radius = min(0.5, max(radius, 2.0 * dx))
                    break
                if fn == fx and abs(step) < radius:
                    # Exactly the same loss: a flat stair of a piecewise-constant metric, not
                    # an overshoot. Reach for the full radius before backtracking.
                    step = math.copysign(radius, step)
                    continue
                step *= 0.5
                radius = abs(step)

    # -- SPSA ----------------------------------------------------------------------------------

    def _spsa(self) -> Search:
        tol, c, lr = self.tolerance, self.perturbation, self.learning_rate
        budget_steps = (self.max_iterations or 100) // 2
        stability = max(1.0, 0.1 * budget_steps)  # Spall's A: ~10 % of the iterations
        x = self._x
        yield self._start  # the baseline; SPSA itself only needs the pairs
        a: float | None = None
        k = small = flat = failures = 0
        while True:
            ck = c / (k + 1) ** 0.101
            sign = 1.0 if self.rng.random() < 0.5 else -1.0
            up, um = self._probe(x, sign * ck), self._probe(x, -sign * ck)
            if up == um:
                self.stop(StopReason.SPACE_EXHAUSTED)
                return
            fp = yield self._value(up)
            fm = yield self._value(um)
            k += 1
            if fp is None or fm is None:
                failures += 1
                if failures >= _MAX_FAILURES:
                    self.stop(StopReason.FAILED)
                    return
                continue
            failures = 0
            g = (fp - fm) / (up - um)
            if g == 0.0:
                flat += 1
                if flat >= 3:
                    self.stop(StopReason.CONVERGED_PLATEAU)
                    return
                continue
            flat = 0
            if a is None:  # calibrate: the first step moves learning_rate of the range
                a = lr * (stability + 1.0) ** 0.602 / abs(g)
            ak = a / (k + stability) ** 0.602
            step = max(-2.0 * lr, min(2.0 * lr, -ak * g))
            xn = self._snap(x + step)
            dx = abs(xn - x)
            # SPSA never evaluates the iterate, so only the step size judges convergence.
            prev = self._dx[-1:]
            self._accept(xn)
            self._dx = [*prev, dx]
            x = xn
            small = small + 1 if dx < tol else 0
            if small >= 2:
                # The iterate is the answer, but SPSA never measured it: do so once, so that
                # `best` can be the converged point.
                yield self._value(x)
                self.stop(StopReason.CONVERGED_STEP)
                return


def _differences(
    um: float, fm: Loss, x: float, fx: float, up: float, fp: Loss
) -> tuple[float, float | None]:
    """Slope (central when possible, else one-sided) and curvature if all three are known."""
    if fp is not None and fm is not None and up != um:
        slope = (fp - fm) / (up - um)
        if up != x and um != x:
            curvature = 2.0 * ((fp - fx) / (up - x) - (fx - fm) / (x - um)) / (up - um)
            return slope, curvature
        return slope, None
    if fp is not None and up != x:
        return (fp - fx) / (up - x), None
    assert fm is not None and um != x
    return (fx - fm) / (x - um), None
