"""Reading variables for a DSPy call, from async code and from the sync code DSPy runs.

DSPy calls programs synchronously, often in worker threads (``dspy.Evaluate``, teleprompters,
``asyncio.to_thread``). A binding must still read the *current* values there. In order:

1. the session's cache (coherent: kept exact by the watch stream; no thread crossing);
2. a :class:`~dspex_notebook.notebook.proxy.NotebookSession`: its IO thread (``Portal.run``);
3. a :class:`~dspex_notebook.SessionContext`: the loop it was bound on, when this thread is
   not that loop's (``run_coroutine_threadsafe``);
4. otherwise (a sync call on the session's own loop thread with values not cached) a clear
   error: blocking there would deadlock; use the async form (``await x.acall(...)``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from .._cache import MISS

WAIT_SECONDS = 30.0


class SessionAccess:
    """Sync and async reads/writes of one session's variables (a SessionContext or the
    notebook's proxy of one). Create it on the loop the session is used from."""

    def __init__(self, session: Any) -> None:
        for method in ("get_variables", "update_variables", "register_variable", "cached_value"):
            if not callable(getattr(session, method, None)):
                raise TypeError(f"expected a SessionContext (or the notebook's `session`), got "
                                f"{type(session).__name__} without {method}()")
        self.session = session
        try:
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None

    async def values(self, names: Iterable[str]) -> dict[str, Any]:
        """Current values (one round trip at most; cache hits when coherent)."""
        names = list(dict.fromkeys(names))
        if not names:
            return {}
        cached = self._cached(names)
        if cached is not None:
            return cached
        return dict(await self.session.get_variables(names))

    def values_sync(self, names: Iterable[str]) -> dict[str, Any]:
        """As :meth:`values`, from synchronous code (see the module docstring)."""
        names = list(dict.fromkeys(names))
        if not names:
            return {}
        cached = self._cached(names)
        if cached is not None:
            return cached
        portal = getattr(self.session, "portal", None)
        context = getattr(self.session, "context", None)
        if portal is not None and context is not None and not portal.in_portal_thread():
            return dict(portal.run(context.get_variables(names), WAIT_SECONDS))
        loop = self.loop
        if loop is not None and loop.is_running() and not _on_loop(loop):
            future = asyncio.run_coroutine_threadsafe(self.session.get_variables(names), loop)
            return dict(future.result(WAIT_SECONDS))
        raise RuntimeError(
            f"the values of {', '.join(map(repr, names))} are not cached and this synchronous call "
            "runs on the session's event loop, where waiting for the server would block it: "
            "use the async form (`await program.acall(...)`) or call it from a worker thread")

    def _cached(self, names: list[str]) -> dict[str, Any] | None:
        out = {}
        for name in names:
            value = self.session.cached_value(name)
            if value is MISS:
                return None
            out[name] = value
        return out

    async def write(self, updates: Mapping[str, Any], reason: str) -> None:
        """Write ``updates`` atomically; raise ValueError naming what the server refused."""
        if not updates:
            return
        results = await self.session.update_variables(dict(updates), {"source": reason})
        failed = {k: v for k, v in results.items() if v is not True}
        if failed:
            raise ValueError("; ".join(f"{k}: {v}" for k, v in failed.items()))


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
