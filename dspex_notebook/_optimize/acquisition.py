"""Acquisition functions for minimization, computed on a log scale where it matters.

Plain expected improvement underflows to exactly 0 on the whole candidate grid once the GP is
confident, after which ``argmax`` returns the first candidate (the lower bound) forever.
Ranking by log-EI, computed with an asymptotic expansion in the far tail, keeps the ranking
meaningful however small the improvement gets; the same holds for log-PI.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

__all__ = ["ACQUISITIONS", "acquisition_scores", "log_ei", "log_pi", "lcb_score"]

FloatArray = NDArray[np.float64]
ACQUISITIONS = ("ei", "pi", "ucb")

_erfc = np.frompyfunc(math.erfc, 1, 1)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_TAIL = -10.0  # below this z, use the asymptotic expansions


def _norm_cdf(z: FloatArray) -> FloatArray:
    return 0.5 * np.asarray(_erfc(-z / math.sqrt(2.0)), dtype=float)


def _log_h(z: FloatArray) -> FloatArray:
    """log(z * Phi(z) + phi(z)), accurate for any finite z."""
    out = np.empty_like(z)
    near = z > _TAIL
    zn = z[near]
    h = zn * _norm_cdf(zn) + np.exp(-0.5 * zn * zn - _LOG_SQRT_2PI)
    out[near] = np.log(np.maximum(h, 1e-300))
    t = -z[~near]
    t2 = t * t
    # h(-t) = phi(t) * (1/t^2 - 3/t^4 + 15/t^6 - 105/t^8 + ...), the Mills-ratio expansion.
    series = (1.0 - 3.0 / t2 + 15.0 / (t2 * t2) - 105.0 / (t2 * t2 * t2)) / t2
    out[~near] = -0.5 * t2 - _LOG_SQRT_2PI + np.log(series)
    return out


def _log_cdf(z: FloatArray) -> FloatArray:
    """log(Phi(z)), accurate for any finite z."""
    out = np.empty_like(z)
    near = z > -30.0
    out[near] = np.log(np.maximum(_norm_cdf(z[near]), 1e-300))
    t = -z[~near]
    t2 = t * t
    out[~near] = -0.5 * t2 - _LOG_SQRT_2PI - np.log(t) + np.log(1.0 - 1.0 / t2 + 3.0 / (t2 * t2))
    return out


def log_ei(mean: FloatArray, std: FloatArray, best: float, xi: float) -> FloatArray:
    """Return log expected improvement below ``best - xi`` (minimization)."""
    std = np.maximum(std, 1e-12)
    z = (best - xi - mean) / std
    return np.log(std) + _log_h(z)


def log_pi(mean: FloatArray, std: FloatArray, best: float, xi: float) -> FloatArray:
    """Return log probability of improving below ``best - xi`` (minimization)."""
    std = np.maximum(std, 1e-12)
    return _log_cdf((best - xi - mean) / std)


def lcb_score(mean: FloatArray, std: FloatArray, kappa: float) -> FloatArray:
    """Return the negated lower confidence bound ``-(mean - kappa * std)`` (higher is better)."""
    return -(mean - kappa * std)


def acquisition_scores(
    kind: str, mean: FloatArray, std: FloatArray, *, best: float, xi: float, kappa: float
) -> FloatArray:
    """Return the acquisition score of each candidate (higher is better) for minimization.

    Parameters:
        kind: ``"ei"``, ``"pi"`` or ``"ucb"``.
        mean, std: Posterior mean and standard deviation of the loss at the candidates.
        best: The incumbent loss.
        xi: Required improvement for EI/PI, in loss units.
        kappa: Exploration weight for UCB.

    Raises:
        ValueError: unknown ``kind``.
    """
    if kind == "ei":
        return log_ei(mean, std, best, xi)
    if kind == "pi":
        return log_pi(mean, std, best, xi)
    if kind == "ucb":
        return lcb_score(mean, std, kappa)
    raise ValueError(f"unknown acquisition function {kind!r}; known: {', '.join(ACQUISITIONS)}")
