"""Benchmark the built-in ``bayesian`` optimizer against random search, a numpy reference GP
and bayes_opt 3.4.

Run from the repository root::

    .venv/bin/python benchmarks/optimizers.py            # 20 seeds, 7 latency rounds
    .venv/bin/python benchmarks/optimizers.py --quick    # 5 seeds, 3 latency rounds
    .venv/bin/python benchmarks/optimizers.py --only latency --output /tmp/opt.md

It prints markdown tables (copied into ``docs/performance.md``):

* quality per function and method over the same seeds: how many runs reached the target
  (best-so-far within 0.01 of the optimum; true-accuracy regret <= 0.05 for the noisy
  function), the median and worst number of evaluations to get there, and the median regret
  after 15 evaluations and at the end of the budget;
* suggestion latency with 10, 30 and 100 observations, p50 and p99 per round and the median
  of those across rounds: ours inside a run (its own suggestions, what a run costs) and cold
  (observations told from outside: the first fit starts from scratch), the numpy reference GP
  and bayes_opt (both refit from scratch every time), on a 1-D space and, for the two
  baselines, a 3-D one; the methods alternate within each round so they see the same load.

``bayes_opt`` (the ``bayesian-optimization`` package) is a dev-only reference imported only
here. It is driven through its ask/tell API with the same settings as ours: 5 random initial
points, expected improvement with ``xi=0.01`` (its own ``xi`` convention is the same:
objective units, in the improving direction). On the noisy function it gets a white-noise
kernel, since without one it does worse than random search.

The numpy reference GP (:class:`ReferenceGP`) is the prototype recipe of the design notes
(OPTIMIZATION-NOTES section 1.3, which gives the recipe and its timings, not the code): Matern
5/2 on inputs in the unit cube, standardized outputs, length scale (0.01-3) and noise (1e-6-0.1)
fitted by maximizing the marginal likelihood over a log grid of 30 x 4 with one batched
Cholesky, EI with ``xi`` maximized over 2000 candidates (a grid in 1-D, random in 3-D) plus 200
random points. It refits from scratch for every suggestion.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from _common import Stats, fmt_time, markdown_table

import dspex_notebook
from dspex_notebook._optimize import make_optimizer, space_for


@dataclass(frozen=True)
class Problem:
    """A 1-D minimization benchmark (``noisy`` ones return a sampled objective)."""

    name: str
    low: float
    high: float
    f_min: float
    budget: int
    true_loss: Callable[[float], float]
    sample: Callable[[float, np.random.Generator], float] | None = None  # noisy observation
    target: float = 0.01


def forrester(x: float) -> float:
    return (6 * x - 2) ** 2 * math.sin(12 * x - 4)


def gramacy_lee(x: float) -> float:
    return math.sin(10 * math.pi * x) / (2 * x) + (x - 1) ** 4


def accuracy(x: float) -> float:
    """True accuracy of a fake LLM pipeline vs temperature: a narrow peak and a decoy."""
    return 0.45 + 0.4 * math.exp(-(((x - 0.4) / 0.06) ** 2)) + 0.25 * math.exp(
        -(((x - 0.8) / 0.12) ** 2)
    )


_ACC_MAX = max(accuracy(x) for x in np.linspace(0.0, 1.0, 100_001))

PROBLEMS = [
    Problem("Forrester [0,1]", 0.0, 1.0, -6.020740, 30, forrester),
    Problem("Gramacy-Lee [0.5,2.5]", 0.5, 2.5, -0.869011, 30, gramacy_lee),
    Problem(
        "noisy accuracy (binomial, 50 items) [0,1]", 0.0, 1.0, -_ACC_MAX, 30,
        lambda x: -accuracy(x),
        sample=lambda x, rng: -rng.binomial(50, accuracy(x)) / 50,
        target=0.05,
    ),
]


# -- methods: each returns the list of proposed x for one seeded run --------------------------


def run_ours(p: Problem, seed: int, rng: np.random.Generator) -> list[float]:
    opt = make_optimizer(
        "bayesian", space_for("float", {"min": p.low, "max": p.high}, "x"),
        {"n_initial_points": 5, "xi": 0.01}, direction="minimize", seed=seed,
        max_iterations=p.budget,
    )
    xs = []
    while (x := opt.suggest()) is not None:
        xs.append(x)
        opt.observe(x, observe(p, x, rng))
    return xs


def run_random(p: Problem, seed: int, rng: np.random.Generator) -> list[float]:
    r = np.random.default_rng(seed)
    return [float(p.low + (p.high - p.low) * u) for u in r.random(p.budget)]


def run_bayes_opt(p: Problem, seed: int, rng: np.random.Generator) -> list[float]:
    from bayes_opt import BayesianOptimization, acquisition
    from sklearn.gaussian_process.kernels import Matern, WhiteKernel  # type: ignore[import-untyped]

    opt = BayesianOptimization(
        f=None, pbounds={"x": (p.low, p.high)},
        acquisition_function=acquisition.ExpectedImprovement(xi=0.01),
        random_state=seed, verbose=0, allow_duplicate_points=True,
    )
    if p.sample is not None:
        opt.set_gp_params(kernel=Matern(nu=2.5) + WhiteKernel(1e-3))
    xs: list[float] = []
    queue = opt.random_sample(5)  # bayes_opt has no n_initial_points in ask/tell mode
    # It prints "Data point ... is not unique" for repeated points even with verbose=0.
    with contextlib.redirect_stdout(io.StringIO()):
        for i in range(p.budget):
            params = queue[i] if i < len(queue) else opt.suggest()
            x = float(params["x"])
            xs.append(x)
            opt.register(params={"x": x}, target=-observe(p, x, rng))  # it maximizes
    return xs


class ReferenceGP:
    """The design notes' numpy GP-EI prototype recipe (see the module docstring), minimizing.

    ``suggest(u, y)`` refits from scratch: ``u`` is ``(n, d)`` in the unit cube.
    """

    LENGTHS = np.geomspace(0.01, 3.0, 30)
    NOISES = np.geomspace(1e-6, 0.1, 4)

    def __init__(self, dim: int, seed: int, xi: float = 0.01) -> None:
        self.dim, self.xi, self.rng = dim, xi, np.random.default_rng(seed)

    @staticmethod
    def kernel(d: np.ndarray, length: float | np.ndarray) -> np.ndarray:
        a = math.sqrt(5.0) * d / length
        return (1.0 + a + a * a / 3.0) * np.exp(-a)

    def suggest(self, u: np.ndarray, y: np.ndarray) -> np.ndarray:
        from scipy.linalg import cho_solve, solve_triangular
        from scipy.special import ndtr

        n = len(y)
        mu, sd = y.mean(), y.std() or 1.0
        z = (y - mu) / sd
        dist = np.sqrt(((u[:, None, :] - u[None, :, :]) ** 2).sum(-1))
        eye = np.eye(n)
        k = self.kernel(dist[None, None], self.LENGTHS[:, None, None, None])
        k = k + self.NOISES[None, :, None, None] * eye
        best, choice = -np.inf, (0.2, 1e-6)
        for jitter in (0.0, 1e-8, 1e-6):  # retry the Cholesky with more jitter
            try:
                chol = np.linalg.cholesky(k + jitter * eye)
            except np.linalg.LinAlgError:
                continue
            for i, length in enumerate(self.LENGTHS):
                for j, noise in enumerate(self.NOISES):
                    v = solve_triangular(chol[i, j], z, lower=True)
                    q = float(v @ v)  # signal variance profiled out: s2 = q / n
                    lml = -0.5 * n * math.log(q / n) - np.log(np.diag(chol[i, j])).sum()
                    if lml > best:
                        best, choice = lml, (float(length), float(noise) + jitter)
            break
        length, noise = choice
        factor = np.linalg.cholesky(self.kernel(dist, length) + noise * eye)
        alpha = cho_solve((factor, True), z)
        s2 = float(z @ alpha) / n
        if self.dim == 1:
            cand = np.concatenate([np.linspace(0, 1, 2000), self.rng.random(200)])[:, None]
        else:
            cand = self.rng.random((2200, self.dim))
        ks = self.kernel(np.sqrt(((cand[:, None, :] - u[None, :, :]) ** 2).sum(-1)), length)
        mean = ks @ alpha
        w = solve_triangular(factor, ks.T, lower=True)
        std = np.sqrt(s2 * np.maximum(1.0 - (w * w).sum(0), 1e-12))
        imp = z.min() - mean - self.xi / sd
        g = imp / std
        ei = imp * ndtr(g) + std * np.exp(-0.5 * g * g) / math.sqrt(2 * math.pi)
        return cand[int(np.argmax(ei))]


def run_reference(p: Problem, seed: int, rng: np.random.Generator) -> list[float]:
    ref, r = ReferenceGP(1, seed), np.random.default_rng(seed)
    us: list[float] = []
    ys: list[float] = []
    for i in range(p.budget):
        u = float(r.random()) if i < 5 else float(ref.suggest(np.array(us)[:, None], np.array(ys))[0])
        us.append(u)
        ys.append(observe(p, p.low + (p.high - p.low) * u, rng))
    return [p.low + (p.high - p.low) * u for u in us]


METHODS: dict[str, Callable[[Problem, int, np.random.Generator], list[float]]] = {
    "ours (numpy GP-EI)": run_ours,
    "numpy reference GP-EI": run_reference,
    "random search": run_random,
    "bayes_opt 3.4 (EI)": run_bayes_opt,
}


def observe(p: Problem, x: float, rng: np.random.Generator) -> float:
    return p.sample(x, rng) if p.sample is not None else p.true_loss(x)


# -- scoring ----------------------------------------------------------------------------------


def score(p: Problem, xs: list[float], seed: int) -> tuple[int | None, float, float]:
    """Evaluations to target, regret after 15 and at the end (true loss of the incumbent).

    The incumbent is the best *observed* point; for a noisy problem the observations are
    replayed with the same noise stream the optimizer saw.
    """
    rng = np.random.default_rng(10_000 + seed)
    observed = [observe(p, x, rng) for x in xs]
    hit, best_i, regrets = None, 0, []
    for i, y in enumerate(observed):
        if y < observed[best_i]:
            best_i = i
        regret = p.true_loss(xs[best_i]) - p.f_min
        regrets.append(regret)
        if hit is None and regret <= p.target:
            hit = i + 1
    return hit, regrets[min(14, len(regrets) - 1)], regrets[-1]


def quality(seeds: int) -> list[str]:
    rows = [
        "| function | method | solved | median evals | worst evals | median regret @15 "
        "| median regret @budget |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in PROBLEMS:
        for name, method in METHODS.items():
            hits, r15, rend = [], [], []
            for seed in range(seeds):
                xs = method(p, seed, np.random.default_rng(10_000 + seed))
                hit, a, b = score(p, xs, seed)
                hits.append(hit)
                r15.append(a)
                rend.append(b)
            solved = [h for h in hits if h is not None]
            med = f"{statistics.median(solved):g}" if solved else "-"
            worst = f"{max(solved)}" if solved else "-"
            rows.append(
                f"| {p.name} (budget {p.budget}) | {name} | {len(solved)}/{seeds} | {med} "
                f"| {worst} | {statistics.median(r15):.2e} | {statistics.median(rend):.2e} |"
            )
    return rows


# -- latency ----------------------------------------------------------------------------------


def hartmann3(u: np.ndarray) -> float:
    """The Hartmann 3-D function on [0, 1]^3 (minimum -3.86278)."""
    alpha = np.array([1.0, 1.2, 3.0, 3.2])
    a = np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]])
    p = 1e-4 * np.array([[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]])
    return float(-(alpha * np.exp(-(a * (u - p) ** 2).sum(1))).sum())


def _objective(u: np.ndarray) -> float:
    return forrester(float(u[0])) if u.size == 1 else hartmann3(u)


def latency_ours_in_run(n: int, seed: int, repeats: int) -> list[float]:
    """Seconds for suggestions ``n + 1 .. n + repeats`` of a run that made the first ``n``."""
    opt = make_optimizer("bayesian", space_for("float", {"min": 0.0, "max": 1.0}),
                         direction="minimize", seed=seed)
    out = []
    for i in range(n + repeats):
        t = time.perf_counter()
        x = opt.suggest()
        if i >= n:
            out.append(time.perf_counter() - t)
        assert x is not None
        opt.observe(x, forrester(x))
    return out


def latency_ours_cold(n: int, seed: int) -> float:
    """Seconds for the first suggestion after ``n`` observations told from outside."""
    opt = make_optimizer("bayesian", space_for("float", {"min": 0.0, "max": 1.0}),
                         direction="minimize", seed=seed)
    for x in np.random.default_rng(seed).random(n):
        opt.observe(float(x), forrester(float(x)))
    t = time.perf_counter()
    opt.suggest()
    return time.perf_counter() - t


def latency_reference(n: int, dim: int, seed: int) -> float:
    u = np.random.default_rng(seed).random((n, dim))
    y = np.array([_objective(row) for row in u])
    ref = ReferenceGP(dim, seed)
    t = time.perf_counter()
    ref.suggest(u, y)
    return time.perf_counter() - t


def latency_bayes_opt(n: int, dim: int, seed: int) -> float:
    from bayes_opt import BayesianOptimization, acquisition

    names = [f"x{i}" for i in range(dim)]
    opt = BayesianOptimization(
        f=None, pbounds={k: (0.0, 1.0) for k in names},
        acquisition_function=acquisition.ExpectedImprovement(xi=0.01),
        random_state=seed, verbose=0, allow_duplicate_points=True,
    )
    for row in np.random.default_rng(seed).random((n, dim)):
        opt.register(params=dict(zip(names, map(float, row), strict=True)), target=-_objective(row))
    t = time.perf_counter()
    opt.suggest()
    return time.perf_counter() - t


LATENCY_OBSERVATIONS = (10, 30, 100)
TARGETS = {30: 0.005, 100: 0.015}  # issue 12: p50 per suggestion, 1-D


def latency(rounds: int, per_round: int) -> list[str]:
    """One table row per (space, observations); per round: ``per_round`` seeds of each method,
    the methods alternating so that they share the machine's load."""
    cases = [(1, n) for n in LATENCY_OBSERVATIONS] + [(3, n) for n in LATENCY_OBSERVATIONS]
    stats: dict[tuple[int, int, str], Stats] = {}
    for r in range(rounds):
        for dim, n in cases:
            got: dict[str, list[float]] = {"run": [], "cold": [], "ref": [], "bo": []}
            for k in range(per_round):
                seed = 1000 * r + k
                if dim == 1:
                    got["run"] += latency_ours_in_run(n, seed, 5)
                    got["cold"].append(latency_ours_cold(n, seed))
                got["ref"].append(latency_reference(n, dim, seed))
                got["bo"].append(latency_bayes_opt(n, dim, seed))
            for key, samples in got.items():
                if samples:
                    stats.setdefault((dim, n, key), Stats()).add_round(samples)

    def cell(dim: int, n: int, key: str, p99: bool = True) -> str:
        st = stats.get((dim, n, key))
        if st is None:
            return "–"
        return f"{fmt_time(st.p50)} / {fmt_time(st.p99)}" if p99 else fmt_time(st.p50)

    def ratio(dim: int, n: int, key: str) -> str:
        ours, other = stats.get((dim, n, "run")), stats.get((dim, n, key))
        return "–" if ours is None or other is None else f"{ours.p50 / other.p50:.2f}×"

    rows = []
    for dim, n in cases:
        target = TARGETS.get(n) if dim == 1 else None
        ours = stats.get((dim, n, "run"))
        verdict = "–" if target is None or ours is None else (
            f"≤ {fmt_time(target)}: {'pass' if ours.p50 <= target else 'FAIL'}")
        rows.append([
            f"{dim}-D", n, cell(dim, n, "run"), cell(dim, n, "cold", p99=False), cell(dim, n, "ref"),
            cell(dim, n, "bo"), ratio(dim, n, "ref"), ratio(dim, n, "bo"), verdict,
        ])
    headers = ["space", "observations", "ours in a run p50 / p99", "ours cold p50",
               "numpy reference p50 / p99", "bayes_opt 3.4 p50 / p99", "ours ÷ reference",
               "ours ÷ bayes_opt", "target (p50)"]
    return markdown_table(headers, rows).splitlines()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 seeds and 3 latency rounds")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 20)")
    parser.add_argument("--rounds", type=int, default=None, help="latency rounds (default 7)")
    parser.add_argument("--only", choices=("quality", "latency"), help="run one part only")
    parser.add_argument("--output", help="also write the markdown report to this file")
    args = parser.parse_args()
    seeds = args.seeds or (5 if args.quick else 20)
    rounds = args.rounds or (3 if args.quick else 7)
    per_round = 3
    # bayes_opt/scikit-learn warn about hyperparameter bounds; that is not what we measure.
    warnings.simplefilter("ignore")
    import bayes_opt

    start = time.perf_counter()
    report: list[str] = []

    def emit(*lines: str) -> None:
        print(*lines, sep="\n", flush=True)
        report.extend(lines)

    if args.only != "latency":
        emit(f"## Optimizer quality (seeds 0-{seeds - 1}, n_initial_points=5, xi=0.01)", "")
        emit(*quality(seeds))
    if args.only != "quality":
        emit("", f"## Suggestion latency ({rounds} rounds x {per_round} seeds; in a run: "
             "suggestions n+1..n+5 of each seed; median across rounds of per-round p50 / p99)", "")
        emit(*latency(rounds, per_round))
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    emit(
        "",
        f"numpy {np.__version__}, bayes_opt {bayes_opt.__version__}, "
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end; "
        f"wall time {time.perf_counter() - start:.0f} s; package "
        f"{os.path.dirname(os.path.abspath(dspex_notebook.__file__))}",
    )
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write("\n".join(report) + "\n")


if __name__ == "__main__":
    main()
