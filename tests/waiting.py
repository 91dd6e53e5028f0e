"""Bounded waits shared by the watch and cache suites: every wait fails the test after
``TIMEOUT`` seconds instead of hanging (never reached when healthy)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

TIMEOUT = 10.0


async def take(watch: Any, count: int, timeout: float = TIMEOUT) -> list:
    """The next ``count`` updates of ``watch`` (bounded in time)."""
    got = []
    async with asyncio.timeout(timeout):
        while len(got) < count:
            got.append(await anext(watch))
    return got


async def until(predicate: Callable[[], Any], timeout: float = TIMEOUT) -> None:
    """Wait (bounded) until ``predicate()`` holds."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.002)
