"""A small 1-D Gaussian process (Matern 5/2) with hyperparameters fitted by ML-II on a grid.

Inputs are expected in [0, 1] (the search space's unit scale); outputs are standardized
internally. The length scale and the noise level are chosen together by maximizing the log
marginal likelihood over a log grid (32 length scales x 10 noise levels), with the signal
variance profiled out analytically and a weak log-normal prior on the length scale. A noise
level on the grid (up to about the signal variance) lets the model explain noisy objectives
instead of interpolating them, which is what keeps the acquisition from chasing noise.

Cost. Scoring a grid point from scratch is a Cholesky factorization, O(n^3). During a run the
data grows by one point per fit, so the model keeps the inverse Cholesky factor ``W = L^-1`` of
every grid point it scores and appends one row per new observation, O(n^2): ``l = W k``, the
new pivot ``d^2 = k(x, x) + noise - l'l`` (what a Cholesky computes for its last row) and the
row ``[-l'W / d, 1 / d]``. The kept factors, and so the choice, are those of a fresh
factorization up to rounding. Up to ``_KEEP_ALL_UP_TO`` observations every grid point is kept,
so every fit is an exact search of the whole grid. Beyond, the fit keeps the length scales
within ``_WINDOW`` grid steps of its last choice (every noise level), follows the maximum when
it reaches the window's edge, and also scores one coarse length scale outside the window from
scratch (a different one each fit), moving there when it wins; a better mode elsewhere on the
grid is found within a few fits (on test data the choice stayed within 2 log-likelihood units
of the grid's best).

Only batched Cholesky factorizations and matrix products are used, no ``eigh``, ``inv`` or
``solve``: LAPACK's threaded eigensolver and LU slow down by 10-100x on a loaded 2-core
machine; the Cholesky does not. Matrix-vector products use einsum and large products are
split, so that no BLAS call runs multi-threaded (see ``_matvec``).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["GaussianProcess", "matern52"]

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

#: Length scales tried by the fit, in unit-interval units.
LENGTH_SCALES: FloatArray = np.geomspace(0.01, 3.0, 32)
#: Noise variances tried by the fit, relative to the (profiled) signal variance.
NOISE_RATIOS: FloatArray = np.array([1e-10, 1e-8, 1e-6, 1e-4, 1e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0])
_SQRT5 = math.sqrt(5.0)
_LML_CONST = 1.0 + math.log(2.0 * math.pi)
# Weak log-normal prior on the length scale (MAP rather than pure ML-II): with a handful of
# points the likelihood is nearly flat and would otherwise pick an extreme.
_LS_PRIOR_MEAN = math.log(0.2)
_LS_PRIOR_SD = 1.5
_JITTER = 1e-10  # added to every diagonal, on top of the noise ratio
# Up to this many observations the factors of the whole grid are kept (about 4 MB at 40).
_KEEP_ALL_UP_TO = 40
# Beyond: the length scales within this many grid steps of the last choice are kept ...
_WINDOW = 2
# ... and one length scale out of every _PROBE_STEP-th is probed per fit.
_PROBE_STEP = 3
# Factors are not kept when they would take more memory than this (windows beyond about
# 280 observations); each fit then factors its window from scratch.
_MAX_KEPT_BYTES = 32 * 2**20


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

    Refitting with the previous inputs plus new ones at the end (what an optimization run
    does) updates the kept factorizations instead of starting over; any other data starts
    from scratch. Either way the same calls give the same fits.
    """

    def __init__(
        self,
        length_scales: ArrayLike = LENGTH_SCALES,
        noise_ratios: ArrayLike = NOISE_RATIOS,
    ) -> None:
        self.length_scales = np.asarray(length_scales, dtype=float).ravel()
        self.noise_ratios = np.asarray(noise_ratios, dtype=float).ravel()
        if self.length_scales.size == 0 or self.noise_ratios.size == 0:
            raise ValueError("need at least one length scale and one noise ratio")
        if not (np.all(self.length_scales > 0) and np.all(self.noise_ratios >= 0)):
            raise ValueError("length scales must be positive and noise ratios non-negative")
        self.length_scale = 0.2
        self.noise_ratio = float(self.noise_ratios.min())
        self.signal_variance = 1.0
        self.log_marginal_likelihood = float("nan")
        # Exact lower bound of every Cholesky pivot (the smallest eigenvalue of K is at least
        # ratio + jitter); a pivot below half of it is rounding noise, and the grid point is
        # ruled out instead of trusted.
        self._floor = 0.5 * (self.noise_ratios + _JITTER)
        self._prior = -0.5 * ((np.log(self.length_scales) - _LS_PRIOR_MEAN) / _LS_PRIOR_SD) ** 2
        self._x: FloatArray = np.empty(0)
        self._y: FloatArray = np.empty(0)
        self._y_mean = 0.0
        self._y_std = 1.0
        self._alpha: FloatArray = np.empty(0)
        self._linv: FloatArray = np.empty((0, 0))  # inverse Cholesky factor, selected point
        self._kept: _Factors | None = None
        self._choice: tuple[int, int] | None = None  # grid indices of the last selection
        self._probes = 0  # probes so far (picks the next probed length scale)

    # -- fitting ------------------------------------------------------------------------------

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
        xs = np.array(x, dtype=float).ravel()
        ys = np.array(y, dtype=float).ravel()
        if xs.size == 0 or xs.size != ys.size:
            raise ValueError(f"need matching non-empty x and y, got {xs.size} and {ys.size}")
        if np.array_equal(xs, self._x) and np.array_equal(ys, self._y):
            return self  # nothing new (e.g. recommend() right after a suggestion)
        n, n_old = xs.size, self._x.size
        warm = 3 <= n_old <= n and np.array_equal(xs[:n_old], self._x)
        self._x, self._y = xs, ys
        self._y_mean = float(ys.mean())
        std = float(ys.std())
        # A constant objective (or a single point) has no scale; keep unit scale, not 1/0.
        self._y_std = std if std > 1e-12 * max(1.0, abs(self._y_mean)) else 1.0
        z = (ys - self._y_mean) / self._y_std
        if not warm:
            self._kept, self._choice = None, None
        if n < 3:
            # Too few points to learn anything; use a moderate prior-like choice.
            self._posterior_from_scratch(z, 0.2, float(self.noise_ratios.min()))
            return self
        kept = self._search(z)
        self._kept = kept if kept is not None and kept.nbytes <= _MAX_KEPT_BYTES else None
        return self

    def _search(self, z: FloatArray) -> _Factors | None:
        xs, n = self._x, z.size
        n_ls, m = self.length_scales.size, self.noise_ratios.size
        if n <= _KEEP_ALL_UP_TO or n_ls <= 2 * _WINDOW + 1:
            want, probe = list(range(n_ls)), False
        elif self._choice is not None:
            # Keep the window while the last choice is inside it (recentering on every small
            # move would refactor two columns per fit); the search below follows the edge.
            want, probe = self._kept_window(), True
        else:  # a cold start: scoring the coarse grid replaces the probe
            want, probe = self._window(self._coarse_best(z)), False
        kept = self._kept
        if kept is not None:
            kept.keep(want)  # before the update: no rows for columns about to be dropped
            kept.update(xs, z)
        else:
            kept = _Factors(self, want, xs, z)
        for _ in range(n_ls + 2):  # bounded: each pass moves the window or ends
            kept.keep(want)
            kept.add([c for c in want if c not in kept.columns], xs, z)
            score, lml = kept.scores()
            k = int(np.argmax(score))
            if not np.isfinite(score[k]):
                break
            col = kept.columns[k // m]
            if (col == want[0] > 0) or (col == want[-1] < n_ls - 1):
                want = self._window(col)  # the maximum is at the window's edge: follow it
                continue
            if probe:
                probe = False
                others = [c for c in range(0, n_ls, _PROBE_STEP) if c not in want]
                if others:
                    p = others[self._probes % len(others)]
                    self._probes += 1
                    if np.max(self._scores_from_scratch(z, [p])[0]) > score[k]:
                        want = self._window(p)
                        continue
            break
        if not np.isfinite(score[k]):
            # Nothing factorizes (pathological inputs): a stable fallback with extra jitter.
            i = int(np.argmin(np.abs(np.log(self.length_scales) - _LS_PRIOR_MEAN)))
            self._posterior_from_scratch(
                z, float(self.length_scales[i]), float(self.noise_ratios.max())
            )
            self._choice = None
            return kept
        self.log_marginal_likelihood = float(lml[k])
        self._select(kept, k, z)
        return kept

    def _kept_window(self) -> list[int]:
        assert self._choice is not None
        col = self._choice[0]
        if self._kept is not None:
            cols = sorted(self._kept.columns)
            whole = len(cols) == 2 * _WINDOW + 1 and cols[-1] - cols[0] == 2 * _WINDOW
            if whole and cols[0] <= col <= cols[-1]:
                return cols
        return self._window(col)

    def _window(self, center: int) -> list[int]:
        lo = max(0, min(center - _WINDOW, self.length_scales.size - 2 * _WINDOW - 1))
        return list(range(lo, min(self.length_scales.size, lo + 2 * _WINDOW + 1)))

    def _coarse_best(self, z: FloatArray) -> int:
        """Score every ``_PROBE_STEP``-th length scale from scratch; return the best one."""
        cols = list(range(0, self.length_scales.size, _PROBE_STEP))
        score, _ = self._scores_from_scratch(z, cols)
        return cols[int(np.argmax(score)) // self.noise_ratios.size]

    def _scores_from_scratch(self, z: FloatArray, cols: list[int]) -> tuple[FloatArray, FloatArray]:
        """Return ``(score, lml)`` of grid columns ``cols`` without keeping factors.

        One Cholesky per grid point gives both terms: for ``A = [[K + b zz', sqrt(b) z],
        [sqrt(b) z', 1]]`` (positive definite for any ``b > 0``), ``det A = det K`` and the
        last pivot is ``1 / (1 + b z'K^-1 z)``. With ``b = 1/n``, ``b z'K^-1 z`` lies between
        about ``1/(2n)`` and ``1/(ratio + jitter)``, so nothing cancels badly.
        """
        xs, n = self._x, z.size
        m = self.noise_ratios.size
        beta = 1.0 / n
        kern = matern52(np.abs(xs[:, None] - xs[None, :])[None], self.length_scales[cols][:, None, None])
        a = np.empty((len(cols), m, n + 1, n + 1))
        a[..., :n, :n] = (kern + beta * np.outer(z, z))[:, None]
        diag = np.arange(n)
        a[..., diag, diag] += (self.noise_ratios + _JITTER)[None, :, None]
        a[..., :n, n] = math.sqrt(beta) * z
        a[..., n, :n] = math.sqrt(beta) * z
        a[..., n, n] = 1.0
        floor = np.tile(self._floor, len(cols))
        low, ok = _cholesky(a.reshape(-1, n + 1, n + 1), floor, last_unchecked=True)
        d = np.diagonal(low, axis1=1, axis2=2)
        logdet = 2.0 * np.log(d).sum(axis=1)
        quad = (1.0 / (d[:, n] * d[:, n]) - 1.0) / beta
        lml = _lml(quad, logdet, n)
        prior = np.repeat(self._prior[cols], m)
        return np.where(ok & np.isfinite(lml), lml + prior, -np.inf), lml

    # -- the posterior at the selected hyperparameters ------------------------------------------

    def _select(self, kept: _Factors, k: int, z: FloatArray) -> None:
        n, m = z.size, self.noise_ratios.size
        col, j = kept.columns[k // m], k % m
        self._linv = kept.inv[k, :n, :n].copy()
        self._choice = (col, j)
        v = kept.v[k]
        self.length_scale = float(self.length_scales[col])
        self.noise_ratio = float(self.noise_ratios[j])
        self.signal_variance = max(float(v @ v) / n, 1e-12)
        self._alpha = _vecmat(v, self._linv)

    def _posterior_from_scratch(self, z: FloatArray, length: float, ratio: float) -> None:
        n = z.size
        k = matern52(np.abs(self._x[:, None] - self._x[None, :]), length) + (ratio + _JITTER) * np.eye(n)
        jitter = 0.0
        while True:
            try:
                chol = np.asarray(np.linalg.cholesky(k + jitter * np.eye(n)), dtype=np.float64)
                break
            except np.linalg.LinAlgError:  # pragma: no cover - retried with more jitter
                jitter = max(1e-10, jitter * 100.0)
        self._linv = _triangular_inverse(chol)
        v = _matvec(self._linv, z)
        self.length_scale, self.noise_ratio = length, ratio
        self.signal_variance = max(float(v @ v) / n, 1e-12) if n >= 3 else 1.0
        self._alpha = _vecmat(v, self._linv)

    def predict(self, x: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Return the posterior mean and standard deviation of the latent function at ``x``.

        Both are in the units of the ``y`` passed to :meth:`fit`; the standard deviation
        excludes the observation noise.
        """
        xs = np.asarray(x, dtype=float).ravel()
        ks = matern52(np.abs(xs[:, None] - self._x[None, :]), self.length_scale)
        mean = _matvec(ks, self._alpha)
        w = _rows_times_transpose(ks, self._linv)
        var = self.signal_variance * np.maximum(1.0 - np.einsum("ij,ij->i", w, w), 1e-12)
        return self._y_mean + self._y_std * mean, self._y_std * np.sqrt(var)

    @property
    def noise_std(self) -> float:
        """The fitted observation noise standard deviation, in output units."""
        return self._y_std * math.sqrt(self.signal_variance * self.noise_ratio)


class _Factors:
    """Inverse Cholesky factors ``W = L^-1`` of ``K = C(length scale) + (ratio + jitter) I``
    for whole grid columns (one length scale, every noise ratio), grown one row per point.

    Combination ``k`` is column ``columns[k // m]`` and noise ratio ``k % m``. ``inv[k]``
    holds ``W`` in its leading ``rows x rows`` block (spare capacity after it), ``logdet[k]``
    is ``log |K|``, ``v[k]`` is ``W z`` for the current standardized outputs and ``ok[k]``
    says whether the factorization is trustworthy. A grid point ruled out once stays ruled
    out (a principal submatrix of a positive definite matrix is positive definite, so more
    data cannot make it succeed); its ``W`` is kept at the identity so arithmetic on it stays
    finite.

    Keeping ``W`` rather than ``L`` turns every update into matrix-vector products (no
    Python loop over rows); on this problem it is as accurate as forward substitution.
    """

    def __init__(self, gp: GaussianProcess, columns: list[int], x: FloatArray, z: FloatArray) -> None:
        self.gp = gp
        self.m = gp.noise_ratios.size
        self.columns: list[int] = []
        self.rows = x.size
        self.inv: FloatArray = np.empty((0, x.size, x.size))
        self.logdet: FloatArray = np.empty(0)
        self.ok: BoolArray = np.empty(0, dtype=bool)
        self.v: FloatArray = np.empty((0, x.size))
        self.add(columns, x, z)

    @property
    def nbytes(self) -> int:
        return int(self.inv.nbytes)

    def _per_combination(self, per_column: FloatArray) -> FloatArray:
        """Repeat a per-column array (first axis) for every noise ratio of its column."""
        return np.repeat(per_column, self.m, axis=0)

    def _diagonal(self, columns: list[int]) -> FloatArray:
        return np.tile(self.gp.noise_ratios + _JITTER, len(columns))

    def add(self, columns: list[int], x: FloatArray, z: FloatArray) -> None:
        """Factor the grid columns ``columns`` from scratch (at the current ``rows``)."""
        if not columns:
            return
        gp, n = self.gp, self.rows
        kern = matern52(np.abs(x[:, None] - x[None, :])[None], gp.length_scales[columns][:, None, None])
        k = self._per_combination(kern)
        diag = np.arange(n)
        k[:, diag, diag] += self._diagonal(columns)[:, None]
        low, ok = _cholesky(k, np.tile(gp._floor, len(columns)))
        cap = self.inv.shape[1]
        new = np.zeros((low.shape[0], cap, cap))
        new[:, :n, :n] = _triangular_inverse(low)
        self.inv = np.concatenate([self.inv, new])
        logdet = 2.0 * np.log(np.diagonal(low, axis1=1, axis2=2)).sum(axis=1)
        self.logdet = np.concatenate([self.logdet, logdet])
        self.ok = np.concatenate([self.ok, ok])
        self.v = np.concatenate([self.v, _matvec(new[:, :n, :n], z)])
        self.columns = self.columns + list(columns)

    def keep(self, columns: list[int]) -> None:
        """Forget every column not in ``columns``."""
        if all(c in columns for c in self.columns):
            return
        pos = [i for i, c in enumerate(self.columns) if c in columns]
        idx = (np.asarray(pos, dtype=np.int64)[:, None] * self.m + np.arange(self.m)).ravel()
        self.inv, self.logdet, self.ok, self.v = (
            self.inv[idx], self.logdet[idx], self.ok[idx], self.v[idx]
        )
        self.columns = [self.columns[i] for i in pos]

    def update(self, x: FloatArray, z: FloatArray) -> None:
        """Append a row per input beyond ``rows``; recompute ``v`` for outputs ``z``.

        For a new point with kernel column ``k`` against the old ones: ``l = W k``,
        ``d^2 = k(x, x) + ratio + jitter - l'l`` (the new Cholesky pivot), and the new row
        of ``W`` is ``[-l'W / d, 1 / d]``; then ``v = [W_old z_old, (z_new - l'W_old z_old) / d]``.
        """
        gp, n0, n = self.gp, self.rows, x.size
        if n > self.inv.shape[1]:  # grow the capacity a few rows at a time
            grown = np.zeros((self.inv.shape[0], n + 32, n + 32))
            grown[:, :n0, :n0] = self.inv[:, :n0, :n0]
            self.inv = grown
        if n == n0:
            self.v = _matvec(self.inv[:, :n, :n], z)
            return
        lengths = gp.length_scales[self.columns][:, None]
        diag = 1.0 + self._diagonal(self.columns)
        floor = np.tile(gp._floor, len(self.columns))
        for p in range(n0, n):
            w = self.inv[:, :p, :p]
            k = self._per_combination(matern52(np.abs(x[None, :p] - x[p]), lengths))
            lk = _matvec(w, k)  # l = W k
            d2 = diag - np.einsum("ki,ki->k", lk, lk)
            with np.errstate(invalid="ignore"):
                ok = d2 >= floor
            d = np.sqrt(np.where(ok, d2, 1.0))
            self.inv[:, p, :p] = _vecmat(lk, w) / -d[:, None]
            self.inv[:, p, p] = 1.0 / d
            lost = self.ok & ~ok
            if lost.any():
                self.inv[lost, : p + 1, : p + 1] = np.eye(p + 1)
            self.ok &= ok
            self.inv[~self.ok, p, :p] = 0.0
            self.logdet = self.logdet + 2.0 * np.log(d)
            if p == n - 1:  # v = W z: the old rows' part times z, plus the new row
                v1 = _matvec(w, z[:p])
                v2 = (z[p] - np.einsum("ki,ki->k", lk, v1)) / d
        self.v = np.concatenate([v1, v2[:, None]], axis=1)
        self.v[~self.ok] = z  # their W is the identity
        self.rows = n

    def scores(self) -> tuple[FloatArray, FloatArray]:
        """Return ``(score, lml)`` per kept combination (``-inf`` score where ruled out)."""
        lml = _lml(np.einsum("ki,ki->k", self.v, self.v), self.logdet, self.rows)
        prior = self._per_combination(self.gp._prior[self.columns])
        return np.where(self.ok & np.isfinite(lml), lml + prior, -np.inf), lml


def _lml(quad: FloatArray, logdet: FloatArray, n: int) -> FloatArray:
    """Log marginal likelihood with the signal variance profiled out (``s2 = quad / n``)."""
    return -0.5 * n * np.log(np.maximum(quad, 1e-300) / n) - 0.5 * logdet - 0.5 * n * _LML_CONST


def _cholesky(
    k: FloatArray, floor: FloatArray, *, last_unchecked: bool = False
) -> tuple[FloatArray, BoolArray]:
    """Batched Cholesky of ``k`` (``(b, p, p)``) and which factors are trustworthy.

    A factor is ruled out when LAPACK refuses it or a pivot (squared diagonal entry) is below
    ``floor`` (per matrix); ruled-out factors are returned as the identity so that later
    arithmetic on them stays finite. ``last_unchecked`` exempts the last pivot.
    """
    b, p = k.shape[0], k.shape[-1]
    if p == 1:  # one new point: the pivot itself
        d2 = k[:, 0, 0]
        with np.errstate(invalid="ignore"):
            ok = d2 >= floor
        return np.sqrt(np.where(ok, d2, 1.0))[:, None, None], ok
    try:
        low = np.asarray(np.linalg.cholesky(k), dtype=np.float64)
        ok = np.ones(b, dtype=bool)
    except np.linalg.LinAlgError:
        # One matrix in the stack is numerically singular (near-duplicate inputs with the
        # smallest noise levels): factor one at a time and rule the failures out.
        low = np.empty_like(k)
        ok = np.ones(b, dtype=bool)
        for i in range(b):
            try:
                low[i] = np.linalg.cholesky(k[i])
            except np.linalg.LinAlgError:
                ok[i] = False
    checked = p - 1 if last_unchecked else p
    diag = np.diagonal(low, axis1=1, axis2=2)[:, :checked]
    with np.errstate(invalid="ignore"):
        ok &= np.all(diag * diag >= floor[:, None], axis=1)
    if not ok.all():
        low[~ok] = np.eye(p)
    return low, ok


def _triangular_inverse(low: FloatArray) -> FloatArray:
    """Return the inverse of lower-triangular ``low`` (``(..., n, n)``), one row at a time
    for the whole batch: row ``i`` depends only on the rows above it,
    ``W[i, :i] = -L[i, :i] W[:i, :i] / L[i, i]`` and ``W[i, i] = 1 / L[i, i]``. (A blocked
    version with batched products of the diagonal blocks measured slower: numpy's stacked
    products of small matrices cost more per matrix than this loop per row.)"""
    n = low.shape[-1]
    inv = np.zeros(low.shape)
    d = 1.0 / np.diagonal(low, axis1=-2, axis2=-1)
    for i in range(n):
        inv[..., i, :i] = _vecmat(low[..., i, :i], inv[..., :i, :i]) * -d[..., i, None]
        inv[..., i, i] = d[..., i]
    return inv


# Matrix-vector products go through einsum, not BLAS: OpenBLAS runs a gemv with more than
# about 9000 elements (a 100 x 100 factor) and a gemm beyond 262144 multiply-adds on several
# threads, and on a loaded 2-core machine each such call waits for the second core; measured
# inside a run with 100 observations that made a suggestion 4-6x slower (30 ms instead of 6).


def _matvec(a: FloatArray, x: FloatArray) -> FloatArray:
    """``a @ x`` over the last axis of ``a`` (``a``: ``(..., m, n)``, ``x``: ``(..., n)``)."""
    return np.einsum("...ij,...j->...i", a, x)


def _vecmat(x: FloatArray, a: FloatArray) -> FloatArray:
    """``x @ a`` (``x``: ``(..., m)``, ``a``: ``(..., m, n)``)."""
    return np.einsum("...i,...ij->...j", x, a)


_GEMM_SINGLE_THREAD = 65536 * 4  # OpenBLAS: products up to this many multiply-adds use one thread


def _rows_times_transpose(a: FloatArray, b: FloatArray) -> FloatArray:
    """``a @ b.T`` in blocks of rows small enough for a single-threaded gemm each."""
    m, n = a.shape
    rows = max(1, _GEMM_SINGLE_THREAD // max(1, n * b.shape[0]))
    if m <= rows:
        return a @ b.T
    full = (m // rows) * rows
    out = np.empty((m, b.shape[0]))
    out[:full] = (a[:full].reshape(-1, rows, n) @ b.T).reshape(full, b.shape[0])
    if full < m:
        out[full:] = a[full:] @ b.T
    return out
