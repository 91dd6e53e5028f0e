"""Helpers for testing code that uses dspex_notebook (and for this package's own tests).

    from dspex_notebook.testing import running_server, session_for, FakeClock

    with running_server() as srv:              # real grpc.aio server on 127.0.0.1:<free port>
        async with session_for(srv, "s1") as session:
            await session.register_variable("x", "float", 1.0)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from typing import Any

from .server.runner import MEMORY, EmbeddedServer


@contextlib.contextmanager
def running_server(db: str | os.PathLike[str] = MEMORY, **options: Any) -> Iterator[EmbeddedServer]:
    """Start an :class:`EmbeddedServer` (in-memory store, no runtime file by default)."""
    options.setdefault("write_runtime_file", False)
    server = EmbeddedServer(db, **options).start()
    try:
        yield server
    finally:
        server.stop()


def session_for(server: EmbeddedServer, session_id: str = "test", **options: Any):
    """An initialized :class:`SessionContext` on ``server`` (use with ``async with``)."""
    from ._session import SessionContext
    from ._wire.client import insecure_channel

    class _Ctx:
        async def __aenter__(self) -> SessionContext:
            self.ctx = SessionContext(session_id, insecure_channel(server.address),
                                      token=server.token, close_channel=True, **options)
            return await self.ctx.initialize()

        async def __aexit__(self, *exc: Any) -> None:
            await self.ctx.close()

    return _Ctx()


class FakeClock:
    """A clock for watches (``throttle_ms``, ``debounce_ms``, backoff) that only moves when told.

    ``now()`` is the fake time; ``await clock.sleep(s)`` returns once :meth:`advance` has moved
    the time past its deadline::

        clock = FakeClock()
        session = SessionContext(..., clock=clock)
        clock.advance(0.1)   # wakes every sleeper whose deadline passed
    """

    def __init__(self, start: float = 0.0) -> None:
        self.t = start
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.t + seconds, future))
        await future

    def advance(self, seconds: float) -> None:
        """Move time forward and wake the sleepers that are due."""
        self.t += seconds
        due = [(d, f) for d, f in self._sleepers if d <= self.t]
        self._sleepers = [(d, f) for d, f in self._sleepers if d > self.t]
        for _, future in due:
            if not future.done():
                future.set_result(None)
