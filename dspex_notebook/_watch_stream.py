"""The server ``Watch`` stream of a session, shared by every hub that may share it.

A :class:`~._watch.WatchHub` belongs to one :class:`~dspex_notebook.SessionContext`. Contexts
made over the *same* ``grpc.aio`` channel, with the same token, for the same session and with
the same clock and backoff, would each open an identical stream carrying identical events. They
share one :class:`SessionStream` instead: the server sends each event once to the process (not
once per context), the client decodes it once, and the stream applies it to every member hub's
cache and watches, in the same order and within the same loop step. This departs from "one
stream per SessionContext" (docs/design.md, "Contexts on one channel share the session's
stream"): N contexts on one channel cost the server one stream message per write instead of N.

Contexts with their own channels (everything :meth:`SessionContext.connect` makes) never share:
the key holds the channel's identity, so the stream is exactly the per-context stream it was.

A hub that joins a stream that has already delivered events up to revision S cannot have seen
them: its cached entries read before S are dropped and later replies read before S are not
installed (:attr:`VariableCache.read_floor`), so the cache is exact from S on, like its peers'.

The resume logic (from the last revision + 1, backoff with jitter, duplicates dropped, relist
on "compacted" / "resync required" / "store changed") is the one docs/watch.md describes.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING, Any

from ._errors import DspexError, SessionNotFoundError, Unsupported
from ._wire.status import BridgeUnavailable

if TYPE_CHECKING:
    from ._watch import WatchHub

log = logging.getLogger("dspex_notebook.watch")

#: open streams by sharing key (see :func:`_key`); a stream leaves when its last hub does
_STREAMS: dict[tuple[Any, ...], SessionStream] = {}


class _Restart(Exception):
    """Internal: reopen the stream now (after a resync)."""


def _key(hub: WatchHub) -> tuple[Any, ...]:
    session = hub._session
    bridge = session._bridge
    # id()s are safe: a stream keeps its hubs, hence their channel and clock, alive
    return (id(bridge.channel), bridge.token, session.session_id, id(hub._clock), hub._backoff,
            hub._progress_ms)


class SessionStream:
    """One ``Watch`` stream of a session and the hubs it feeds (see the module docstring)."""

    @classmethod
    def join(cls, hub: WatchHub) -> SessionStream:
        """The stream ``hub`` shares (opened now if none is), with ``hub`` a member."""
        key = _key(hub)
        stream = _STREAMS.get(key)
        if stream is None:
            stream = _STREAMS[key] = cls(key, hub)
        stream._admit(hub)
        return stream

    def __init__(self, key: tuple[Any, ...], hub: WatchHub) -> None:
        self._key = key
        self._clock = hub._clock
        self._backoff = hub._backoff
        self._progress_ms = hub._progress_ms
        self.status = "idle"  # idle | connecting | live | reconnecting | unsupported | closed
        self.revision = 0  # every event up to here has been received
        self.store_id = ""
        self.resumes = 0  # streams reopened after a break (for tests and stats)
        self._target = 0
        self._hubs: dict[WatchHub, None] = {}
        self._task: asyncio.Task[None] | None = None

    def _admit(self, hub: WatchHub) -> None:
        if hub not in self._hubs:
            if self.revision:  # events up to here went to the others, not to this hub
                hub._session._cache.raise_read_floor(self.revision)
            self._hubs[hub] = None
            hub._set_status(self.status)
            if self.status == "live":
                hub._coherent(self.revision)
        if self.status == "unsupported":
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="dspex-watch-stream")

    async def leave(self, hub: WatchHub) -> None:
        """Take ``hub`` off; the last one to leave closes the stream."""
        self._hubs.pop(hub, None)
        if self._hubs:
            return
        if _STREAMS.get(self._key) is self:
            del _STREAMS[self._key]
        self.status = "closed"
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass

    # ------------------------------------------------------------------------------------------

    def _set_status(self, status: str) -> None:
        if status != self.status:
            self.status = status
            for hub in list(self._hubs):
                hub._set_status(status)

    def _members(self) -> list[WatchHub]:
        return list(self._hubs)

    async def _run(self) -> None:
        delay = self._backoff[0]
        first = True
        while self._hubs and self.status not in ("closed", "unsupported"):
            self._set_status("connecting" if first else "reconnecting")
            hubs = self._members()
            session = hubs[0]._session  # any member's bridge: they share channel and token
            try:
                if not self.revision:  # a fresh start: values cached before it may be older
                    reads = [r for r in (h._session._cache.oldest_read_revision() for h in hubs)
                             if r]
                    self.revision = min(reads) if reads else 0
                start = self.revision + 1 if self.revision else 0
                async for msg in session._bridge.watch(
                        session.session_id, start_revision=start, store_id=self.store_id,
                        progress_interval_ms=self._progress_ms, include_upstream=True):
                    self._handle(msg)
                    delay = self._backoff[0]
                    first = False
            except _Restart:
                delay = 0.0
            except Unsupported:
                log.info("server has no Watch RPC: the cache falls back to its TTL")
                self._set_status("unsupported")
                return
            except asyncio.CancelledError:
                raise
            except SessionNotFoundError:
                delay = self._backoff[1]  # cleaned up elsewhere; try again later, slowly
            except BridgeUnavailable as exc:
                log.debug("watch stream broke (%s); resuming from revision %d", exc, self.revision)
            except (DspexError, ConnectionError, RuntimeError) as exc:
                # not the network: e.g. an event this client cannot decode. Resuming at the same
                # revision would fail forever, so start afresh and let the watches relist.
                log.warning("watch stream failed at revision %d (%s): resyncing", self.revision, exc)
                self.revision = 0
                self._resync("resync")
            for hub in self._members():
                hub._session._cache.coherent_revision = -1
            if not self._hubs or self.status in ("closed", "unsupported"):
                return
            self._set_status("reconnecting")
            self.resumes += 1
            if delay:
                await self._clock.sleep(delay * (0.5 + random.random()))
            delay = min(max(delay, self._backoff[0]) * 2, self._backoff[1])

    def _handle(self, msg: Any) -> None:
        """Apply one stream message to every member."""
        if msg.canceled:
            reason = msg.cancel_reason or "canceled"
            log.info("watch canceled by the server (%s): relisting", reason)
            if reason == "store changed" or msg.store_id != self.store_id:
                self.store_id = msg.store_id
                for hub in self._members():
                    hub._session._catalog.clear()
            self.revision = 0
            self._resync(reason)
            raise _Restart
        if msg.created:
            if msg.revision < self.revision:  # the store went back in time (restored file)
                self.revision = 0
                self._resync("revision went backwards")
            self.store_id = msg.store_id
            if not self.revision:
                self.revision = msg.revision
            self._target = msg.revision
        elif msg.progress:
            self.revision = max(self.revision, msg.revision)
        elif msg.updates:
            if msg.revision <= self.revision:
                return  # a duplicate (resumed too early): already applied
            for hub in self._members():
                hub._apply(msg.revision, msg.updates)
            self.revision = msg.revision
        if self.status == "live" or self.revision >= self._target:
            for hub in self._members():  # the cache is exact before anyone hears "live"
                hub._coherent(self.revision)
            self._set_status("live")

    def _resync(self, reason: str) -> None:
        for hub in self._members():
            hub._resync(reason)
