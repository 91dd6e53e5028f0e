"""A watch of variables that are not (known to be) this session's: another session's, by id.

The session's :class:`~._watch.WatchHub` stream covers only its own session. A watch naming
ids this client does not know as its own gets a :class:`DirectFeed` instead: its own
``Watch`` stream for those ids (the server checks ``observe``, docs/api.md "Permissions"),
which takes the initial values from the stream itself (``observe`` does not imply ``read``),
resumes after a dropped connection from its last revision, and ends the watch with the
server's error when access ends: iterating raises :class:`~._errors.AccessDenied` ("no longer
has 'observe' permission ...") once, instead of reconnecting forever. The cache is not fed:
another session's values are never cached under this session's names.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING, Any

from ._errors import DspexError
from ._wire.status import BridgeUnavailable

if TYPE_CHECKING:
    from ._session import SessionContext
    from ._watch import Clock, Watch

log = logging.getLogger("dspex_notebook.watch")


class DirectFeed:
    """The hub of one :class:`~._watch.Watch` (same interface as ``WatchHub`` where the
    watch uses it)."""

    def __init__(self, session: SessionContext, clock: Clock, backoff: tuple[float, float],
                 include_initial: bool) -> None:
        self._session = session
        self._clock = clock
        self._backoff = backoff
        self._include_initial = include_initial
        self.status = "idle"
        self.revision = 0
        self.store_id = ""
        self._watch: Watch | None = None
        self._task: asyncio.Task[None] | None = None

    # --- the part of WatchHub's interface a Watch uses

    def _add(self, watch: Watch) -> None:
        self._watch = watch
        watch._snapshot_kind = None  # the stream sends the initial values itself
        watch._floor_all = -1
        self._task = asyncio.get_running_loop().create_task(self._run(), name="dspex-watch-direct")

    def _remove(self, watch: Watch) -> None:
        self._watch = None
        self.status = "closed"
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def wait_live(self, timeout: float | None = None) -> bool:
        return self.status == "live"

    def watches_of(self, task: asyncio.Task[Any]) -> list[Watch]:
        w = self._watch
        return [w] if w is not None and (w._owner is task or w._reader is task) else []

    # --- the stream

    async def _run(self) -> None:
        delay = self._backoff[0]
        bridge = self._session._bridge
        while self._watch is not None:
            self.status = "connecting" if not self.revision else "reconnecting"
            watch = self._watch
            try:
                start = self.revision + 1 if self.revision else 0
                async for msg in bridge.watch(
                        self._session.session_id, watch.names, start_revision=start,
                        store_id=self.store_id,
                        include_initial=not self.revision and self._include_initial):
                    delay = self._backoff[0]
                    self._handle(msg)
            except asyncio.CancelledError:
                raise
            except BridgeUnavailable as exc:
                log.debug("direct watch broke (%s); resuming after %d", exc, self.revision)
            except DspexError as exc:  # refused (AccessDenied, NotFound, ...): final
                self._fail(exc)
                return
            if self._watch is None:
                return
            await self._clock.sleep(delay * (0.5 + random.random()))
            delay = min(max(delay, self._backoff[0]) * 2, self._backoff[1])

    def _handle(self, msg: Any) -> None:
        watch = self._watch
        if watch is None:
            return
        if msg.canceled:  # compacted / resync required / store changed: start afresh
            self.revision = 0
            self.store_id = msg.store_id
            self._include_initial = True  # the next stream sends the values again
            return
        if msg.created:
            self.store_id = msg.store_id
            if not self.revision:
                self.revision = msg.revision
            self.status = "live"
            return
        if msg.progress:
            self.revision = max(self.revision, msg.revision)
            return
        if msg.updates and (msg.initial or msg.revision > self.revision):
            for update in msg.updates:
                watch._push(update)
            self.revision = max(self.revision, msg.revision)

    def _fail(self, exc: DspexError) -> None:
        self.status = "closed"
        watch = self._watch
        if watch is not None:
            watch._error = exc  # raised once by the watch's iterator, which then ends
            watch._closed = True
            watch._wake()
            self._watch = None
