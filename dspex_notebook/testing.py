"""Helpers for testing code that uses dspex_notebook (and for this package's own tests).

    from dspex_notebook.testing import running_server, session_for

    with running_server() as srv:              # real grpc.aio server on 127.0.0.1:<free port>
        async with session_for(srv, "s1") as session:
            await session.register_variable("x", "float", 1.0)
"""

from __future__ import annotations

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
                                      token=server.token, **options)
            self.ctx._owns_channel = True
            return await self.ctx.initialize()

        async def __aexit__(self, *exc: Any) -> None:
            await self.ctx.close()

    return _Ctx()
