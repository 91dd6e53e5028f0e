"""A small 1-D Gaussian process (Matern 5/2) with hyperparameters fitted by ML-II on a grid.

Inputs are expected in [0, 1] (the search space's unit scale); outputs are standardized
internally. The length scale and the noise level are chosen together by maximizing the
log marginal likelihood over a log grid, with the signal variance profiled out analytically,
so a fit is one batched Cholesky (numpy) and forward substitutions, no scipy. (A batched
``eigh`` would serve all noise levels per length scale, but LAPACK's threaded eigensolver
slows down by 10-100x on a loaded 2-core machine; Cholesky does not.) A noise level on the grid (up to about
the signal variance) lets the model explain noisy objectives instead of interpolating them,
which is what keeps the acquisition from chasing noise.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["GaussianProcess", "matern52"]

FloatArray = NDArray[np.float64]

#: Length scales tried by the fit, in unit-interval units.
LENGTH_SCALES: FloatArray = np.geomspace(0.01, 3.0, 32)
#: Noise variances tried by the fit, relative to the (profiled) signal variance.
NOISE_RATIOS: FloatArray = np.array([1e-10, 1e-8, 1e-6, 1e-4, 1e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0])
_SQRT5 = math.sqrt(5.0)
# Weak log-normal prior on the length scale (MAP rather than pure ML-II): with a handful of
# points the likelihood is nearly flat and would otherwise pick an extreme.
_LS_PRIOR_MEAN = math.log(0.2)
_LS_PRIOR_SD = 1.5
_JITTER = 1e-10  # added to every diagonal, on top of the noise ratio
# From this many points on, refits search +-_WINDOW grid steps around the previous length
# scale, with a full search whenever the count is a multiple of _FULL_SEARCH_EVERY.
_LOCAL_SEARCH_FROM = 15
_WINDOW = 4
_FULL_SEARCH_EVERY = 10


def matern52(d: FloatArray, length_scale: float | FloatArray) -> FloatArray:
    """Return the Matern 5/2 correlation for distances ``d`` (unit signal variance)."""
    a = _SQRT5 * d / length_scale
    return (1.0 + a + a * a / 3.0) * np.exp(-a)


class GaussianProcess:
    """GP regression on 1-D inputs with a Matern 5/2 kernel and a fitted noise level.

    Parameters:
        length_scales: Candidate length scales (unit-interval units).
        noise_ratios: Candidate noise variances relative to the signal variance; pass a
            single tiny value (e.g. ``(1e-6,)``) for a deterministic objective.

    Attributes (after :meth:`fit`):
        length_scale, noise_ratio, signal_variance: the selected hyperparameters
            (``signal_variance`` in standardized output units).
        log_marginal_likelihood: the value at the selected hyperparameters.
    """

    def __init__(
        self,
        length_scales: ArrayLike = LENGTH_SCALES,
        noise_ratios: ArrayLike = NOISE_RATIOS,
    ) -> None:
        self.length_scales = np.asarray(length_scales, dtype=float)
        self.noise_ratios = np.asarray(noise_ratios, dtype=float)
        self.length_scale = 0.2
        self.noise_ratio = float(self.noise_ratios.min())
        self.signal_variance = 1.0
        self.log_marginal_likelihood = float("nan")
        self._x: FloatArray = np.empty(0)
        self._y_mean = 0.0
        self._y_std = 1.0
        self._alpha: FloatArray = np.empty(0)
        self._linv: FloatArray = np.empty((0, 0))  # inverse of the Cholesky factor
        self._ls_index: int | None = None  # grid index of the last fitted length scale

    def fit(self, x: ArrayLike, y: ArrayLike) -> GaussianProcess:
        """Fit hyperparameters and the posterior to observations ``y`` at inputs ``x``.

        Parameters:
            x: Inputs, shape ``(n,)``, ideally in [0, 1].
            y: Finite outputs, shape ``(n,)``, ``n >= 1``.

        Returns:
            ``self``.

        Raises:
            ValueError: empty or mismatched inputs.
        """
        xs = np.asarray(x, dtype=float).ravel()
        ys = np.asarray(y, dtype=float).ravel()
        if xs.size == 0 or xs.size != ys.size:
            raise ValueError(f"need matching non-empty x and y, got {xs.size} and {ys.size}")
        self._x = xs
        self._y_mean = float(ys.mean())
        std = float(ys.std())
        # A constant objective (or a single point) has no scale; keep unit scale, not 1/0.
        self._y_std = std if std > 1e-12 * max(1.0, abs(self._y_mean)) else 1.0
        z = (ys - self._y_mean) / self._y_std
        dist = np.abs(xs[:, None] - xs[None, :])
        if xs.size < 3:
            # Too few points to learn anything; use a moderate prior-like choice.
            self._select(dist, z, 0.2, float(self.noise_ratios.min()))
            return self
        best = self._search(dist, z)
        self._select(dist, z, *best)
        return self

    def _search(self, dist: FloatArray, z: FloatArray) -> tuple[float, float]:
        n = z.size
        ls, nr = self.length_scales, self.noise_ratios
        i0 = self._ls_index
        if i0 is not None and n >= _LOCAL_SEARCH_FROM and n % _FULL_SEARCH_EVERY:
            # Refits during a run move the optimum little: search a window around the last
            # length scale (the factorizations are the whole cost of a fit).
            window = slice(max(0, i0 - _WINDOW), min(ls.size, i0 + _WINDOW + 1))
            offset, ls = window.start, ls[window]
        else:
            offset = 0
        k = matern52(dist[None, None], ls[:, None, None, None]) + (nr + _JITTER)[
            None, :, None, None
        ] * np.eye(n)
        logdet, quad = _batched_terms(k.reshape(-1, n, n), z)
        logdet, quad = logdet.reshape(ls.size, nr.size), quad.reshape(ls.size, nr.size)
        # Signal variance profiled out: s2 = quad / n maximizes the likelihood in closed form.
        lml = -0.5 * n * np.log(quad / n) - 0.5 * logdet - 0.5 * n * (1.0 + math.log(2 * math.pi))
        prior = -0.5 * ((np.log(ls) - _LS_PRIOR_MEAN) / _LS_PRIOR_SD) ** 2
        score = np.where(np.isfinite(lml), lml + prior[:, None], -np.inf)
        i, j = np.unravel_index(int(np.argmax(score)), score.shape)
        self.log_marginal_likelihood = float(lml[i, j])
        self._ls_index = offset + int(i)
        return float(ls[i]), float(nr[j])

    def _select(self, dist: FloatArray, z: FloatArray, length: float, ratio: float) -> None:
        n = z.size
        k = matern52(dist, length) + (ratio + _JITTER) * np.eye(n)
        jitter = 0.0
        while True:
            try:
                chol = np.linalg.cholesky(k + jitter * np.eye(n))
                break
            except np.linalg.LinAlgError:  # pragma: no cover - retried with more jitter
                jitter = max(1e-10, jitter * 100.0)
        linv = _solve_lower(chol, np.eye(n))
        v = linv @ z
        self.length_scale, self.noise_ratio = length, ratio
        self.signal_variance = max(float(v @ v) / n, 1e-12) if n >= 3 else 1.0
        self._linv = linv
        self._alpha = linv.T @ v

    def predict(self, x: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Return the posterior mean and standard deviation of the latent function at ``x``.

        Both are in the units of the ``y`` passed to :meth:`fit`; the standard deviation
        excludes the observation noise.
        """
        xs = np.asarray(x, dtype=float).ravel()
        ks = matern52(np.abs(xs[:, None] - self._x[None, :]), self.length_scale)
        mean = ks @ self._alpha
        w = ks @ self._linv.T
        var = self.signal_variance * np.maximum(1.0 - np.einsum("ij,ij->i", w, w), 1e-12)
        return self._y_mean + self._y_std * mean, self._y_std * np.sqrt(var)

    @property
    def noise_std(self) -> float:
        """The fitted observation noise standard deviation, in output units."""
        return self._y_std * math.sqrt(self.signal_variance * self.noise_ratio)


