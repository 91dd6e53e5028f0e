"""Fixtures for bindings without a browser: ipywidgets' test comm (records every message a widget
sends to the frontend), a real server, and sessions living on real IO threads (portals), as in a
kernel."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from wg_helpers import Client

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
