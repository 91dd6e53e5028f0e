"""Watch streams and statistics: ``Watch`` (dspex), ``WatchVariables`` (v0.4.x), ``GetVariableStats``.

How a ``Watch`` keeps "no gap, no duplicate" (docs/watch.md): the subscription to live events
and the head revision H are taken in one synchronous step on the server loop, where every
commit also runs, so every commit after H reaches the subscription and none before it does.
Then the stream sends, in order: ``created`` (revision H); with ``include_initial`` the
snapshot at H; with ``start_revision`` S the change log (S-1, H] read in chunks; then live
batches. A batch is one response (never split). An idle stream gets ``progress`` responses; a
subscription that overflows (the client stopped reading) ends with ``canceled`` "resync
required", a start below the compaction watermark with ``canceled`` "compacted".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from ... import _budget
from ..._errors import AccessDenied, Compacted, InvalidArgument, ResourceLimitExceeded
from ..._proto import snakepit_bridge_pb2 as pb
from ...server.events import EventBatch, Progress
from ..encode import batch_response, control_response, initial_response, variable_message
from .base import ServicerBase, rpc, stream

#: variables per snapshot response (keeps each response far below the message limit)
SNAPSHOT_CHUNK = 500
#: change-log rows read per step while catching up (the loop is yielded between steps)
CATCH_UP_ROWS = 1000
MAX_IDENTIFIERS = 10_000


class WatchHandlers(ServicerBase):
    """The streaming RPCs and statistics."""

    def _subscribe(self, request: Any, principal: str, progress_ms: int = 0,
                   upstream: bool = False) -> tuple[Any, int]:
        if len(request.variable_identifiers) > MAX_IDENTIFIERS:
            raise ResourceLimitExceeded(
                f"watch of {len(request.variable_identifiers)} identifiers (limit {MAX_IDENTIFIERS})"
            )
        interval = max(progress_ms or 5000, 100) / 1000
        return self.store.subscribe(principal, request.session_id,
                                    list(request.variable_identifiers), interval, upstream)

    @stream
    async def Watch(self, request, principal, raw, context) -> AsyncIterator[bytes]:
        store = self.store
        if request.start_revision < 0:
            raise InvalidArgument(f"start_revision must be >= 0, got {request.start_revision}")
        store_id = store.store_id
        if request.store_id and request.store_id != store_id:
            yield control_response(store_id, store.revision, canceled=True,
                                   cancel_reason="store changed",
                                   compact_revision=store.compact_revision)
            return
        start = 0 if request.include_initial else request.start_revision
        if start and start - 1 < store.compact_revision:
            yield control_response(store_id, store.revision, canceled=True, cancel_reason="compacted",
                                   compact_revision=store.compact_revision)
            return
        sub, head = self._subscribe(request, principal, request.progress_interval_ms,
                                    request.include_upstream)
        sub.task = asyncio.current_task()
        try:
            yield control_response(store_id, head, created=True,
                                   compact_revision=store.compact_revision)
            if request.include_initial:
                variables = store.snapshot(sub.session_id, sub.names)
                for i in range(0, len(variables), SNAPSHOT_CHUNK):
                    yield initial_response(store_id, head, variables[i: i + SNAPSHOT_CHUNK], raw)
            elif start:
                after = start - 1
                while after < head:
                    try:
                        batches, after = store.changes(sub.session_id, after, head, CATCH_UP_ROWS)
                    except Compacted as exc:
                        yield control_response(store_id, store.revision, canceled=True,
                                               cancel_reason="compacted",
                                               compact_revision=exc.compact_revision)
                        return
                    for batch in batches:
                        if sub.names is not None:
                            selected = sub.select(batch)
                            if not selected:
                                continue
                        else:
                            selected = None
                        yield batch_response(store_id, batch, selected, raw, sub.upstream)
                    await asyncio.sleep(0)  # a long catch-up must not hold the loop
            async for message in self._live(sub, store_id, raw):
                yield message
        finally:
            store.unsubscribe(sub)

    async def _live(self, sub: Any, store_id: str, raw: bool) -> AsyncIterator[bytes]:
        while True:
            item = await sub.get()
            if item is None:
                if sub.denied is not None:  # a revoked 'observe' (server/access.py)
                    raise AccessDenied(sub.denied)
                if sub.overflowed:
                    yield control_response(
                        store_id, self.store.revision, canceled=True,
                        cancel_reason=f"resync required: the watcher fell more than "
                                      f"{sub.max_pending} revisions behind",
                        compact_revision=self.store.compact_revision)
                return
            if isinstance(item, Progress):
                message = control_response(store_id, item.revision, progress=True)
            else:
                if sub.guard is not None:  # another session's variable: still allowed?
                    _budget.begin_request()  # each delivery's check is its own unit of work
                    reason = sub.guard()
                    if reason is not None:
                        raise AccessDenied(reason)
                batch, selected = item
                message = batch_response(store_id, batch, selected, raw, sub.upstream)
            sub.busy = True
            yield message
            sub.busy = False
            sub.last_sent = time.monotonic()

    @stream
    async def WatchVariables(self, request, principal, raw, context) -> AsyncIterator[Any]:
        """The v0.4.x stream: one ``VariableUpdate`` per changed variable (no revisions)."""
        sub, _head = self._subscribe(request, principal)
        sub.task = asyncio.current_task()
        try:
            if request.include_initial_values:
                for var in self.store.snapshot(request.session_id, sub.names):
                    update = pb.VariableUpdate(variable_id=var.id, variable=variable_message(var, raw),
                                               update_source=var.source, update_type="initial_value")
                    update.timestamp.GetCurrentTime()
                    yield update
            while True:
                item = await sub.get()
                if item is None:
                    if sub.denied is not None:
                        raise AccessDenied(sub.denied)
                    return
                if isinstance(item, Progress):
                    continue
                if sub.guard is not None:
                    _budget.begin_request()
                    if (reason := sub.guard()) is not None:
                        raise AccessDenied(reason)
                batch, selected = item
                for update in _v04_updates(batch, selected, raw):
                    yield update
        finally:
            self.store.unsubscribe(sub)

    @rpc
    def GetVariableStats(self, request, principal, raw):
        stats, missing, watchers = self.store.stats(principal, request.session_id,
                                                    list(request.variable_identifiers))
        reply = pb.GetVariableStatsResponse(missing_variables=missing, revision=self.store.revision,
                                            session_watchers=watchers)
        for ident, entry in stats.items():
            reply.stats[ident].CopyFrom(pb.VariableStats(**entry))
        return reply


def _v04_updates(batch: EventBatch, selected: tuple[int, ...] | None, raw: bool) -> list[Any]:
    events = batch.events if selected is None else [batch.events[i] for i in selected]
    out = []
    for ev in events:
        if ev.new is None:
            continue  # v0.4.x has no delete update
        update = pb.VariableUpdate(
            variable_id=ev.new.id, variable=variable_message(ev.new, raw), update_source=ev.source,
            update_metadata=ev.metadata,
            update_type="value_change" if ev.kind == "set" else "constraint_change",
        )
        update.timestamp.FromNanoseconds(int(ev.ts * 1e9))
        out.append(update)
    return out
