"""The ``gradient`` optimizer (central differences and SPSA) as an ask/tell state machine."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from dspex_notebook._optimize import GradientOptimizer, StopReason, make_optimizer, space_for

UNIT = space_for("float", {"min": 0.0, "max": 1.0}, "x")
CONVERGED = {"converged_step", "converged_improvement"}


def gradient(config: dict, **kwargs: Any) -> GradientOptimizer:
    kwargs.setdefault("direction", "minimize")
    kwargs.setdefault("seed", 0)
    opt = make_optimizer("gradient", kwargs.pop("space", UNIT), config, **kwargs)
    assert isinstance(opt, GradientOptimizer)
    return opt


def test_from_0_7_reaches_the_global_minimum_within_40(forrester: Any, drive: Any) -> None:
    opt = gradient({"initial_value": 0.7}, max_iterations=40, convergence_threshold=1e-3)
    ys = [forrester(x) for x in drive(opt, forrester)]
    assert ys[0] == forrester(0.7)  # the start value is evaluated first
    assert min(ys) < -6.0 and len(ys) <= 40
    assert opt.stop_reason in CONVERGED
    assert abs(opt.current - 0.757249) < 0.01


def test_from_0_1_converges_to_the_local_minimum_and_says_so(forrester: Any, drive: Any) -> None:
    opt = gradient({"x0": 0.1}, max_iterations=100, convergence_threshold=1e-3)
    xs = drive(opt, forrester)
    assert len(xs) < 100
    assert opt.stop_reason in CONVERGED  # stopped by convergence, not by the budget
    assert opt.converged(1e-3)
    assert abs(opt.current - 0.142589) < 0.01
    assert opt.best is not None and opt.best[1] == pytest.approx(-0.986325, abs=2e-3)


def test_steps_stay_within_bounds_and_follow_the_slope(drive: Any) -> None:
    # Monotone objective: the optimum is the upper bound; no proposal may leave [0, 1].
    opt = gradient({"initial_value": 0.2, "learning_rate": 0.3}, max_iterations=50)
    xs = drive(opt, lambda x: -x)
    assert all(0.0 <= x <= 1.0 for x in xs)
    assert opt.best == (1.0, -1.0) and opt.current == 1.0
    assert opt.stop_reason in CONVERGED


def test_maximize_direction(forrester: Any, drive: Any) -> None:
    opt = gradient({"x0": 0.6}, direction="maximize", max_iterations=60)
    drive(opt, lambda x: -forrester(x))
    assert opt.best is not None and opt.best[1] > 6.0


def test_state_machine_is_central_difference_then_step(forrester: Any) -> None:
    opt = gradient({"x0": 0.5, "perturbation": 0.05})
    order = []
    for _ in range(4):
        x = opt.suggest()
        order.append(x)
        opt.observe(x, forrester(x))
    assert order[:3] == [0.5, 0.55, 0.45]  # x, x + h, x - h, then the step point
    assert order[3] not in order[:3]


def test_plateau_is_reported_for_a_too_small_perturbation(drive: Any) -> None:
    # An accuracy on 20 items is a staircase; a 0.1 % perturbation sees a zero slope.
    def staircase(x: float) -> float:
        return -math.floor(20 * (1 - (x - 0.4) ** 2)) / 20

    opt = gradient({"x0": 0.1, "perturbation": 0.001}, max_iterations=50)
    drive(opt, staircase)
    assert opt.stop_reason == StopReason.CONVERGED_PLATEAU
    big = gradient({"x0": 0.1, "perturbation": 0.05}, max_iterations=60)
    drive(big, staircase)
    assert abs(big.current - 0.4) < 0.1  # a large perturbation climbs the staircase


def test_failed_probe_falls_back_to_a_one_sided_difference(forrester: Any, drive: Any) -> None:
    calls = {"n": 0}

    def flaky(x: float) -> float | None:
        calls["n"] += 1
        return None if calls["n"] == 2 else forrester(x)  # the first probe crashes

    opt = gradient({"x0": 0.7}, max_iterations=40)
    drive(opt, flaky)
    assert opt.history[1].failed
    assert opt.best is not None and opt.best[1] < -6.0


def test_failed_start_moves_to_a_probe(forrester: Any, drive: Any) -> None:
    opt = gradient({"x0": 0.7}, max_iterations=40)
    drive(opt, lambda x: None if x == 0.7 else forrester(x))
    assert opt.best is not None and opt.best[1] < -6.0


def test_everything_failing_stops_with_failed(drive: Any) -> None:
    opt = gradient({}, max_iterations=40)
    assert len(drive(opt, lambda x: None)) == 3 and opt.stop_reason == "failed"


def test_integer_space_uses_whole_steps(forrester: Any, drive: Any) -> None:
    sp = space_for("integer", {"min": 0, "max": 100}, "k")
    opt = gradient({"x0": 70}, space=sp, max_iterations=60)
    ks = drive(opt, lambda k: forrester(k / 100))
    assert all(isinstance(k, int) for k in ks)
    assert opt.best is not None and opt.best[0] in (75, 76, 77)
    assert opt.stop_reason in CONVERGED


def test_spsa_handles_a_noisy_objective(drive: Any) -> None:
    rng = np.random.default_rng(3)

    def noisy_accuracy(x: float) -> float:
        return rng.binomial(100, 0.85 - 2.0 * (x - 0.4) ** 2) / 100

    finals = []
    for seed in range(5):
        opt = gradient(
            {"method": "spsa", "x0": 0.1, "perturbation": 0.1, "learning_rate": 0.1},
            direction="maximize", seed=seed, max_iterations=80,
        )
        drive(opt, noisy_accuracy)
        finals.append(opt.current)
    assert sum(abs(x - 0.4) < 0.12 for x in finals) >= 4, finals


def test_spsa_evaluates_its_converged_iterate(forrester: Any, drive: Any) -> None:
    opt = gradient({"method": "spsa", "x0": 0.7}, max_iterations=200, convergence_threshold=1e-3)
    xs = drive(opt, forrester)
    assert opt.stop_reason == "converged_step"
    assert xs[-1] == opt.current and abs(opt.current - 0.757249) < 0.01


def test_unsolicited_observation_does_not_derail_the_descent(forrester: Any) -> None:
    opt = gradient({"x0": 0.7})
    x = opt.suggest()
    opt.observe(0.3, forrester(0.3))  # someone reports another value meanwhile
    assert opt.suggest() == x  # still waiting for the asked point
    opt.observe(x, forrester(x))
    assert opt.suggest() != x


def test_default_start_is_the_middle_of_the_range() -> None:
    assert gradient({}).suggest() == 0.5
    sp = space_for("float", {"min": 1e-4, "max": 1.0, "log": True})
    assert gradient({}, space=sp).suggest() == pytest.approx(1e-2)
