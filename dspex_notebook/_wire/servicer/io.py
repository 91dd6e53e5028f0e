"""Export/import and revision RPCs: ``ExportVariables``, ``ImportVariables``,
``GetVariablesAt`` and ``RestoreSession``.

The heavy parts run in a worker thread (at most :data:`PARALLEL_DOCUMENTS` at once per server,
so concurrent 16 MiB imports cannot pile up memory): serializing an export document, parsing
and checking an imported one, decoding the values of a restore. Only the staging against the
in-memory view and the commit run on the event loop, as for every write.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ... import _budget
from ..._errors import InvalidArgument, ResourceLimitExceeded
from ..._proto import snakepit_bridge_pb2 as pb
from ...server import io, io_document, revisions
from ..encode import variable_message
from .base import ServicerBase, rpc

#: documents serialized or parsed at the same time (each may be up to a message's size)
PARALLEL_DOCUMENTS = 2


def _with_budget(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` with a work budget of its own: it runs off the loop, so it may do more
    than a request on the loop (still bounded, :data:`io_document.DOCUMENT_UNITS`)."""
    _budget.begin_request(io_document.DOCUMENT_UNITS)
    return fn(*args)


class IOHandlers(ServicerBase):
    """Export/import of a session's variables, and revisions."""

    _documents: asyncio.Semaphore | None = None

    async def _off_loop(self, fn: Any, *args: Any) -> Any:
        if self._documents is None:
            self._documents = asyncio.Semaphore(PARALLEL_DOCUMENTS)
        async with self._documents:
            return await asyncio.to_thread(_with_budget, fn, *args)

    @rpc
    async def ExportVariables(self, request, principal, raw):
        store = self.store
        variables, history, revision = io.export_snapshot(
            store, principal, request.session_id, request.pattern, request.include_history)
        sections = io.export_sections(store, request.session_id, variables,
                                      request.include_dependencies)
        data = await self._off_loop(
            io_document.build, store.store_id, request.session_id, revision, request.pattern,
            variables, history if request.include_history else None, sections, store._clock())
        limit = store.limits.max_message_bytes - 1024
        if len(data) > limit:
            raise ResourceLimitExceeded(
                f"the export of {len(variables)} variables would be {len(data)} bytes, over the "
                f"{limit}-byte message limit; narrow filter_pattern (or leave out the history)")
        return pb.ExportVariablesResponse(document_json=data, revision=revision,
                                          variable_count=len(variables))

    @rpc
    async def ImportVariables(self, request, principal, raw):
        store = self.store
        strategy = request.merge_strategy or "replace"
        if strategy not in io.STRATEGIES:
            raise InvalidArgument(f"merge_strategy must be one of {', '.join(io.STRATEGIES)}, "
                                  f"got {strategy[:40]!r}")
        store._session(principal, request.session_id)  # before any parsing work
        doc = await self._off_loop(io_document.parse, bytes(request.document_json), store.limits)
        commit, summary = io.stage_import(store, principal, request.session_id, doc, strategy)
        revision = 0
        if not request.dry_run:
            if summary["errors"]:
                raise io.refusal(summary)
            if commit.puts or commit.deletes:
                revision = store._commit(commit, principal)
        summary.update(dry_run=request.dry_run, revision=revision)
        return pb.ImportVariablesResponse(summary_json=json.dumps(summary), revision=revision)

    @rpc
    async def GetVariablesAt(self, request, principal, raw):
        store = self.store
        rows = revisions.rows_at(store, principal, request.session_id, request.revision)
        idents = list(request.variable_identifiers)
        asked = set(idents)
        wanted = [r for r in rows if not asked or r.var_id in asked or r.name in asked]
        variables = await self._off_loop(revisions.decode_rows, wanted)
        for var in variables:
            var.metadata = revisions.metadata_of(store, var)
        found, missing = revisions.pick(variables, idents) if idents else (
            {v.name: v for v in variables}, [])
        reply = pb.GetVariablesAtResponse(revision=request.revision,
                                          compact_revision=store.compact_revision,
                                          missing_variables=missing)
        for ident, var in found.items():
            reply.variables[ident].CopyFrom(variable_message(var, raw))
        return reply

    @rpc
    async def RestoreSession(self, request, principal, raw):
        store = self.store
        rows = revisions.rows_at(store, principal, request.session_id, request.revision)
        then = await self._off_loop(revisions.decode_rows, rows)
        plan = revisions.stage_restore(store, principal, request.session_id, request.revision,
                                       then)
        revision = 0
        if not request.dry_run and (plan.commit.puts or plan.commit.deletes):
            revision = store._commit(plan.commit, principal)
        summary = {**plan.summary, "dry_run": request.dry_run, "revision": revision}
        return pb.RestoreSessionResponse(summary_json=json.dumps(summary), revision=revision)
