"""The ``grid_search`` optimizer."""

from __future__ import annotations

from typing import Any

import pytest

from dspex_notebook._optimize import GridSearchOptimizer, StopReason, make_optimizer, space_for

UNIT = space_for("float", {"min": 0.0, "max": 1.0}, "x")


def make_grid(*args: Any, **kwargs: Any) -> GridSearchOptimizer:
    opt = make_optimizer("grid", *args, **kwargs)
    assert isinstance(opt, GridSearchOptimizer)
    return opt


def test_eleven_point_grid_on_forrester_returns_exactly_0_8(forrester: Any, drive: Any) -> None:
    opt = make_optimizer(
        "grid_search", UNIT, {"n_points": 11}, direction="minimize", max_iterations=30
    )
    xs = drive(opt, forrester)
    assert xs == [i / 10 for i in range(11)]  # in order, exact grid values
    assert opt.best is not None and opt.best[0] == 0.8
    assert opt.best[1] == pytest.approx(-4.949130, abs=1e-6)
    assert opt.stop_reason == StopReason.GRID_EXHAUSTED == "grid_exhausted"
    assert opt.suggest() is None


def test_stop_reason_is_set_as_soon_as_the_last_point_is_observed() -> None:
    opt = make_grid(UNIT, {"values": [0.2, 0.4]}, direction="minimize")
    for x in (0.2, 0.4):
        assert opt.stop_reason is None
        assert opt.suggest() == x
        opt.observe(x, x)
    assert opt.stop_reason == "grid_exhausted"


def test_default_float_grid_fits_the_budget() -> None:
    assert make_grid(UNIT, direction="minimize", max_iterations=5).grid == (
        0.0, 0.25, 0.5, 0.75, 1.0,
    )
    assert len(make_grid(UNIT, direction="minimize").grid) == 11


def test_log_float_grid_is_geometric() -> None:
    sp = space_for("float", {"min": 1e-3, "max": 1.0, "log": True})
    grid = make_grid(sp, {"n_points": 4}, direction="minimize").grid
    assert grid[0] == 1e-3 and grid[-1] == 1.0
    assert grid[1:3] == pytest.approx((1e-2, 1e-1))


def test_integer_range_with_step_is_enumerated_in_order(drive: Any) -> None:
    sp = space_for("integer", {"min": 1, "max": 9, "step": 2}, "k")
    opt = make_grid(sp, direction="maximize", max_iterations=100)
    assert drive(opt, lambda k: -abs(k - 5)) == [1, 3, 5, 7, 9]
    assert opt.best == (5, 0) and opt.stop_reason == "grid_exhausted"


def test_long_integer_range_is_thinned_evenly_to_the_budget() -> None:
    sp = space_for("integer", {"min": 0, "max": 1000})
    grid = make_grid(sp, direction="minimize", max_iterations=11).grid
    assert grid == tuple(range(0, 1001, 100))


def test_choice_and_boolean_grids_are_every_option(drive: Any) -> None:
    sp = space_for("choice", {"choices": ["a", "b", "c"]})
    opt = make_grid(sp, direction="maximize")
    assert drive(opt, lambda c: {"a": 1.0, "b": 3.0, "c": 2.0}[c]) == ["a", "b", "c"]
    assert opt.best == ("b", 3.0)
    assert make_grid(space_for("boolean", {}), direction="minimize").grid == (
        False, True,
    )


def test_truncated_grid_stops_with_max_iterations(drive: Any) -> None:
    sp = space_for("choice", {"choices": list("abcdef")})
    opt = make_grid(sp, direction="minimize", max_iterations=4)
    assert isinstance(opt, GridSearchOptimizer) and opt.truncated
    assert drive(opt, lambda c: 0.0) == list("abcd")
    assert opt.stop_reason == "max_iterations"


def test_explicit_values_are_validated_and_kept_in_order(drive: Any) -> None:
    sp = space_for("integer", {"min": 0, "max": 10})
    opt = make_grid(sp, {"values": [7, 2.0, 5]}, direction="minimize")
    assert drive(opt, float) == [7, 2, 5]
    assert opt.best == (2, 2.0)


def test_shuffle_is_seeded_and_a_permutation() -> None:
    def points(seed: int) -> tuple[Any, ...]:
        cfg = {"shuffle": True, "n_points": 11}
        return make_grid(UNIT, cfg, direction="minimize", seed=seed).grid

    assert points(1) == points(1) and points(1) != points(2)
    assert sorted(points(1)) == [i / 10 for i in range(11)]


def test_failed_points_are_skipped_and_threshold_ignored(drive: Any) -> None:
    opt = make_optimizer(
        "grid", UNIT, {"n_points": 3}, direction="minimize", convergence_threshold=1.0
    )
    xs = drive(opt, lambda x: None if x == 0.5 else x)
    assert xs == [0.0, 0.5, 1.0] and opt.best == (0.0, 0.0)
    assert opt.stop_reason == "grid_exhausted" and not opt.converged(1.0)


def test_n_points_is_for_ordered_spaces_only() -> None:
    with pytest.raises(ValueError, match="n_points"):
        make_grid(space_for("boolean", {}), {"n_points": 2}, direction="minimize")