def _solve_lower(low: NDArray[np.floating], b: NDArray[np.floating]) -> FloatArray:
    """Solve ``low @ v = b`` for lower-triangular ``low`` (``(..., n, n)``, ``b``: ``(..., n)``
    or ``(n, m)``) by forward substitution, vectorized over the batch."""
    v = np.empty(np.broadcast_shapes(low.shape[:-1], b.shape) if b.ndim == low.ndim - 1
                 else b.shape)
    if b.ndim == low.ndim - 1:  # batched vectors
        for i in range(low.shape[-1]):
            acc = np.einsum("...j,...j->...", low[..., i, :i], v[..., :i])
            v[..., i] = (b[..., i] - acc) / low[..., i, i]
        return v
    for i in range(low.shape[-1]):  # one matrix, several right-hand sides
        v[i] = (b[i] - low[i, :i] @ v[:i]) / low[i, i]
    return v


def _batched_terms(k: FloatArray, z: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Return ``log|K|`` and ``z^T K^-1 z`` for a stack of matrices (``inf`` where not PD)."""
    try:
        chol = np.linalg.cholesky(k)
    except np.linalg.LinAlgError:
        # One matrix in the stack is numerically singular (near-duplicate inputs with the
        # smallest noise levels): factor one at a time and rule the failures out.
        logdet = np.full(k.shape[0], np.inf)
        quad = np.full(k.shape[0], np.inf)
        for b in range(k.shape[0]):
            try:
                one = np.linalg.cholesky(k[b])
            except np.linalg.LinAlgError:
                continue
            v = _solve_lower(one, np.broadcast_to(z, z.shape))
            logdet[b] = 2.0 * np.log(np.diagonal(one)).sum()
            quad[b] = max(float(v @ v), 1e-300)
        return logdet, quad
    v = _solve_lower(chol, np.broadcast_to(z, (k.shape[0], z.size)))
    logdet = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
    return logdet, np.maximum(np.einsum("bi,bi->b", v, v), 1e-300)
