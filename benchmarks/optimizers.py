"""Benchmark the built-in ``bayesian`` optimizer against random search and bayes_opt 3.4.

Run from the repository root::

    .venv/bin/python benchmarks/optimizers.py            # 20 seeds, 7 timing repeats
    .venv/bin/python benchmarks/optimizers.py --quick    # 5 seeds, 3 timing repeats
    .venv/bin/python benchmarks/optimizers.py --only speed --output /tmp/opt.md

It prints markdown tables (copied into ``docs/performance.md``):

* quality per function and method over the same seeds: how many runs reached the target
  (best-so-far within 0.01 of the optimum; true-accuracy regret <= 0.05 for the noisy
  function), the median and worst number of evaluations to get there, and the median regret
  after 15 evaluations and at the end of the budget;
* seconds per suggestion with 10, 30 and 100 observations (median of repeated runs): ours
  inside a run and cold (observations told from outside, so the first fit searches all
  hyperparameters), and bayes_opt (which refits from scratch every time).

``bayes_opt`` (the ``bayesian-optimization`` package) is a dev-only reference imported only
here. It is driven through its ask/tell API with the same settings as ours: 5 random initial
points, expected improvement with ``xi=0.01`` (its own ``xi`` convention is the same:
objective units, in the improving direction). On the noisy function it gets a white-noise
kernel, since without one it does worse than random search.
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


METHODS: dict[str, Callable[[Problem, int, np.random.Generator], list[float]]] = {
    "ours (numpy GP-EI)": run_ours,
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


# -- speed ------------------------------------------------------------------------------------


def suggest_time_ours(n: int, seed: int, *, in_run: bool) -> float:
    """Seconds for one suggestion with ``n`` observations.

    ``in_run``: the observations come from the optimizer's own suggestions, so the GP refit
    searches hyperparameters near the previous fit (what a real run costs). Otherwise they are
    told from outside and the first fit searches the whole grid (the worst case).
    """
    opt = make_optimizer(
        "bayesian", space_for("float", {"min": 0.0, "max": 1.0}), direction="minimize",
        seed=seed,
    )
    if not in_run:
        for x in np.random.default_rng(seed).random(n):
            opt.observe(float(x), forrester(float(x)))
        t = time.perf_counter()
        opt.suggest()
        return time.perf_counter() - t
    # Mean over suggestions n+1..n+5, since every 10th refit searches the whole grid again.
    spent = 0.0
    for i in range(n + 5):
        t = time.perf_counter()
        x = opt.suggest()
        if i >= n:
            spent += time.perf_counter() - t
        assert x is not None
        opt.observe(x, forrester(x))
    return spent / 5


def suggest_time_bayes_opt(n: int, seed: int) -> float:
    from bayes_opt import BayesianOptimization, acquisition

    opt = BayesianOptimization(
        f=None, pbounds={"x": (0.0, 1.0)},
        acquisition_function=acquisition.ExpectedImprovement(xi=0.01),
        random_state=seed, verbose=0, allow_duplicate_points=True,
    )
    for x in np.random.default_rng(seed).random(n):
        opt.register(params={"x": float(x)}, target=-forrester(float(x)))
    t = time.perf_counter()
    opt.suggest()
    return time.perf_counter() - t


def speed(repeats: int) -> list[str]:
    rows = [
        "| observations | ours, in a run | ours, cold (first fit) | bayes_opt 3.4 |",
        "|---|---|---|---|",
    ]
    for n in (10, 30, 100):
        warm = statistics.median(suggest_time_ours(n, s, in_run=True) for s in range(repeats))
        cold = statistics.median(suggest_time_ours(n, s, in_run=False) for s in range(repeats))
        ref = statistics.median(suggest_time_bayes_opt(n, s) for s in range(repeats))
        rows.append(f"| {n} | {warm:.4f} s | {cold:.4f} s | {ref:.4f} s |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 seeds and 3 timing repeats")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 20)")
    parser.add_argument("--only", choices=("quality", "speed"), help="run one part only")
    parser.add_argument("--output", help="also write the markdown report to this file")
    args = parser.parse_args()
    seeds = args.seeds or (5 if args.quick else 20)
    repeats = 3 if args.quick else 7
    # bayes_opt/scikit-learn warn about hyperparameter bounds; that is not what we measure.
    warnings.simplefilter("ignore")
    import bayes_opt

    start = time.perf_counter()
    report: list[str] = []

    def emit(*lines: str) -> None:
        print(*lines, sep="\n", flush=True)
        report.extend(lines)

    if args.only != "speed":
        emit(f"## Optimizer quality (seeds 0-{seeds - 1}, n_initial_points=5, xi=0.01)", "")
        emit(*quality(seeds))
    if args.only != "quality":
        emit("", f"## Time per suggestion (median of {repeats} runs; target <= 0.2 s at 30)", "")
        emit(*speed(repeats))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    emit(
        "",
        f"numpy {np.__version__}, bayes_opt {bayes_opt.__version__}, "
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {load:.1f} at the end; wall time {time.perf_counter() - start:.0f} s",
    )
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write("\n".join(report) + "\n")


if __name__ == "__main__":
    main()
