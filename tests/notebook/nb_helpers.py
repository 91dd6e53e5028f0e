"""Helpers shared by the notebook-layer tests (imported as ``nb_helpers``)."""

from __future__ import annotations

import threading
from typing import Any

EXT = "dspex_notebook"


def dspex_threads(exclude: set[threading.Thread] | frozenset = frozenset()) -> list[str]:
    """Names of live ``dspex-*`` threads (IO thread, embedded servers) not in ``exclude``.

    grpc's global poller thread (``..._poll_wrapper``) is grpc's and is not counted.
    """
    return sorted(t.name for t in threading.enumerate()
                  if t.name.startswith("dspex") and t not in exclude and t.is_alive())


def close_ipython_loop() -> None:
    """Close the event loop IPython keeps for top-level ``await`` outside a kernel (it never
    closes it itself; a new one is made on the next use), so none is left for the
    interpreter's exit to complain about."""
    from IPython.core import async_helpers

    loop = getattr(async_helpers, "_asyncio_event_loop", None)
    if loop is not None and not loop.is_closed() and not loop.is_running():
        loop.close()


def runtime_files() -> list[str]:
    from dspex_notebook._runtime import runtime_dir

    folder = runtime_dir()
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def nb_session(ip) -> Any:
    """The ``session`` object the extension put in the user namespace."""
    return ip.user_ns["session"]


def server_revision(ip) -> int:
    """The store revision, read through the extension's own session."""
    session = nb_session(ip)
    return session.portal.run(session.context.ping())["revision"]
