"""Helpers shared by the browser tests (imported as ``br_helpers``)."""

from __future__ import annotations

import time
from typing import Any

from dspex_notebook._loop import Portal
from dspex_notebook._session import SessionContext
from dspex_notebook._wire.client import insecure_channel


def run_all(page: Any) -> None:
    # don't return the promise: evaluate() would wait for every cell, busy ones included
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")


class Other:
    """Another client of the dspex server (its own IO thread), as a second user's kernel."""

    def __init__(self, server: Any, session_id: str) -> None:
        self.portal = Portal(name="dspex-browser-test-io")

        async def make() -> SessionContext:
            ctx = SessionContext(session_id, insecure_channel(server.address), token=server.token,
                                 close_channel=True)
            return await ctx.initialize()

        self.context = self.portal.run(make())

    def run(self, coro: Any, timeout: float = 10.0) -> Any:
        return self.portal.run(coro, timeout)

    def get(self, name: str) -> Any:
        return self.run(self.context.get_variable(name, bypass_cache=True))

    def close(self) -> None:
        try:
            self.run(self.context.cleanup())
            self.run(self.context.close())
        finally:
            self.portal.close()


def wait_for(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")

