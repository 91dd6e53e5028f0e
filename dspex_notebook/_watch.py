"""Watches: one hub per session multiplexes a server stream into per-watch queues.

:class:`WatchHub` holds ONE ``Watch`` stream per :class:`~dspex_notebook.SessionContext`, for
every variable of the session (contexts on one channel, with one token, for one session share
it: :mod:`._watch_stream`). It keeps the client cache coherent (each revision is applied to
the cache and catalog before any watch sees it) and fans updates out to :class:`Watch` objects.
After a dropped stream or a server restart it resumes from its last revision + 1 with
exponential backoff and jitter, drops duplicates (revision ≤ last seen), and when the server
answers "compacted", "resync required" or "store changed" it starts afresh and tells every
watch to relist (updates of kind ``resync``, and a ``delete`` for a variable the watch had
delivered that the relist no longer finds: its delete event may be compacted away).

A :class:`Watch` is an async iterator, an async context manager, and (so that
``asyncio.create_task(session.watch_variable("x"))`` from the spec works) an awaitable that
consumes the watch and calls its :meth:`Watch.on_update` callbacks. ``include_initial`` is a
snapshot at revision R followed by every change after R: the watch is subscribed before the
snapshot is read, and events at or below R are dropped, so a racing write is neither lost nor
delivered twice. ``throttle_ms`` / ``debounce_ms`` coalesce to the latest value per variable
(intermediate values may be skipped; ``old_value`` is the value before the first coalesced
change). Time comes from an injectable :class:`Clock`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from ._errors import DspexError, SessionNotFoundError
from ._types import VariableUpdate
from ._watch_stream import SessionStream

if TYPE_CHECKING:
    from ._session import SessionContext

log = logging.getLogger("dspex_notebook.watch")

__all__ = ["Clock", "MonotonicClock", "Watch", "WatchHub"]


class Clock(Protocol):
    """Where watches read time from (``dspex_notebook.testing.FakeClock`` in tests)."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    """Real time: ``time.monotonic`` and ``asyncio.sleep``."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


_MONOTONIC = MonotonicClock()


