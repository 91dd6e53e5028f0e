"""Server-held optimization runs: overhead per trial vs a bare echo, and ours vs Optuna.

Everything is measured in one run on this machine, baselines included. Topology: a bare
grpc.aio echo server (``_common.py echo-server``) and ``python -m dspex_notebook serve --port 0
--memory`` are two separate processes; the client (one asyncio loop, one grpc.aio channel per
server, ``SessionContext(cache_ttl=0)``) is this process, and so is Optuna.

Part 1 — overhead per trial. ``grid_search`` (its suggestion is a list lookup) with a trivial
objective, so a trial costs what the run machinery costs: a commit recording the metrics and
a commit writing the next proposal with its ``pending`` trial record, in one round trip
(``ReportTrial`` with ``next``):

* driver: ``start_optimization(..., objective=f)`` + ``wait_optimization``, wall time divided by
  the trials (start and end included), with an async ``f`` (no thread hop) and a sync ``f``
  (which the driver runs in a worker thread); also the p50 of the intervals between
  consecutive ``callback`` calls (one whole trial each);
* external worker: ``trial = await ctx.report_trial(v, trial.id, y, next=True)`` per trial
  (one RPC), timed one trial at a time; and, as a diagnostic, the two-RPC loop
  ``ctx.next_trial`` + ``ctx.report_trial``;
* the floors: one ``set_variable`` call (one write RPC that commits, no run), what any
  one-RPC trial costs at least, and two of them (the floor of a two-RPC trial);
* ``bayesian`` on Forrester (30 trials, the budget) by the driver, to show what the
  suggestion (a GP fit in the server's worker thread) adds; its ``suggest``+``observe`` alone,
  in this process, on the same seed, is shown beside it.

Each round runs every case once; before and after each case, 200 echo calls (64 B) are timed
and their p50 is the case's paired baseline; ratio = per-trial time / paired echo p50, and the
table gives the median across rounds (spread: min–max of the per-round values).

Part 2 — ours vs Optuna 5 (ask/tell, in-memory storage): ``TPESampler(seed)``, and
``GPSampler(seed, deterministic_objective=...)`` when ``torch`` imports. Same functions, seeds
0–9, budget 30, minimize, trivial objectives (microseconds). Both start by evaluating the
variable's current value (a server-held ``bayesian`` run evaluates it first; Optuna gets it
with ``enqueue_trial``). Ours: ``bayesian`` with ``n_initial_points=5, xi=0.01`` (its
defaults), ``convergence_threshold=None`` (the whole budget), and on the deterministic
functions ``noise="none"``: the same knowledge GPSampler gets from
``deterministic_objective=True`` (on the noisy one both fit a noise level). Per run:
evaluations to target (first evaluation whose incumbent is within the target of the
optimum: 0.01, or 0.05 of true accuracy for the noisy function) and wall time to target (ours: from calling
``start_optimization`` to the ``callback`` of that trial; Optuna: from ``create_study`` to the
``tell`` of that trial). Wall times are the median over rounds per seed, then the median over
the seeds that reached the target.

    .venv/bin/python benchmarks/optimization_runs.py            # full (~5-8 min on 2 cores)
    .venv/bin/python benchmarks/optimization_runs.py --quick    # smoke (~1-2 min)
    .venv/bin/python benchmarks/optimization_runs.py --only overhead --output /tmp/runs.md
    .venv/bin/python benchmarks/optimization_runs.py --only overhead --profile-server /tmp/s.prof
    .venv/bin/python benchmarks/optimization_runs.py --only overhead --server-env OPENBLAS_NUM_THREADS=1

Optuna (``optuna``) is in the ``dev`` extra. Its GPSampler rows appear only when ``torch`` imports
(not a dependency: on this machine ``pip install torch==2.13.0 greenlet`` into .venv takes a CPU
build from local disk; without greenlet Optuna falls back to a slower sequential L-BFGS-B).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(1, ROOT)

import numpy as np  # noqa: E402
from _common import (  # noqa: E402
    EchoClient,
    ServerProcess,
    emit,
    environment,
    fmt_time,
    markdown_table,
    percentile,
    start_echo_process,
    time_async,
)

TINY_ECHO = 64
ECHO_CHUNK = 200
TARGET_RATIO = 2.5  # per trial, in echo round trips
OURS = "ours: server-held bayesian"

# ----------------------------------------------------------------------------------------------
# functions (minimized). Forrester and the noisy accuracy are the 1-D functions of
# shared/design/OPTIMIZATION-NOTES.md §6.1; Gramacy-Lee is the third 1-D problem of
# benchmarks/optimizers.py (the notes do not list it).


def forrester(x: float) -> float:
    return (6 * x - 2) ** 2 * math.sin(12 * x - 4)


def gramacy_lee(x: float) -> float:
    return math.sin(10 * math.pi * x) / (2 * x) + (x - 1) ** 4


def accuracy(x: float) -> float:
    """True accuracy of a fake LLM pipeline vs temperature: a narrow peak and a decoy."""
    return 0.45 + 0.4 * math.exp(-(((x - 0.4) / 0.06) ** 2)) + 0.25 * math.exp(
        -(((x - 0.8) / 0.12) ** 2))


_ACC_MAX = max(accuracy(float(x)) for x in np.linspace(0.0, 1.0, 100_001))


@dataclass(frozen=True)
class Problem:
    name: str
    low: float
    high: float
    f_min: float
    true_loss: Callable[[float], float]
    noisy: bool = False
    target: float = 0.01
    budget: int = 30

    @property
    def start(self) -> float:
        return (self.low + self.high) / 2

    def sampler(self, seed: int) -> Callable[[float], float]:
        """The objective one run sees (noisy: its own seeded noise stream, drawn in order)."""
        if not self.noisy:
            return self.true_loss
        rng = np.random.default_rng(10_000 + seed)
        return lambda x: -float(rng.binomial(50, accuracy(x))) / 50


PROBLEMS = [
    Problem("Forrester [0,1]", 0.0, 1.0, -6.020740, forrester),
    Problem("noisy accuracy (binomial, 50 items) [0,1]", 0.0, 1.0, -_ACC_MAX,
            lambda x: -accuracy(x), noisy=True, target=0.05),
    Problem("Gramacy-Lee [0.5,2.5]", 0.5, 2.5, -0.869011, gramacy_lee),
]


def evals_to_target(p: Problem, xs: list[float], ys: list[float]) -> int | None:
    """1-based index of the first evaluation whose incumbent (best observed so far) has a true
    loss within ``p.target`` of the optimum."""
    best = math.inf
    inc = None
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        if y < best:
            best, inc = y, x
        if inc is not None and p.true_loss(inc) - p.f_min <= p.target:
            return i + 1
    return None


# ----------------------------------------------------------------------------------------------
# servers


def start_dspex(token_file: str, runtime_dir: str, profile: str | None = None,
                extra_env: list[str] | None = None) -> ServerProcess:
    def parse(line: str) -> str | None:
        if " serving " in line and " on " in line:
            return line.rsplit(" on ", 1)[1].strip()
        return None

    # PYTHONPATH: the server runs the package of this checkout (not whatever is installed)
    env = dict(os.environ, DSPEX_RUNTIME_DIR=runtime_dir,
               PYTHONPATH=os.pathsep.join([ROOT, *filter(None, [os.environ.get("PYTHONPATH")])]))
    for var in ("DSPEX_ADDRESS", "DSPEX_TOKEN", "DSPEX_TOKEN_FILE"):
        env.pop(var, None)
    for item in extra_env or ():
        key, _, value = item.partition("=")
        env[key] = value
    prof = ["-m", "cProfile", "-o", profile] if profile else []  # written when serve exits
    argv = [sys.executable, *prof, "-m", "dspex_notebook", "serve", "--port", "0", "--memory",
            "--token-file", token_file]
    return ServerProcess(argv, parse, env=env)


# ----------------------------------------------------------------------------------------------
# part 1: overhead per trial


@dataclass
class OverheadCase:
    label: str
    path: str
    run: Callable[[int], Any]  # async (round) -> (per-trial seconds, per-trial samples)
    target: bool = False  # checked against TARGET_RATIO
    per_trial: list[float] = field(default_factory=list)  # one per round
    p50s: list[float] = field(default_factory=list)  # per-round p50 of single-trial samples
    echo: list[float] = field(default_factory=list)  # paired echo p50 per round
    trials: int = 0

    @property
    def ratios(self) -> list[float]:
        return [a / b for a, b in zip(self.per_trial, self.echo, strict=True)]


def _spread(values: list[float], fmt: Callable[[float], str]) -> str:
    return f"{fmt(min(values))} – {fmt(max(values))}" if values else "–"


async def overhead(args: argparse.Namespace, ctx: Any, echo: EchoClient) -> tuple[list[OverheadCase], dict]:
    from dspex_notebook._optimize import make_optimizer, space_for

    T = args.trials
    var = "g"
    await ctx.register_variable(var, "float", 0.5, constraints={"min": 0.0, "max": 1.0})
    await ctx.register_variable("b", "float", 0.5, constraints={"min": 0.0, "max": 1.0})
    await ctx.register_variable("w", "float", 0.5, constraints={"min": 0.0, "max": 1.0})
    grid = {"direction": "minimize", "n_points": T}
    clock = time.perf_counter

    async def aobjective(x: float) -> float:
        return x * x

    def sobjective(x: float) -> float:
        return x * x

    async def driver(objective: Callable[[float], Any], optimizer: str, config: dict, n: int,
                     name: str) -> tuple[float, list[float]]:
        stamps: list[float] = []
        t0 = clock()
        await ctx.start_optimization(name, optimizer, config, max_iterations=n,
                                     convergence_threshold=None, objective=objective,
                                     callback=lambda i, v, m: stamps.append(clock()))
        reason = await ctx.wait_optimization(name)
        elapsed = clock() - t0
        assert reason in ("grid_exhausted", "max_iterations"), reason
        assert len(stamps) == n, (len(stamps), n)
        return elapsed / n, [b - a for a, b in zip(stamps, stamps[1:], strict=False)]

    async def external(r: int) -> tuple[float, list[float]]:
        """One round trip per trial: report_trial(next=True) hands out the next trial."""
        await ctx.start_optimization(var, "grid_search", grid, max_iterations=T,
                                     convergence_threshold=None)  # no objective: waits
        samples = []
        t0 = clock()
        trial = await ctx.next_trial(var)
        while trial is not None:
            t = clock()
            trial = await ctx.report_trial(var, trial.id, trial.value * trial.value, next=True)
            samples.append(clock() - t)
        elapsed = clock() - t0
        assert len(samples) == T, len(samples)
        return elapsed / T, samples

    async def external_two(r: int) -> tuple[float, list[float]]:
        """Two round trips per trial: next_trial, then report_trial."""
        await ctx.start_optimization(var, "grid_search", grid, max_iterations=T,
                                     convergence_threshold=None)
        samples = []
        t0 = clock()
        while True:
            t = clock()
            trial = await ctx.next_trial(var)
            if trial is None:
                break
            await ctx.report_trial(var, trial.id, trial.value * trial.value)
            samples.append(clock() - t)
        elapsed = clock() - t0
        assert len(samples) == T, len(samples)
        return elapsed / T, samples

    async def one_write(r: int) -> tuple[float, list[float]]:
        samples = []
        t0 = clock()
        for i in range(T):
            t = clock()
            await ctx.set_variable("w", i / T)
            samples.append(clock() - t)
        return (clock() - t0) / T, samples

    async def two_writes(r: int) -> tuple[float, list[float]]:
        samples = []
        t0 = clock()
        for i in range(T):
            t = clock()
            await ctx.set_variable("w", i / T)
            await ctx.set_variable("w", 1 - i / T)
            samples.append(clock() - t)
        return (clock() - t0) / T, samples

    bayes_n = 30

    async def bayes(r: int) -> tuple[float, list[float]]:
        await ctx.set_variable("b", 0.5)
        return await driver(aobjective_forrester, "bayesian",
                            {"direction": "minimize", "seed": r}, bayes_n, "b")

    async def aobjective_forrester(x: float) -> float:
        return forrester(x)

    cases = [
        OverheadCase("grid_search, async objective", "driver: start + wait, / trials",
                     lambda r: driver(aobjective, "grid_search", grid, T, var), target=True),
        OverheadCase("grid_search, sync objective (worker thread)", "driver: start + wait, / trials",
                     lambda r: driver(sobjective, "grid_search", grid, T, var)),
        OverheadCase("grid_search", "external: ctx.report_trial(next=True), 1 RPC",
                     external, target=True),
        OverheadCase("grid_search (diagnostic)", "external: ctx.next_trial + ctx.report_trial, 2 RPCs",
                     external_two),
        OverheadCase("floor: one set_variable call (one write RPC, no run)",
                     "ctx.set_variable", one_write),
        OverheadCase("floor: two set_variable calls (two write RPCs, no run)",
                     "ctx.set_variable × 2, per pair", two_writes),
        OverheadCase(f"bayesian, Forrester, {bayes_n} trials", "driver: start + wait, / trials", bayes),
    ]
    tiny = b"x" * TINY_ECHO
    for case in cases:  # warm-up
        await case.run(0)
    await time_async(lambda i: echo.echo(tiny), 0, 100)
    for r in range(args.rounds):
        t0 = time.perf_counter()
        for case in cases:
            gc.collect()
            before = await time_async(lambda i: echo.echo(tiny), ECHO_CHUNK, 10)
            per_trial, samples = await case.run(r)
            after = await time_async(lambda i: echo.echo(tiny), ECHO_CHUNK, 0)
            case.per_trial.append(per_trial)
            case.p50s.append(percentile(sorted(samples), 50))
            case.echo.append(percentile(sorted(before + after), 50))
            case.trials += len(samples) + (1 if "driver" in case.path else 0)
        print(f"  overhead round {r + 1}/{args.rounds}: {time.perf_counter() - t0:.1f} s "
              f"(load {os.getloadavg()[0]:.2f})", file=sys.stderr, flush=True)

    # the bayesian optimizer alone (suggest + observe), same seeds, in this process
    alone = []
    for r in range(args.rounds):
        opt = make_optimizer("bayesian", space_for("float", {"min": 0.0, "max": 1.0}, "b"),
                             {"initial_value": 0.5}, direction="minimize", seed=r,
                             max_iterations=bayes_n)
        t0 = clock()
        while (x := opt.suggest()) is not None:
            opt.observe(x, forrester(x))
        alone.append((clock() - t0) / bayes_n)
    return cases, {"bayes_alone": alone, "bayes_n": bayes_n}


def overhead_table(cases: list[OverheadCase], extra: dict) -> str:
    rows = []
    for c in cases:
        ratio = statistics.median(c.ratios)
        verdict = "–"
        if c.target:
            verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
        rows.append([
            c.label, c.path, fmt_time(statistics.median(c.per_trial)),
            _spread(c.per_trial, fmt_time), fmt_time(statistics.median(c.p50s)),
            fmt_time(statistics.median(c.echo)), f"{ratio:.2f}×",
            _spread(c.ratios, lambda v: f"{v:.2f}×"),
            f"≤ {TARGET_RATIO}× echo" if c.target else "–", verdict,
        ])
    alone = extra["bayes_alone"]
    rows.append([f"bayesian suggest + observe alone ({extra['bayes_n']} trials)",
                 "in this process, no RPC", fmt_time(statistics.median(alone)),
                 _spread(alone, fmt_time), "–", "–", "–", "–", "–", "–"])
    return markdown_table(
        ["run", "path", "per trial (median of rounds)", "spread (rounds)",
         "single-trial p50", "paired echo p50", "per trial / echo p50", "ratio spread", "target",
         "pass/fail"], rows)


# ----------------------------------------------------------------------------------------------
# part 2: ours vs Optuna


@dataclass
class Outcome:
    evals: int | None = None
    walls: list[float] = field(default_factory=list)  # wall time to target, one per round
    totals: list[float] = field(default_factory=list)  # whole run (budget), one per round
    mismatched: bool = False  # evaluations differed between rounds


Trace = tuple[list[float], list[float], list[float], float]  # xs, ys, seconds to each, total


async def run_ours(ctx: Any, p: Problem, seed: int, var: str) -> Trace:
    f = p.sampler(seed)
    xs: list[float] = []
    ys: list[float] = []
    stamps: dict[int, float] = {}
    clock = time.perf_counter

    async def objective(x: float) -> float:
        y = f(x)
        xs.append(x)
        ys.append(y)
        return y

    await ctx.set_variable(var, p.start)
    t0 = clock()
    await ctx.start_optimization(
        var, "bayesian", {"direction": "minimize", "seed": seed, "n_initial_points": 5, "xi": 0.01,
                          # what GPSampler is told with deterministic_objective=True
                          "noise": "auto" if p.noisy else "none"},
        max_iterations=p.budget, convergence_threshold=None, objective=objective,
        callback=lambda i, v, m: stamps.__setitem__(i, clock()))
    reason = await ctx.wait_optimization(var)
    total = clock() - t0
    assert reason == "max_iterations", reason
    return xs, ys, [stamps[i + 1] - t0 for i in range(len(xs))], total


def run_optuna(p: Problem, seed: int, kind: str) -> Trace:
    import optuna

    f = p.sampler(seed)
    dist = optuna.distributions.FloatDistribution(p.low, p.high)
    xs: list[float] = []
    ys: list[float] = []
    stamps: list[float] = []
    clock = time.perf_counter
    t0 = clock()
    if kind == "tpe":
        sampler: Any = optuna.samplers.TPESampler(seed=seed)
    else:
        sampler = optuna.samplers.GPSampler(seed=seed, deterministic_objective=not p.noisy)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.enqueue_trial({"x": p.start})
    for _ in range(p.budget):
        trial = study.ask({"x": dist})
        x = float(trial.params["x"])
        y = f(x)
        study.tell(trial, y)
        xs.append(x)
        ys.append(y)
        stamps.append(clock() - t0)
    return xs, ys, stamps, clock() - t0


def optuna_methods() -> tuple[dict[str, str], list[str]]:
    """Method labels -> kind, and notes on what was skipped."""
    notes: list[str] = []
    methods: dict[str, str] = {}
    try:
        import optuna
    except ImportError:
        notes.append("optuna is not installed (`make` installs the dev extra): Optuna rows skipped")
        return methods, notes
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    methods[f"Optuna {optuna.__version__} TPE"] = "tpe"
    try:
        import torch

        methods[f"Optuna {optuna.__version__} GPSampler (torch {torch.__version__})"] = "gp"
    except ImportError:
        notes.append("torch is not installed: Optuna's GPSampler skipped (it needs torch; on this "
                     "machine `pip install torch==2.13.0` takes a CPU build from local disk)")
    return methods, notes


Results = dict[str, dict[str, list[Outcome]]]  # function -> method -> one Outcome per seed


async def comparison(args: argparse.Namespace, ctx: Any) -> tuple[Results, list[str]]:
    methods, notes = optuna_methods()
    labels = [OURS, *methods]
    results: Results = {
        p.name: {m: [Outcome() for _ in range(args.seeds)] for m in labels} for p in PROBLEMS}
    for k, p in enumerate(PROBLEMS):
        await ctx.register_variable(f"v{k}", "float", p.start, constraints={"min": p.low, "max": p.high})
    # warm-up (imports, first GP fits, torch's first call), untimed
    await run_ours(ctx, PROBLEMS[0], 99, "v0")
    for kind in methods.values():
        run_optuna(PROBLEMS[0], 99, kind)
    for r in range(args.compare_rounds):
        t_round = time.perf_counter()
        for k, p in enumerate(PROBLEMS):
            for seed in range(args.seeds):
                for label in labels:  # interleaved: the methods share the machine's load
                    gc.collect()
                    if label == OURS:
                        xs, ys, stamps, total = await run_ours(ctx, p, seed, f"v{k}")
                    else:
                        xs, ys, stamps, total = run_optuna(p, seed, methods[label])
                    hit = evals_to_target(p, xs, ys)
                    out = results[p.name][label][seed]
                    if r == 0:
                        out.evals = hit
                    elif out.evals != hit:
                        out.mismatched = True
                    out.totals.append(total)
                    if hit is not None:
                        out.walls.append(stamps[hit - 1])
        print(f"  comparison round {r + 1}/{args.compare_rounds}: "
              f"{time.perf_counter() - t_round:.1f} s (load {os.getloadavg()[0]:.2f})",
              file=sys.stderr, flush=True)
    return results, notes


def _med(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def _evals(v: float) -> str:
    return "> 30 (most runs miss)" if math.isinf(v) else f"{v:g}"


def comparison_tables(results: Results, seeds: int) -> tuple[str, list[str]]:
    rows = []
    verdicts: list[str] = []
    for fn, by_method in results.items():
        summary: dict[str, tuple[float, float, int]] = {}
        for label, outs in by_method.items():
            hits = [o.evals for o in outs if o.evals is not None]
            all_evals = [o.evals if o.evals is not None else math.inf for o in outs]
            walls = [_med(o.walls) for o in outs if o.evals is not None and o.walls]
            totals = [_med(o.totals) for o in outs]
            med_all = statistics.median(all_evals)
            rounds = max((len(o.totals) for o in outs), default=0)
            per_round = [_med([o.walls[i] for o in outs if len(o.walls) > i]) for i in range(rounds)]
            per_round = [v for v in per_round if not math.isnan(v)]
            summary[label] = (med_all, _med(walls), len(hits))
            rows.append([
                fn, label, f"{len(hits)}/{seeds}", _evals(med_all),
                f"{_med(hits):g}" if hits else "–", f"{max(hits)}" if hits else "–",
                fmt_time(_med(walls)), _spread(per_round, fmt_time), fmt_time(_med(totals)),
                "yes" if any(o.mismatched for o in outs) else "no",
            ])
        mine = summary[OURS]
        for label, (med_all, wall, n) in summary.items():
            if label == OURS:
                continue
            ev = (f"evaluations (median, misses = ∞): ours {_evals(mine[0])} vs {_evals(med_all)} "
                  f"→ {'PASS' if mine[0] < med_all else 'FAIL'}")
            if n == 0:
                wt = "wall time: Optuna never reached the target → n/a"
            elif not mine[2]:
                wt = "wall time: ours never reached the target → FAIL"
            else:
                paired = [(_med(a.walls), _med(b.walls))
                          for a, b in zip(by_method[OURS], by_method[label], strict=True)
                          if a.walls and b.walls]
                faster = sum(1 for a, b in paired if a < b)
                wt = (f"wall time to target (median of solved seeds): ours {fmt_time(mine[1])} vs "
                      f"{fmt_time(wall)} (theirs / ours = {wall / mine[1]:.2f}; ours faster on "
                      f"{faster}/{len(paired)} seeds both solved) "
                      f"→ {'PASS' if mine[1] < wall else 'FAIL'}")
                theirs_solved = _med([o.evals for o in by_method[label] if o.evals is not None])
                ours_solved = _med([o.evals for o in by_method[OURS] if o.evals is not None])
                if mine[1] >= wall and theirs_solved > ours_solved:
                    # objective seconds per evaluation at which the medians would tie
                    wt += (f"; break-even at an objective of "
                           f"{fmt_time((mine[1] - wall) / (theirs_solved - ours_solved))} per evaluation")
            verdicts.append(f"- {fn}, vs {label}: {ev}; {wt}")
    headers = ["function", "method", "seeds reaching target", "median evals (misses = ∞)",
               "median evals (solved)", "worst (solved)", "median wall to target",
               "spread (per-round medians)", "median wall, whole run (30)",
               "evals differ between rounds"]
    return markdown_table(headers, rows), verdicts


# ----------------------------------------------------------------------------------------------


async def amain(args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    from dspex_notebook._session import SessionContext
    from dspex_notebook._wire.client import insecure_channel

    token = secrets.token_urlsafe(24)
    token_file = os.path.join(tmp, "token")
    with open(token_file, "w") as fh:
        fh.write(token)
    procs: list[ServerProcess] = []
    ctx = echo = None
    out: dict[str, Any] = {}
    try:
        procs.append(echo_proc := start_echo_process())
        procs.append(dspex := start_dspex(token_file, os.path.join(tmp, "runtime"),
                                                   args.profile_server, args.server_env))
        print(f"servers: echo pid {echo_proc.pid} {echo_proc.address}; dspex --memory pid "
              f"{dspex.pid} {dspex.address}", file=sys.stderr, flush=True)
        if args.pause_for_profiler:
            print(f"  attach a profiler to pid {dspex.pid}; starting in {args.pause_for_profiler} s",
                  file=sys.stderr, flush=True)
            await asyncio.sleep(args.pause_for_profiler)
        echo = EchoClient(echo_proc.address)
        ctx = SessionContext("bench-runs", insecure_channel(dspex.address), token=token, cache_ttl=0,
                             close_channel=True)
        await ctx.initialize()
        if args.only in (None, "overhead"):
            out["overhead"] = await overhead(args, ctx, echo)
        if args.only in (None, "compare"):
            out["compare"] = await comparison(args, ctx)
        return out
    finally:
        if ctx is not None:
            await ctx.close()
        if echo is not None:
            await echo.close()
        for proc in procs:
            proc.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (fewer rounds and seeds)")
    parser.add_argument("--rounds", type=int, default=None, help="overhead rounds (default 7; quick 3)")
    parser.add_argument("--trials", type=int, default=None,
                        help="grid trials per overhead run (default 200; quick 50)")
    parser.add_argument("--seeds", type=int, default=None, help="comparison seeds (default 10; quick 3)")
    parser.add_argument("--compare-rounds", type=int, default=None,
                        help="repeats of the whole comparison, for wall times (default 3; quick 1)")
    parser.add_argument("--only", choices=("overhead", "compare"), help="run one part only")
    parser.add_argument("--pause-for-profiler", type=float, default=0.0, metavar="S",
                        help="wait S seconds after the server starts (to attach py-spy)")
    parser.add_argument("--profile-server", default=None, metavar="FILE",
                        help="run the server under cProfile, stats written to FILE at the end")
    parser.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the server process (diagnostics, e.g. "
                             "OPENBLAS_NUM_THREADS=1); repeatable")
    parser.add_argument("--output", default=None, help="also write the markdown report here")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (3 if args.quick else 7)
    args.trials = args.trials or (50 if args.quick else 200)
    args.seeds = args.seeds or (3 if args.quick else 10)
    args.compare_rounds = args.compare_rounds or (1 if args.quick else 3)
    if not (1 <= args.rounds <= 50 and 10 <= args.trials <= 10_000 and 1 <= args.seeds <= 100
            and 1 <= args.compare_rounds <= 20):
        parser.error("--rounds 1..50, --trials 10..10000, --seeds 1..100, --compare-rounds 1..20")
    warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning for GPSampler; not measured

    started = time.perf_counter()
    env = environment()
    tmp = tempfile.mkdtemp(prefix="dspex-bench-runs-")
    try:
        res = asyncio.run(amain(args, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.perf_counter() - started

    cmd = "python benchmarks/optimization_runs.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = ["## Optimization runs", "",
             f"Command: `{cmd.strip()}`; wall time {elapsed:.0f} s."
             + (f" Server environment: {' '.join(args.server_env)}." if args.server_env else ""), ""]
    if "overhead" in res:
        cases, extra = res["overhead"]
        lines += [f"Overhead per trial ({args.rounds} rounds; grid runs of {args.trials} trials; "
                  f"paired echo: {2 * ECHO_CHUNK} calls of {TINY_ECHO} B around each case):", "",
                  overhead_table(cases, extra), ""]
    if "compare" in res:
        results, notes = res["compare"]
        table, verdicts = comparison_tables(results, args.seeds)
        lines += [f"Ours vs Optuna (seeds 0–{args.seeds - 1}, budget 30, {args.compare_rounds} "
                  "rounds for wall times):", "", table, "", *verdicts, ""]
        lines += [f"- {n}" for n in notes]
        if notes:
            lines.append("")
    lines += ["Environment:", "", *[f"- {k}: {v}" for k, v in env.items()]]
    try:
        import optuna

        lines.append(f"- optuna: {optuna.__version__}")
    except ImportError:
        pass
    try:
        import torch

        lines.append(f"- torch: {torch.__version__}")
    except ImportError:
        pass
    lines.append(f"- load average (end): {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    report = "\n".join(lines)
    emit(report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
