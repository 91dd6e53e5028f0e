"""Session and variable RPCs: decode requests, call the :class:`Store`, encode replies.

Replies are assembled from cached serialized variables (``_wire/encode.py``) where that saves
building messages: a bulk read joins bytes instead of copying sub-messages.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from ... import _codec
from ..._errors import DspexError, InvalidArgument, ResourceLimitExceeded
from ..._proto import snakepit_bridge_pb2 as pb
from ..._values import VariableSpec
from ...server import history
from ...server.backends.base import StoredVariable
from ...server.prepared import prepare_spec, prepare_value
from .. import pbwire
from ..encode import variable_message
from .base import Deferred, ServicerBase, rpc

#: variables encoded per step of a ListVariables reply (the loop is yielded between steps)
LIST_CHUNK = 250


class VariableHandlers(ServicerBase):
    """Sessions and variables: the unary RPCs of ``snakepit.bridge.BridgeService``."""

    # ------------------------------------------------------------------------------------------
    # decoding

    @staticmethod
    def _constraints(request: Any) -> Any:
        if not request.constraints_json:
            return None
        try:
            return json.loads(request.constraints_json)
        except ValueError as exc:
            raise InvalidArgument(
                f"{request.name!r}: constraints_json is not valid JSON: {exc}"
            ) from None
        except RecursionError:
            raise InvalidArgument(f"{request.name!r}: constraints_json is nested too deeply") from None

    def _decode(self, any_value: Any, binary: bytes) -> Any:
        """Decode a request value, refusing oversize ones before any parsing work."""
        # every field counts (a huge type_url too); ByteSize avoids copying it
        self.store.limits.check_value(any_value.ByteSize() + len(binary), len(any_value.value))
        _, raw = _codec.decode(any_value.type_url, any_value.value, binary)
        return raw

    def _prepared(self, var: StoredVariable | None, any_value: Any, binary: bytes) -> Any:
        """A request value decoded, and checked and encoded for ``var`` (``Store.peek``)."""
        raw_value = self._decode(any_value, binary)
        return raw_value if var is None else prepare_value(var, raw_value)

    def _targets(self, session_id: str, idents: Any) -> dict[str, StoredVariable | None]:
        peek = self.store.peek
        return {ident: peek(session_id, ident) for ident in idents}

    def _decode_updates(self, values: Mapping[str, Any], binaries: Mapping[str, bytes],
                        targets: Mapping[str, StoredVariable | None]) -> dict[str, Any]:
        """``{identifier: value}`` of a batch, prepared for ``targets``; an entry that cannot
        be decoded maps to its :class:`DspexError`, which the store raises (atomic) or
        reports for that entry."""
        updates: dict[str, Any] = {}
        for ident, any_value in values.items():
            try:
                updates[ident] = self._prepared(targets.get(ident), any_value,
                                                binaries.get(ident, b""))
            except DspexError as exc:
                updates[ident] = exc
        for ident in binaries:
            if ident not in updates:
                updates[ident] = InvalidArgument(f"binary update for {ident!r} has no value/type_url")
        return updates

    def _reply_fits(self, size: int, what: str) -> None:
        """Refuse a reply the transport would refuse anyway, with advice instead of a cutoff."""
        limit = self.store.limits.max_message_bytes
        if size > limit:
            raise ResourceLimitExceeded(
                f"{what} reply would be {size} bytes, over the {limit}-byte message limit; "
                "read fewer variables per call (e.g. get_variables in chunks, or a narrower "
                "list pattern)"
            )

    # ------------------------------------------------------------------------------------------
    # health & sessions

    @rpc
    def Ping(self, request, principal, raw):
        reply = pb.PingResponse(
            message=f"pong: {request.message}", store_id=self.store.store_id,
            revision=self.store.revision, server_version=self._version,
        )
        reply.server_time.GetCurrentTime()
        return reply

    @rpc
    def InitializeSession(self, request, principal, raw):
        rev = self.store.init_session(principal, request.session_id, dict(request.metadata))
        return pb.InitializeSessionResponse(success=True, revision=rev)

    @rpc
    def CleanupSession(self, request, principal, raw):
        removed, rev = self.store.cleanup_session(principal, request.session_id)
        return pb.CleanupSessionResponse(success=True, resources_cleaned=removed, revision=rev)

    @rpc
    def GetSession(self, request, principal, raw):
        row, count = self.store.get_session(principal, request.session_id)
        reply = pb.GetSessionResponse(session_id=row.session_id, metadata=row.metadata,
                                      variable_count=count, tool_count=0)
        reply.created_at.FromNanoseconds(int(row.created_at * 1e9))
        reply.last_accessed_at.FromNanoseconds(int(row.last_access * 1e9))
        return reply

    @rpc
    def ListSessions(self, request, principal, raw):
        reply = pb.ListSessionsResponse(revision=self.store.revision)
        for row, count in self.store.list_sessions(principal):
            item = reply.sessions.add(session_id=row.session_id, variable_count=count)
            item.last_accessed_at.FromNanoseconds(int(row.last_access * 1e9))
        return reply

    @rpc
    def Heartbeat(self, request, principal, raw):
        reply = pb.HeartbeatResponse(session_valid=self.store.heartbeat(principal, request.session_id))
        reply.server_time.GetCurrentTime()
        return reply

    # ------------------------------------------------------------------------------------------
    # variables

    def _spec(self, request: Any) -> VariableSpec:
        """A registration request as a (not yet validated) spec; the store validates it."""
        value = self._decode(request.initial_value, request.initial_binary_value)
        return VariableSpec(request.name, request.type, value, self._constraints(request),
                            dict(request.metadata), request.replace)

    def _prepare_register(self, request, principal):
        return lambda: prepare_spec(self._spec(request))

    @rpc(prepare=_prepare_register)
    def RegisterVariable(self, request, principal, raw, spec):
        depends_on = {request.name: list(request.dependencies)} if request.dependencies else None
        var = self.store.register_many(principal, request.session_id, [spec],
                                       depends_on=depends_on)[0]
        return pb.RegisterVariableResponse(
            success=True, variable_id=var.id, revision=var.mod_revision,
            variable=variable_message(var, raw),
        )

    def _prepare_registers(self, request, principal):
        targets = self._targets(request.session_id, request.updates)
        return lambda: ([prepare_spec(self._spec(r)) for r in request.variables],
                        self._decode_updates(request.updates, request.binary_updates, targets))

    @rpc(prepare=_prepare_registers)
    def RegisterVariables(self, request, principal, raw, prepared):
        specs, updates = prepared
        depends_on = {r.name: list(r.dependencies) for r in request.variables if r.dependencies}
        created = self.store.register_many(principal, request.session_id, specs, updates,
                                           dict(request.update_metadata), depends_on)
        revision = self.store.revision
        return Deferred(lambda: pb.BatchRegisterVariablesResponse(
            success=True, variable_ids={v.name: v.id for v in created}, revision=revision,
            variables=[variable_message(v, raw) for v in created],
        ).SerializeToString())

    @rpc
    def GetVariable(self, request, principal, raw):
        # GetVariableResponse{1: variable, 3: revision}, assembled from the cached bytes
        var = self.store.get(principal, request.session_id, request.variable_identifier)
        return pbwire.field_bytes(1, self.encoder.variable_bytes(var, raw)) + pbwire.field_varint(
            3, self.store.revision)

    def _prepare_set(self, request, principal):
        var = self.store.peek(request.session_id, request.variable_identifier)
        return lambda: self._prepared(var, request.value, request.binary_value)

    @rpc(prepare=_prepare_set)
    def SetVariable(self, request, principal, raw, value):
        expected = request.expected_version if request.HasField("expected_version") else None
        var = self.store.set(principal, request.session_id, request.variable_identifier, value,
                             dict(request.metadata), expected)
        return pb.SetVariableResponse(success=True, new_version=var.version,
                                      revision=var.mod_revision)

    async def _shared_SetVariable(self, request, principal, raw, value):
        """SetVariable on a shared (etcd) store: the commit is awaited, not blocking."""
        expected = request.expected_version if request.HasField("expected_version") else None
        var = await self.store.set_pipelined(principal, request.session_id,
                                             request.variable_identifier, value,
                                             dict(request.metadata), expected)
        return pb.SetVariableResponse(success=True, new_version=var.version,
                                      revision=var.mod_revision)

    @rpc
    def GetVariables(self, request, principal, raw):
        # BatchGetVariablesResponse{1: map<string, Variable>, 2: missing, 3: revision}, assembled
        # from each variable's cached serialized form: no per-item message copies.
        found, missing = self.store.get_many(principal, request.session_id,
                                             list(request.variable_identifiers))
        if request.values_only and raw:
            return self._packed_values(found, missing)
        variable_bytes = self.encoder.variable_bytes
        parts = [
            pbwire.map_entry(1, ident.encode(), variable_bytes(var, raw))
            for ident, var in found.items()
        ]
        parts += [pbwire.field_bytes(2, m.encode()) for m in missing]
        parts.append(pbwire.field_varint(3, self.store.revision))
        reply = b"".join(parts)
        self._reply_fits(len(reply), "GetVariables")
        return reply

    def _packed_values(self, found: Mapping[str, StoredVariable], missing: list[str]) -> bytes:
        """The ``values_only`` reply: one JSON document plus concatenated raw arrays."""
        elements = self.encoder.packed_elements(found.values())
        # an empty array contributes no bytes (its count is 0)
        blobs = [var.binary for var in found.values() if var.binary]
        parts = [pbwire.field_bytes(2, m.encode()) for m in missing]
        parts.append(pbwire.field_varint(3, self.store.revision))
        parts.append(pbwire.field_bytes(4, b"[" + b",".join(elements) + b"]"))
        if blobs:
            parts.append(pbwire.field_bytes(5, b"".join(blobs)))
        reply = b"".join(parts)
        self._reply_fits(len(reply), "GetVariables")
        return reply

    def _prepare_sets(self, request, principal):
        targets = self._targets(request.session_id, request.updates)
        return lambda: self._decode_updates(request.updates, request.binary_updates, targets)

    @rpc(prepare=_prepare_sets)
    def SetVariables(self, request, principal, raw, updates):
        versions, errors, rev = self.store.set_many(
            principal, request.session_id, updates, dict(request.metadata), request.atomic
        )
        return pb.BatchSetVariablesResponse(success=not errors, errors=errors,
                                            new_versions=versions, revision=rev)

    async def _shared_SetVariables(self, request, principal, raw, updates):
        """SetVariables on a shared (etcd) store: the commit is awaited, not blocking."""
        versions, errors, rev = await self.store.set_many_pipelined(
            principal, request.session_id, updates, dict(request.metadata), request.atomic)
        return pb.BatchSetVariablesResponse(success=not errors, errors=errors,
                                            new_versions=versions, revision=rev)

    @rpc
    async def ListVariables(self, request, principal, raw):
        # ListVariablesResponse{1: repeated Variable, 2: revision}, joined from each variable's
        # cached serialized form (building 10,000 messages per call held the loop ~0.2 s),
        # LIST_CHUNK at a time with the loop yielded in between (the listed variables are
        # immutable, so the reply is the state at `revision` however long it takes)
        found = self.store.list(principal, request.session_id, request.pattern)
        revision = self.store.revision
        if len(found) > LIST_CHUNK:
            await asyncio.sleep(0)
        # what cannot fit is refused before encoding anything (the values alone are too big)
        self._reply_fits(sum([len(v.data) + len(v.binary) for v in found]), "ListVariables")
        variable_bytes = self.encoder.variable_bytes
        parts: list[bytes] = []
        size = 0
        for start in range(0, len(found), LIST_CHUNK):
            if start:
                await asyncio.sleep(0)
            chunk = [pbwire.field_bytes(1, variable_bytes(v, raw))
                     for v in found[start:start + LIST_CHUNK]]
            size += sum(map(len, chunk))
            self._reply_fits(size, "ListVariables")
            parts += chunk
        parts.append(pbwire.field_varint(2, revision))
        return b"".join(parts)

    @rpc
    def GetVariableHistory(self, request, principal, raw):
        var, rows = history.history(self.store, principal, request.session_id,
                                    request.variable_identifier, request.limit or 100,
                                    request.offset)
        reply = pb.GetVariableHistoryResponse(compact_revision=self.store.compact_revision)
        for row in rows:
            entry = reply.entries.add(version=row.version, changed_by=row.changed_by,
                                      metadata=row.metadata, revision=row.revision, op=row.op)
            if raw or var.type not in ("embedding", "tensor"):
                entry.value.type_url, entry.value.value = row.type_url, row.data
                entry.binary_value = row.binary
            else:  # a v0.4.x client reads arrays as JSON
                _, value = _codec.decode(row.type_url, row.data, row.binary)
                entry.value.type_url, entry.value.value, _ = _codec.encode(var.type, value,
                                                                           binary=False)
            entry.timestamp.FromNanoseconds(int(row.ts * 1e9))
        return reply

    @rpc
    def RollbackVariable(self, request, principal, raw):
        var = history.rollback(self.store, principal, request.session_id,
                               request.variable_identifier, request.target_version,
                               request.reason)
        return pb.RollbackVariableResponse(success=True, variable=variable_message(var, raw),
                                           revision=var.mod_revision)

    @rpc
    def DeleteVariable(self, request, principal, raw):
        rev = self.store.delete(principal, request.session_id, request.variable_identifier,
                                request.force)
        return pb.DeleteVariableResponse(success=True, revision=rev)
