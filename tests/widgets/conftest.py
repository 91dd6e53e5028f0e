"""Fixtures for bindings without a browser: ipywidgets' test comm (records every message a widget
sends to the frontend), a real server, and sessions living on real IO threads (portals), as in a
kernel."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from dspex_notebook._loop import Portal
from dspex_notebook._session import SessionContext
from dspex_notebook._wire.client import insecure_channel
from dspex_notebook.notebook.proxy import NotebookSession
from dspex_notebook.testing import running_server


@pytest.fixture(autouse=True)
def test_comm() -> Iterator[None]:
    from ipywidgets.widgets.tests.utils import setup_test_comm, teardown_test_comm

    setup_test_comm()
    try:
        yield
    finally:
        teardown_test_comm()


@pytest.fixture(scope="module")
def wserver():
    with running_server() as srv:
        yield srv


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


@pytest.fixture
def clients(wserver, request) -> Iterator[Any]:
    """``make()`` -> a new :class:`Client` on the test's own session id (closed afterwards)."""
    made: list[Client] = []
    sid = f"w-{request.node.name}"[:120]

    def make() -> Client:
        client = Client(wserver, sid)
        made.append(client)
        return client

    yield make
    if made:
        try:
            made[0].run(made[0].context.cleanup())
        except Exception:
            pass
    for client in made:
        client.close()


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
