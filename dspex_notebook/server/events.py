"""Committed changes as events, and the hub that fans them out to watchers (no grpc here).

The commit pipeline publishes exactly one :class:`EventBatch` per committed revision, after the
backend commit returned and the in-memory view was updated, in revision order. A
:class:`Subscription` selects one session (and optionally some variable names) and holds a
bounded queue of ``(batch, selected events)``; the transport (``_wire/watch.py``) drains it and
encodes each batch once for all subscribers that selected the same events (``batch.memo``).

Bounded memory: a subscription whose queue exceeds ``max_pending`` batches is marked
``overflowed`` and its consumer is told to resync (the transport ends the stream with "resync
required"), instead of the server growing without bound for a watcher that stopped reading.
Everything runs on the server's event loop thread, so nothing here locks.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .backends.base import HistoryRow, StoredVariable


@dataclass(frozen=True, slots=True)
class Event:
    """One variable's change in a committed revision.

    ``kind`` is ``register``, ``set``, ``delete`` or ``initial`` (a snapshot entry); ``new`` is
    the state after the change (None for a delete), ``old`` the state before (None when unknown
    or for a registration of a new name).
    """

    kind: str
    revision: int
    session_id: str
    new: StoredVariable | None
    old: StoredVariable | None
    principal: str
    source: str
    metadata: dict[str, str]
    ts: float

    @property
    def current(self) -> StoredVariable:
        """``new``, or ``old`` for a delete: the id, name and type of the variable."""
        var = self.new if self.new is not None else self.old
        assert var is not None
        return var

    @property
    def name(self) -> str:
        return self.current.name


@dataclass(slots=True)
class EventBatch:
    """All events of one revision of one session (a batch is never split)."""

    revision: int
    session_id: str
    events: tuple[Event, ...]
    #: per-publication scratch space for the transport's encodings (dies with the batch)
    memo: dict[Any, Any] = field(default_factory=dict)


def row_variable(row: HistoryRow) -> StoredVariable:
    """A change-log row as the variable state it recorded."""
    return StoredVariable(
        row.var_id, row.session_id, row.name, row.type, row.type_url, row.data, row.binary,
        row.constraints_json, {}, row.changed_by, row.version, row.revision, 0, row.ts,
    )


def batches_from_rows(rows: Iterable[HistoryRow],
                      previous: Callable[[str, int], StoredVariable | None]) -> list[EventBatch]:
    """Rebuild event batches from change-log rows (watch resume). ``previous(var_id, rev)``
    gives the state before ``rev`` for a variable's first row here (its old value).

    The batches equal what :meth:`View.apply` published live: within a revision the deletes
    come first (the log stores a commit's puts before its deletes), and a registration that
    replaced a variable of the same name has the replaced state as its old value. Otherwise a
    watcher resuming across ``register(..., replace=True)`` would see "register x, delete x"
    and conclude that x is gone.
    """
    batches: list[EventBatch] = []
    last: dict[str, StoredVariable] = {}
    group: list[HistoryRow] = []

    def event(row: HistoryRow, replaced: dict[str, StoredVariable]) -> Event:
        principal = row.changed_by
        source = row.metadata.get("source", principal)
        state = row_variable(row)
        if row.op == "delete":
            last.pop(row.var_id, None)
            return Event("delete", row.revision, row.session_id, None, state, principal, source,
                         row.metadata, row.ts)
        old = last.get(row.var_id)
        if old is None:
            old = replaced.get(row.name) if row.op == "register" else previous(row.var_id, row.revision)
        last[row.var_id] = state
        return Event(row.op, row.revision, row.session_id, state, old, principal, source,
                     row.metadata, row.ts)

    def flush() -> None:
        if not group:
            return
        deletes = [r for r in group if r.op == "delete"]
        replaced = {r.name: row_variable(r) for r in deletes}
        events = [event(r, replaced) for r in deletes]
        events += [event(r, replaced) for r in group if r.op != "delete"]
        batches.append(EventBatch(group[0].revision, group[0].session_id, tuple(events)))
        group.clear()

    for row in rows:
        if group and (row.revision != group[0].revision or row.session_id != group[0].session_id):
            flush()
        group.append(row)
    flush()
    return batches


class Subscription:
    """A watcher's selection and bounded queue. ``names`` None = the whole session."""

    __slots__ = ("session_id", "names", "queue", "max_pending", "overflowed", "closed",
                 "_waiter", "last_sent", "progress_interval", "task", "busy", "upstream",
                 "guard", "denied",
                 "__weakref__")

    def __init__(self, session_id: str, names: frozenset[str] | None, max_pending: int,
                 progress_interval: float,
                 upstream: Callable[[str], frozenset[str]] | None = None) -> None:
        self.session_id = session_id
        self.names = names
        #: with ``include_upstream``: name -> the names that depend on it (transitively); the
        #: subscription also selects events of variables its names depend on
        self.upstream = upstream
        self.queue: deque[Any] = deque()
        self.max_pending = max_pending
        self.overflowed = False
        self.closed = False
        self._waiter: asyncio.Future[None] | None = None
        self.last_sent = time.monotonic()
        self.progress_interval = progress_interval
        #: the task draining this subscription. It is never cancelled on overflow: grpc.aio
        #: ends a cancelled handler without any status, so a watcher that stopped reading would
        #: wait forever instead of learning it must resync. A consumer stuck writing holds one
        #: message; once the write completes (the client reads again, or the connection goes)
        #: it finds the subscription overflowed and ends the stream with "resync required".
        self.task: asyncio.Task[Any] | None = None
        #: True while the consumer is busy with an item (writing it to the network)
        self.busy = False
        #: a watch of another session's variables: ``guard()`` says why it must end, or None
        #: (``server/access.py``); ``denied`` is that reason once the store ended it
        self.guard: Callable[[], str | None] | None = None
        self.denied: str | None = None

    def select(self, batch: EventBatch) -> tuple[int, ...] | None:
        """Indices of the batch's events this subscription wants (None: all of them)."""
        names = self.names
        if names is None:
            return None
        upstream = self.upstream
        if upstream is None:
            return tuple(i for i, e in enumerate(batch.events) if e.name in names)
        return tuple(i for i, e in enumerate(batch.events)
                     if e.name in names or not names.isdisjoint(upstream(e.name)))

    def push(self, item: Any) -> None:
        if self.overflowed or self.closed:
            return
        if len(self.queue) >= self.max_pending:
            self.overflowed = True
            self.queue.clear()  # the consumer resyncs; queued batches are of no use any more
        else:
            self.queue.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        """The next item; None when the subscription overflowed or was closed."""
        while not self.queue:
            if self.overflowed or self.closed:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self.overflowed or self.closed:
            return None
        return self.queue.popleft()

    def close(self) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


#: marker item: "tell the consumer the store is at this revision" (idle progress)
@dataclass(frozen=True, slots=True)
class Progress:
    revision: int


class EventHub:
    """Subscriptions by session; :meth:`publish` fans a batch out to the matching ones."""

    def __init__(self, max_pending: int = 1024, tick: float = 0.1) -> None:
        self.max_pending = max_pending
        self._by_session: dict[str, dict[Subscription, None]] = {}
        self._tick = tick
        self._ticker: asyncio.Task[None] | None = None
        self._head: Callable[[], int] = lambda: 0

    def set_head(self, head: Callable[[], int]) -> None:
        """Where progress notifications read the current revision from (the store)."""
        self._head = head

    def subscribe(self, session_id: str, names: Iterable[str] | None = None,
                  progress_interval: float = 5.0,
                  upstream: Callable[[str], frozenset[str]] | None = None) -> Subscription:
        sub = Subscription(session_id, None if names is None else frozenset(names),
                           self.max_pending, progress_interval, upstream)
        self._by_session.setdefault(session_id, {})[sub] = None
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(self._progress_loop())
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        sub.close()
        subs = self._by_session.get(sub.session_id)
        if subs is not None:
            subs.pop(sub, None)
            if not subs:
                del self._by_session[sub.session_id]

    def publish(self, batch: EventBatch) -> None:
        subs = self._by_session.get(batch.session_id)
        if not subs:
            return
        for sub in list(subs):
            selected = sub.select(batch)
            if selected == ():
                continue
            sub.push((batch, selected))

    def watchers(self, session_id: str, name: str | None = None) -> int:
        """Open subscriptions on the session (that select ``name``, when given)."""
        subs = self._by_session.get(session_id, {})
        if name is None:
            return len(subs)
        return sum(1 for s in subs if s.names is None or name in s.names)

    def close_session(self, session_id: str) -> None:
        for sub in list(self._by_session.get(session_id, {})):
            self.unsubscribe(sub)

    def close(self) -> None:
        for session_id in list(self._by_session):
            self.close_session(session_id)
        if self._ticker is not None:
            self._ticker.cancel()

    async def _progress_loop(self) -> None:
        """Every ``tick``: an idle subscription whose interval elapsed gets a progress item."""
        while self._by_session:
            await asyncio.sleep(self._tick)
            now = time.monotonic()
            head = self._head()
            for subs in list(self._by_session.values()):
                for sub in list(subs):
                    if not sub.queue and now - sub.last_sent >= sub.progress_interval:
                        sub.last_sent = now
                        sub.push(Progress(head))