class WatchHub:
    """A context's part of the session's watch stream: its cache, catalog and watches.

    The stream itself (resume, backoff, the server's stream messages) is a
    :class:`~._watch_stream.SessionStream`, shared with the hubs of other contexts on the same
    channel, token and session; ``status``, ``revision``, ``store_id`` and ``resumes`` are the
    stream's.
    """

    def __init__(self, session: SessionContext, *, clock: Clock | None = None,
                 backoff: tuple[float, float] = (0.05, 2.0), progress_interval_ms: int = 2000) -> None:
        self._session = session
        self._clock: Clock = clock or _MONOTONIC
        self._backoff = backoff
        self._progress_ms = progress_interval_ms
        self.status = "idle"  # idle | connecting | live | reconnecting | unsupported | closed
        self._stream: SessionStream | None = None
        self._live: asyncio.Event | None = None
        self._watches: dict[Watch, None] = {}
        self._listeners: list[Callable[[str], Any]] = []

    @property
    def revision(self) -> int:
        """Every event up to this revision has been received (0 before the stream opened)."""
        return self._stream.revision if self._stream is not None else 0

    @property
    def store_id(self) -> str:
        return self._stream.store_id if self._stream is not None else ""

    @property
    def resumes(self) -> int:
        """Streams reopened after a break (for tests and stats)."""
        return self._stream.resumes if self._stream is not None else 0

    # ------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Open (or join) the stream in the background (idempotent)."""
        if self.status in ("unsupported", "closed"):
            return
        if self._live is None:
            self._live = asyncio.Event()
        stream = self._stream
        if stream is not None and stream.status != "closed":
            stream._admit(self)  # (re)starts its task if it ended
        else:
            self._stream = SessionStream.join(self)

    async def wait_live(self, timeout: float | None = None) -> bool:
        """Wait until the stream is connected and caught up; False on timeout or when the
        server has no watch support."""
        self.start()
        if self.status == "live":
            return True
        if self.status in ("unsupported", "closed") or self._live is None:
            return False
        try:
            await asyncio.wait_for(self._live.wait(), timeout)
        except TimeoutError:
            return False
        return self.status == "live"

    def add_listener(self, callback: Callable[[str], Any]) -> Callable[[], None]:
        """Call ``callback(status)`` on every status change; returns a function that removes it."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def _set_status(self, status: str) -> None:
        if status == self.status or self.status == "closed":
            return
        self.status = status
        if self._live is not None:
            if status == "live":
                self._live.set()
            else:
                self._live.clear()
        for cb in list(self._listeners):
            try:
                cb(status)
            except Exception:
                log.exception("watch status listener failed")

    async def close(self) -> None:
        self._set_status("closed")
        for w in list(self._watches):
            w._shutdown()
        stream, self._stream = self._stream, None
        self._session._cache.coherent_revision = -1
        if stream is not None:
            await stream.leave(self)

    # ------------------------------------------------------------------------------------------

    def _add(self, watch: Watch) -> None:
        self._watches[watch] = None
        self.start()

    def _remove(self, watch: Watch) -> None:
        self._watches.pop(watch, None)

    def watches_of(self, task: asyncio.Task[Any]) -> list[Watch]:
        """The watches ``task`` created, runs (``create_task(watch)``) or is reading."""
        return [w for w in self._watches
                if w._owner is task or w._reader is task or task.get_coro() is w]

    # --- called by the stream

    def _coherent(self, revision: int) -> None:
        cache = self._session._cache
        if revision > cache.coherent_revision:
            cache.coherent_revision = revision

    def _apply(self, revision: int, updates: list[VariableUpdate]) -> None:
        session = self._session
        cache, catalog = session._cache, session._catalog
        cache.begin()
        try:
            for u in updates:
                if u.kind == "delete":
                    cache.note_revision(u.name, revision)
                    cache.invalidate(u.name, reason="deleted")
                    known = catalog.get(u.name)
                    if known is not None and known.id == u.variable_id:
                        catalog.forget(u.name)
                    continue
                if u.kind == "register":
                    catalog.learn(u.variable_id, u.name, u.type, u.constraints or {})
                if cache.update(u.name, u.value, revision) and cache._subs:
                    cache._notify(u.name, "changed")
        finally:
            cache.end(revision)
        for w in list(self._watches):
            for u in updates:
                w._push(u)

    def _resync(self, reason: str) -> None:
        self._session._cache.clear(reason)
        for w in list(self._watches):
            w._request_snapshot("resync")


class Watch:
    """Updates of some variables of a session. See the module docstring.

    Use as ``async for update in watch``, ``async with watch``, ``await watch.aclose()``, or
    ``asyncio.create_task(watch)`` with :meth:`on_update` callbacks.

    ``filter_fn`` sees writes only (kind ``set``); ``initial``, ``register``, ``delete`` and
    ``resync`` updates always pass.

    ``include_upstream``: also deliver the changes of the variables the watched ones depend on
    (transitively, as the server's dependency graph stands when the change is sent), marked
    with :attr:`VariableUpdate.upstream_of`; they come after the watch started (no snapshot)
    and are not filtered by ``filter_fn``.
    """

    def __init__(self, hub: WatchHub, names: Iterable[str], *, include_initial: bool = True,
                 filter_fn: Callable[..., bool] | None = None, filter_with_name: bool = False,
                 throttle_ms: int = 0, debounce_ms: int = 0, clock: Clock | None = None,
                 max_queue: int = 10_000, include_upstream: bool = False) -> None:
        self._hub = hub
        self.names = list(dict.fromkeys(names))
        if not self.names:
            raise ValueError("watch_variables needs at least one variable name")
        if throttle_ms < 0 or debounce_ms < 0:
            raise ValueError("throttle_ms and debounce_ms must be >= 0")
        self._keys = set(self.names)
        self._upstream = include_upstream
        self._filter = filter_fn
        self._filter_with_name = filter_with_name
        self._throttle = throttle_ms / 1000
        self._debounce = debounce_ms / 1000
        self._clock: Clock = clock or hub._clock
        self._max_queue = max_queue
        self._queue: deque[tuple[VariableUpdate, float]] = deque()
        self._ready: deque[VariableUpdate] = deque()
        self._pending: dict[str, tuple[VariableUpdate, float]] = {}  # name -> (update, due)
        self._last_emit: dict[str, float] = {}
        self._floor: dict[str, int] = {}
        #: name -> the last update delivered for a variable that exists (a resync that no
        #: longer finds it reports its deletion)
        self._present: dict[str, VariableUpdate] = {}
        self._snapshot_kind: str | None = "initial" if include_initial else None
        # without a snapshot, "from now on": after every revision this client has seen
        self._floor_all = -1 if include_initial else max(hub.revision, hub._session.last_revision)
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._callbacks: list[Callable[[VariableUpdate], Any]] = []
        self._runner: Any = None
        #: the task last waiting in ``__anext__`` (so cancel_watch(task) finds what it reads)
        self._reader: asyncio.Task[Any] | None = None
        try:
            self._owner: asyncio.Task[Any] | None = asyncio.current_task()
        except RuntimeError:
            self._owner = None
        hub._add(self)

    @property
    def status(self) -> str:
        """The hub's stream: ``connecting``, ``live``, ``reconnecting``, ``unsupported``,
        ``closed`` (or ``closed`` once this watch is)."""
        return "closed" if self._closed else self._hub.status

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------------------------------
    # hub side

    def _push(self, update: VariableUpdate) -> None:
        if self._closed:
            return
        if update.name in self._keys or update.variable_id in self._keys:
            if update.upstream_of:  # the hub's annotation; this is the variable itself
                update = replace(update, upstream_of=())
        elif self._upstream and update.upstream_of:
            of = tuple(n for n in update.upstream_of if n in self._keys)
            if not of:
                return
            update = replace(update, upstream_of=of)
        else:
            return
        if len(self._queue) >= self._max_queue:  # the consumer stopped reading: relist later
            self._queue.clear()
            self._request_snapshot("resync")
            return
        self._queue.append((update, self._clock.now()))
        self._wake()

    def _request_snapshot(self, kind: str) -> None:
        self._queue.clear()
        self._pending.clear()
        self._snapshot_kind = kind
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------------------------------------
    # consumer side

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> VariableUpdate:
        self._reader = asyncio.current_task()
        while True:
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            if self._closed:
                raise StopAsyncIteration
            if self._snapshot_kind is not None:
                await self._take_snapshot()
                continue
            update, wait = self._next_ready()
            if update is not None:
                if update.kind == "delete":
                    self._present.pop(update.name, None)
                else:
                    self._present[update.name] = update
                return update
            await self._wait(wait)

    async def _take_snapshot(self) -> None:
        kind = self._snapshot_kind
        session = self._hub._session
        while not self._closed:
            await self._hub.wait_live()
            try:
                found, _missing, revision = await session._bridge.get_variables(
                    session.session_id, self.names)
                break
            except SessionNotFoundError:
                raise
            except DspexError as exc:  # server gone: wait for the hub to reconnect
                log.debug("watch snapshot failed (%s); retrying", exc)
                await self._clock.sleep(self._hub._backoff[0])
        else:
            return
        if self._snapshot_kind != kind:  # asked again meanwhile: take the newer one
            return
        self._snapshot_kind = None
        self._floor_all = max(self._floor_all, revision)  # upstream changes: after the snapshot
        seen: set[str] = set()
        names = {var.name for var in found.values()}
        # A variable this watch had delivered but the relist no longer finds was deleted
        # while the watch had lost its place (possibly before a compaction, so no delete
        # event will ever come): say so, as a delete "at" the relist's revision.
        for name, last in list(self._present.items()):
            if name not in names:
                self._floor[name] = revision
                self._ready.append(replace(
                    last, value=None, old_value=last.value, kind="delete", revision=revision,
                    metadata={}, constraints=None))
        for ident in self.names:
            var = found.get(ident)
            if var is None:
                self._floor[ident] = revision
                continue
            self._floor[var.name] = revision
            if var.name in seen:
                continue
            seen.add(var.name)
            self._keys.add(var.name)
            self._ready.append(VariableUpdate(
                variable_id=var.id, name=var.name, value=var.value, old_value=None, kind=kind or "",
                revision=revision, version=var.version, type=var.type, metadata=dict(var.metadata),
                timestamp=var.updated_at, source=var.source, constraints=dict(var.constraints)))

    def _accept(self, update: VariableUpdate) -> bool:
        if update.revision <= self._floor.get(update.name, self._floor_all):
            return False
        # Only writes are filtered. A registration is no change of a value: it may have no old
        # value or one of another type, and a filter such as the spec's
        # ``abs(new - old) > 0.05`` must not break the watch on a re-register.
        if self._filter is None or update.kind != "set" or update.upstream_of:
            return True
        try:
            if self._filter_with_name:
                return bool(self._filter(update.name, update.old_value, update.value))
            return bool(self._filter(update.old_value, update.value))
        except Exception as exc:
            self._error = exc
            return False

    def _next_ready(self) -> tuple[VariableUpdate | None, float | None]:
        """The next update to deliver, or ``(None, seconds to wait or None for "until one
        arrives")``."""
        if self._ready:
            return self._ready.popleft(), None
        queue = self._queue
        if not self._throttle and not self._debounce:
            while queue:
                update = queue.popleft()[0]
                if self._accept(update):
                    return update, None
                if self._error is not None:
                    return None, 0
            return None, None
        while queue:
            update, arrived = queue.popleft()
            if not self._accept(update):
                if self._error is not None:
                    return None, 0
                continue
            prior = self._pending.get(update.name)
            if prior is not None and prior[0].kind != "delete":
                update = _merged(prior[0], update)
            due = max(arrived + self._debounce,
                      self._last_emit.get(update.name, -1e18) + self._throttle)
            self._pending[update.name] = (update, due)
        if not self._pending:
            return None, None
        name, (update, due) = min(self._pending.items(), key=lambda kv: kv[1][1])
        now = self._clock.now()
        if due <= now:
            del self._pending[name]
            self._last_emit[name] = now
            return update, None
        return None, due - now

    async def _wait(self, timeout: float | None) -> None:
        if timeout == 0:
            return
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        try:
            if timeout is None:
                await waiter
                return
            sleeper = loop.create_task(self._clock.sleep(timeout))
            try:
                await asyncio.wait((waiter, sleeper), return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
        finally:
            self._waiter = None

    # ------------------------------------------------------------------------------------------
    # lifecycle

    def _shutdown(self) -> None:
        if not self._closed:
            self._closed = True
            self._hub._remove(self)
            self._wake()

    async def aclose(self) -> None:
        """Stop watching (idempotent); a pending ``async for`` ends."""
        self._shutdown()

    async def __aenter__(self) -> Watch:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._shutdown()

    def on_update(self, callback: Callable[[VariableUpdate], Any]) -> Watch:
        """Call ``callback(update)`` (function or coroutine function) for each update when the
        watch is awaited or run as a task; returns the watch."""
        self._callbacks.append(callback)
        return self

    async def _drain(self) -> int:
        count = 0
        try:
            async for update in self:
                count += 1
                for cb in self._callbacks:
                    result = cb(update)
                    if inspect.isawaitable(result):
                        await result
        finally:
            self._shutdown()
        return count

    # the coroutine protocol, so that asyncio.create_task(watch) works as the spec shows
    def _coro(self) -> Any:
        if self._runner is None:
            self._runner = self._drain()
        return self._runner

    def __await__(self) -> Any:
        return self._coro().__await__()

    def send(self, value: Any) -> Any:
        return self._coro().send(value)

    def throw(self, *args: Any) -> Any:
        return self._coro().throw(*args)

    def close(self) -> None:
        """Stop watching (synchronous form of :meth:`aclose`)."""
        self._shutdown()
        runner = self._runner
        # A runner that a task drives (or that is running this very call, from a callback)
        # ends by itself now that the watch is shut down and returns its count; closing it
        # under the task would make the task's next step fail with "cannot reuse already
        # awaited coroutine". Only a runner that never started is closed here.
        if runner is not None and inspect.getcoroutinestate(runner) == inspect.CORO_CREATED:
            runner.close()

    def __repr__(self) -> str:
        return f"<Watch {self.names!r} {self.status}>"


def _merged(first: VariableUpdate, latest: VariableUpdate) -> VariableUpdate:
    """``latest`` with the ``old_value`` of the first coalesced change."""
    return replace(latest, old_value=first.old_value)
