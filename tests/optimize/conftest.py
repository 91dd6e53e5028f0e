"""Shared fixtures for the optimizer tests: the Forrester function and a bounded driver loop.

They are fixtures (not importable helpers) so the suite works under any pytest import mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from dspex_notebook._optimize import BaseOptimizer

Drive = Callable[..., list[Any]]


def _forrester(x: float) -> float:
    """(6x - 2)^2 sin(12x - 4): global minimum -6.02074 at 0.75725, local -0.98633 at 0.14259."""
    return (6 * x - 2) ** 2 * math.sin(12 * x - 4)


def _drive(
    opt: BaseOptimizer, objective: Callable[[Any], float | None], limit: int = 500
) -> list[Any]:
    """Run the ask/tell loop to the end (bounded, so a bug cannot hang the suite)."""
    proposals: list[Any] = []
    for _ in range(limit):
        x = opt.suggest()
        if x is None:
            return proposals
        proposals.append(x)
        opt.observe(x, objective(x))
    raise AssertionError(f"optimizer did not stop within {limit} evaluations")


@pytest.fixture
def forrester() -> Callable[[float], float]:
    return _forrester


@pytest.fixture
def drive() -> Drive:
    return _drive
