"""``session`` in the notebook: a SessionContext that lives on the IO thread.

The real :class:`~dspex_notebook.SessionContext` (and its grpc.aio channel) belongs to the
portal's loop. :class:`NotebookSession` offers the same coroutine methods to cells: each call hops
to the IO loop with ``asyncio.wrap_future`` so ``await session.get_variable("x")`` works with
top-level await while the kernel loop stays responsive. Cache hits are answered here, in the
kernel thread, without crossing threads.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from .._cache import MISS
from .._loop import Portal
from .._session import SessionContext


class NotebookSession:
    """Cell-facing proxy of a SessionContext running on a :class:`Portal`.

    Every public coroutine method of SessionContext is available with the same signature;
    :attr:`context` is the underlying SessionContext (use it only from the IO loop).
    """

    def __init__(self, context: SessionContext, portal: Portal) -> None:
        self.context = context
        self.portal = portal

    @property
    def session_id(self) -> str:
        return self.context.session_id

    async def get_variable(self, name: str, default: Any = None, bypass_cache: bool = False) -> Any:
        """See :meth:`SessionContext.get_variable`; cache hits do not leave this thread."""
        if not bypass_cache:
            value = self.context._cache.get(name)
            if value is not MISS:
                return value
        # after a miss here, don't look again on the IO thread (it would count a second miss)
        return await self.portal.call(self.context.get_variable(name, default, bypass_cache=True))

    def get_cache_info(self) -> dict[str, Any]:
        return self.context.get_cache_info()

    def set_cache_config(self, ttl: float | None = None, max_size: int | None = None,
                         eviction_policy: str | None = None) -> None:
        self.context.set_cache_config(ttl, max_size, eviction_policy)

    def known_names(self) -> list[str]:
        """Variable names this client has seen (for tab completion; no round trip)."""
        return sorted({k.name for k in self.context._known.values()})

    def __repr__(self) -> str:
        return f"<NotebookSession session_id={self.session_id!r} (IO thread {self.portal.name})>"


def _forward(name: str, method: Any) -> Any:
    @functools.wraps(method)
    async def call(self: NotebookSession, *args: Any, **kwargs: Any) -> Any:
        return await self.portal.call(getattr(self.context, name)(*args, **kwargs))

    return call


for _name, _method in inspect.getmembers(SessionContext, inspect.iscoroutinefunction):
    if not _name.startswith("_") and _name not in NotebookSession.__dict__ and _name not in (
        "connect",
    ):
        setattr(NotebookSession, _name, _forward(_name, _method))
