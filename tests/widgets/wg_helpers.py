"""Helpers shared by the widget tests (imported as ``wg_helpers``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from dspex_notebook._loop import Portal
from dspex_notebook._session import SessionContext
from dspex_notebook._wire.client import insecure_channel
from dspex_notebook.notebook.proxy import NotebookSession


class Client:
    """A SessionContext on its own IO thread, like one kernel's ``session``."""

    def __init__(self, server: Any, session_id: str) -> None:
        self.portal = Portal(name="dspex-test-io")

        async def make() -> SessionContext:
            ctx = SessionContext(session_id, insecure_channel(server.address), token=server.token,
                                 close_channel=True)
            return await ctx.initialize()

        self.context = self.portal.run(make())
        self.session = NotebookSession(self.context, self.portal)

    def run(self, coro: Any, timeout: float = 10.0) -> Any:
        return self.portal.run(coro, timeout)

    def sync(self) -> None:
        """Let the IO loop process everything handed to it so far."""
        self.run(asyncio.sleep(0))
        self.run(asyncio.sleep(0))

    def close(self) -> None:
        try:
            self.run(self.context.close())
        finally:
            self.portal.close()


def wait_until(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` (bounded); fail with ``what`` if it never holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


def sent_values(widget: Any) -> list[Any]:
    """Values the kernel sent to the frontend in ``update`` messages (not echo_update)."""
    out = []
    for args, kwargs in widget.comm.messages:
        data = kwargs.get("data") or (args[0] if args else {})
        if data.get("method") == "update" and "value" in data.get("state", {}):
            out.append(data["state"]["value"])
    return out
