"""The BaseOptimizer protocol, the registry and config validation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dspex_notebook._optimize import (
    BaseOptimizer,
    OptimizerConfigError,
    OptimizerRegistry,
    SearchSpaceError,
    StopReason,
    available_optimizers,
    make_optimizer,
    register_optimizer,
    space_for,
    unregister_optimizer,
)

UNIT = space_for("float", {"min": 0.0, "max": 1.0}, "x")


class Countdown(BaseOptimizer):
    """A user optimizer: proposes 0.1, 0.2, ... and gives up after ``n`` proposals."""

    name = "countdown"
    config_defaults = {"n": 3}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[Any, float | None]] = []

    def propose(self) -> float | None:
        k = len(self.history)
        return None if k >= self.config["n"] else round(0.1 * (k + 1), 10)

    def update(self, value: Any, objective: float | None) -> None:
        self.seen.append((value, objective))


class Plateau(BaseOptimizer):
    """Converges once two objectives in a row are equal (exercises the generic check)."""

    def propose(self) -> float:
        return float(self.rng.random())

    def converged(self, threshold: float) -> bool:
        h = [o.objective for o in self.history if o.objective is not None]
        return len(h) >= 2 and abs(h[-1] - h[-2]) <= threshold


@pytest.fixture
def registered() -> Iterator[None]:
    register_optimizer("countdown", Countdown)
    yield
    unregister_optimizer("countdown")


def test_user_subclass_runs_through_the_registry(registered: None, drive: Any) -> None:
    assert "countdown" in available_optimizers()
    opt = make_optimizer("countdown", UNIT, {"n": 2}, direction="maximize", seed=0)
    assert isinstance(opt, Countdown)
    assert drive(opt, lambda x: x * 10) == [0.1, 0.2]
    assert opt.stop_reason == "exhausted"
    assert opt.best == (0.2, 2.0)
    assert opt.seen == [(0.1, 1.0), (0.2, 2.0)]


def test_user_config_keys_are_checked(registered: None) -> None:
    with pytest.raises(OptimizerConfigError, match=r"unknown config key\(s\) 'm'; valid keys: n"):
        make_optimizer("countdown", UNIT, {"m": 1}, direction="minimize")


def test_reregistering_a_user_name_replaces_it_but_builtins_are_protected(registered: None) -> None:
    register_optimizer("countdown", Plateau)  # e.g. a notebook cell run twice
    assert isinstance(make_optimizer("countdown", UNIT, direction="minimize"), Plateau)
    with pytest.raises(OptimizerConfigError, match="built-in"):
        register_optimizer("bayesian", Countdown)
    with pytest.raises(OptimizerConfigError, match="built-in"):
        unregister_optimizer("grid")
    with pytest.raises(TypeError, match="BaseOptimizer"):
        register_optimizer("nope", object)  # type: ignore[arg-type]
    with pytest.raises(OptimizerConfigError, match="non-empty"):
        register_optimizer(" ", Countdown)


def test_unknown_optimizer_lists_known_names() -> None:
    with pytest.raises(OptimizerConfigError) as err:
        make_optimizer("optuna", UNIT, direction="minimize")
    assert "'optuna'" in str(err.value)
    for name in ("bayesian", "grid_search", "grid", "gradient"):
        assert name in str(err.value)


def test_separate_registries_do_not_share_user_classes() -> None:
    reg = OptimizerRegistry()
    reg.register("countdown", Countdown)
    assert "countdown" in reg.names() and "countdown" not in available_optimizers()
    assert isinstance(reg.create("countdown", UNIT, direction="minimize"), Countdown)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"direction": "up"}, "direction"),
        ({"direction": "minimize", "max_iterations": 0}, "max_iterations"),
        ({"direction": "minimize", "max_iterations": 2.5}, "max_iterations"),
        ({"direction": "minimize", "convergence_threshold": -1.0}, "convergence_threshold"),
    ],
)
def test_bad_run_settings(kwargs: dict, needle: str) -> None:
    with pytest.raises(OptimizerConfigError, match=needle):
        make_optimizer("bayesian", UNIT, **kwargs)


@pytest.mark.parametrize(
    ("name", "config", "needle"),
    [
        ("bayesian", {"xii": 0.1}, "valid keys: acquisition_function, initial_value, kappa"),
        ("bayesian", {"acquisition_function": "gp_hedge"}, "'ei', 'pi', 'ucb'"),
        ("bayesian", {"xi": -1}, "'xi' must be a number >= 0"),
        ("bayesian", {"n_initial_points": 0}, "n_initial_points"),
        ("bayesian", {"noise": "loud"}, "'auto', 'none'"),
        ("bayesian", {"initial_value": 0.2, "x0": 0.3}, "not both"),
        ("bayesian", {"initial_value": 3.0}, "outside"),
        ("grid_search", {"n_points": 1}, "n_points"),
        ("grid_search", {"values": []}, "non-empty list"),
        ("grid_search", {"values": [0.5, 2.0]}, "outside"),
        ("grid_search", {"values": [0.5], "n_points": 3}, "not both"),
        ("grid_search", {"n_points": 50}, "exceeds max_iterations"),
        ("grid_search", {"shuffle": "yes"}, "shuffle"),
        ("gradient", {"method": "adam"}, "'central', 'spsa'"),
        ("gradient", {"learning_rate": 0}, "learning_rate"),
        ("gradient", {"perturbation": 0.9}, "perturbation"),
        ("gradient", {"lr": 0.1}, "valid keys: initial_value, learning_rate, method"),
        ("bayesian", "xi=0.1", "must be a dict"),
    ],
)
def test_bad_configs_are_clear(name: str, config: Any, needle: str) -> None:
    with pytest.raises(ValueError, match=needle) as err:
        make_optimizer(name, UNIT, config, direction="minimize", max_iterations=20)
    assert isinstance(err.value, (OptimizerConfigError, SearchSpaceError))


def test_gradient_refuses_unordered_spaces() -> None:
    with pytest.raises(OptimizerConfigError, match="variable 'm'.*choice space"):
        make_optimizer("gradient", space_for("choice", {"choices": ["a"]}, "m"), direction="minimize")


def test_suggest_is_idempotent_until_observed() -> None:
    opt = make_optimizer("bayesian", UNIT, direction="minimize", seed=1)
    x = opt.suggest()
    assert opt.suggest() == x and opt.pending == x
    opt.observe(x, 1.0)
    assert opt.pending is None
    assert opt.suggest() != x


def test_budget_counts_failed_trials_and_stops_with_max_iterations(drive: Any) -> None:
    opt = make_optimizer("bayesian", UNIT, direction="minimize", seed=0, max_iterations=6)
    calls = iter([None, 1.0, float("nan"), 2.0, float("inf"), 0.5])
    xs = drive(opt, lambda x: next(calls))
    assert len(xs) == 6 and opt.stop_reason == StopReason.MAX_ITERATIONS == "max_iterations"
    assert [o.failed for o in opt.history] == [True, False, True, False, True, False]
    assert opt.best == (xs[5], 0.5)
    assert opt.suggest() is None


def test_all_failed_trials_leave_best_empty(drive: Any) -> None:
    opt = make_optimizer("bayesian", UNIT, direction="minimize", seed=0, max_iterations=8)
    xs = drive(opt, lambda x: None)
    assert len(xs) == 8 and opt.best is None
    assert len(set(xs)) == 8  # a failure is never simply retried


def test_maximize_tracks_the_largest_objective() -> None:
    opt = make_optimizer("grid", UNIT, {"values": [0.1, 0.5, 0.9]}, direction="maximize")
    for x, y in [(0.1, 3.0), (0.5, 7.0), (0.9, 5.0)]:
        assert opt.suggest() == x
        opt.observe(x, y)
    assert opt.best == (0.5, 7.0)
    assert opt.loss(7.0) == -7.0


def test_observe_validates_value_and_objective() -> None:
    opt = make_optimizer("bayesian", UNIT, direction="minimize", seed=0)
    with pytest.raises(SearchSpaceError, match="outside"):
        opt.observe(1.5, 0.0)
    with pytest.raises(TypeError, match="real number"):
        opt.observe(0.5, "0.3")  # type: ignore[arg-type]


def test_unsolicited_observations_are_recorded() -> None:
    opt = make_optimizer("bayesian", UNIT, direction="minimize", seed=0)
    opt.observe(0.25, -1.0)  # e.g. the variable's current value, measured beforehand
    assert opt.best == (0.25, -1.0) and len(opt.history) == 1


def test_stop_from_outside_and_first_reason_wins() -> None:
    opt = make_optimizer("bayesian", UNIT, direction="minimize", seed=0)
    opt.suggest()
    opt.stop()
    assert opt.stop_reason == "stopped" and opt.suggest() is None and opt.pending is None
    opt.stop("error")
    assert opt.stop_reason == "stopped"


def test_generic_convergence_check_uses_the_threshold(drive: Any) -> None:
    opt = Plateau(UNIT, direction="minimize", seed=0, convergence_threshold=0.5)
    drive(opt, lambda x: 1.0)
    assert opt.stop_reason == StopReason.CONVERGED and len(opt.history) == 2
    free = Plateau(UNIT, direction="minimize", seed=0, max_iterations=4)
    drive(free, lambda x: 1.0)  # no threshold: no convergence check
    assert free.stop_reason == "max_iterations"


@pytest.mark.parametrize("name", ["bayesian", "grid_search", "gradient"])
def test_same_seed_same_proposals(name: str, forrester: Any, drive: Any) -> None:
    def run(seed: int) -> list[float]:
        opt = make_optimizer(name, UNIT, {}, direction="minimize", seed=seed, max_iterations=12)
        return drive(opt, forrester)

    assert run(3) == run(3)
    if name == "bayesian":
        assert run(3) != run(4)


def test_spsa_is_seeded(forrester: Any, drive: Any) -> None:
    def run(seed: int) -> list[float]:
        opt = make_optimizer(
            "gradient", UNIT, {"method": "spsa", "x0": 0.3}, direction="minimize", seed=seed,
            max_iterations=20,
        )
        return drive(opt, forrester)

    assert run(5) == run(5) and run(5) != run(6)


def test_repr_is_informative() -> None:
    opt = make_optimizer("bayesian", UNIT, direction="maximize", seed=0)
    assert "BayesianOptimizer" in repr(opt) and "maximize" in repr(opt)


def test_the_subclass_example_in_the_docs_runs(drive: Any) -> None:
    import pathlib
    import re

    doc = pathlib.Path(__file__).parents[2] / "docs" / "optimizers.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)
    example = next(b for b in blocks if "class LocalRandomSearch" in b)
    scope: dict[str, Any] = {}
    try:
        exec(compile(example, str(doc), "exec"), scope)
        opt = scope["opt"]
        drive(opt, lambda t: -((t - 1.3) ** 2))
        assert opt.stop_reason in ("converged", "max_iterations")
        assert opt.best is not None and abs(opt.best[0] - 1.3) < 0.2
    finally:
        unregister_optimizer("local_random")


def test_setup_hook_runs_after_the_base_initialisation() -> None:
    from dspex_notebook.optimize import BaseOptimizer, space_for

    class Counting(BaseOptimizer):
        config_defaults = {"start": 0.5}

        def setup(self) -> None:
            # everything the base class resolves is there already
            self.start = self.config["start"]
            self.seen_direction = self.direction
            self.calls = 0

        def propose(self):
            self.calls += 1
            return self.start

    opt = Counting(space_for("float", {"min": 0, "max": 1}), {"start": 0.25},
                   direction="maximize", seed=3)
    assert (opt.start, opt.seen_direction) == (0.25, "maximize")
    assert opt.suggest() == 0.25 and opt.calls == 1
