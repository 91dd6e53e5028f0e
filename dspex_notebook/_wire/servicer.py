"""The grpc.aio servicer: decodes requests, calls the :class:`Store`, encodes replies.

Every handler goes through :func:`_rpc`, which

* authenticates the caller (``authorization: Bearer <token>`` → principal, else UNAUTHENTICATED),
* notes whether the caller reads raw binary arrays (``dspex-codec: raw``; v0.4.x clients don't,
  so they get the JSON forms they understand),
* turns a :class:`DspexError` into its status code (one table, ``status.py``) and any other
  exception into INTERNAL without killing the server.

Handler bodies are plain functions (no awaits): the store is in memory and the SQLite commit is
a single short transaction, so a handler never yields mid-write and writes are serialized.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import grpc

from .. import _codec
from .._errors import (
    AuthenticationError,
    DspexError,
    InvalidArgument,
    ResourceLimitExceeded,
    Unsupported,
)
from .._proto import snakepit_bridge_pb2 as pb
from .._proto import snakepit_bridge_pb2_grpc as pb_grpc
from ..server.store import Store, VarRecord
from . import pbwire
from .admission import admit
from .status import CODEC_KEY, abort_args

log = logging.getLogger("dspex_notebook.server")



class MalformedRequest:
    """A request body that did not parse (see :func:`lenient_deserializer`).

    grpc.aio answers a deserializer exception with UNKNOWN "Unexpected DecodeError" (and logs an
    error); handing the failure to the handler instead lets it authenticate the caller first and
    then answer INVALID_ARGUMENT, like any other bad input.
    """

    __slots__ = ("type_name", "reason")

    def __init__(self, type_name: str, reason: str) -> None:
        self.type_name, self.reason = type_name, reason


def lenient_deserializer(message_class: Any) -> Callable[[bytes], Any]:
    """``message_class.FromString`` that returns a :class:`MalformedRequest` instead of raising."""
    parse = message_class.FromString
    type_name = message_class.DESCRIPTOR.full_name

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception as exc:  # DecodeError, or whatever the parser raises on garbage
            return MalformedRequest(type_name, str(exc) or type(exc).__name__)

    return deserialize


def _rpc(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def handler(self: BridgeServicer, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            principal, raw = self._caller(context)
            if isinstance(request, MalformedRequest):
                raise InvalidArgument(
                    f"request is not a valid {request.type_name}: {request.reason}"
                )
            admit(request, self.store.limits)
            return fn(self, request, principal, raw)
        except DspexError as exc:
            code, details, trailing = abort_args(exc)
            context.set_trailing_metadata(trailing)
            await context.abort(code, details)
        except Exception:  # bad input must never take the server down
            log.exception("internal error in %s", fn.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {fn.__name__}")

    return handler


def _unsupported(what: str) -> Callable[..., Any]:
    """A handler that answers UNIMPLEMENTED (after authenticating) with a clear message."""

    @_rpc
    def handler(self: BridgeServicer, request: Any, principal: str, raw: bool) -> Any:
        raise Unsupported(f"{what} is not supported by this dspex-notebook server")

    return handler


class BridgeServicer(pb_grpc.BridgeServiceServicer):
    """``snakepit.bridge.BridgeService`` backed by a :class:`Store`."""

    def __init__(self, store: Store, tokens: Mapping[str, str], version: str) -> None:
        self.store = store
        self._tokens = dict(tokens)  # token -> principal
        self._version = version
        # The (single) token's header value, so the common case is one string compare.
        self._fast = {f"Bearer {t}": p for t, p in self._tokens.items()}

    def _caller(self, context: grpc.aio.ServicerContext) -> tuple[str, bool]:
        auth = None
        raw = False
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                auth = value
            elif key == CODEC_KEY:
                raw = value == "raw"
        if not self._tokens:
            return "anonymous", raw
        if auth is not None:
            principal = self._fast.get(auth)
            if principal is not None:
                return principal, raw
            presented = auth.removeprefix("Bearer ").encode()
            for token, principal in self._tokens.items():
                if hmac.compare_digest(presented, token.encode()):
                    return principal, raw
        raise AuthenticationError(
            "missing or wrong token: send gRPC metadata 'authorization: Bearer <token>' "
            "(the token is in the server's runtime file or --token-file)"
        )

    # ------------------------------------------------------------------------------------------
    # encoding

    def _var_bytes(self, rec: VarRecord, raw: bool) -> bytes:
        """The record's serialized Variable, built once per record and codec."""
        key = ("bytes", raw or rec.type not in ("embedding", "tensor"))
        data = rec.cache.get(key)
        if data is None:
            data = rec.cache[key] = self._var(rec, raw).SerializeToString()
        return data

    def _var(self, rec: VarRecord, raw: bool) -> pb.Variable:
        key = raw or rec.type not in ("embedding", "tensor")  # only arrays differ per codec
        msg = rec.cache.get(key)
        if msg is None:
            row = rec.row
            msg = pb.Variable(
                id=row.id, name=row.name, type=row.type, constraints_json=row.constraints_json,
                metadata=row.metadata, version=row.version, mod_revision=row.mod_revision,
                create_revision=row.create_revision,
                source=pb.Variable.ELIXIR if row.source == "elixir" else pb.Variable.PYTHON,
                optimization_status=pb.OptimizationStatus(optimizing=False),
            )
            if key:
                msg.value.type_url, msg.value.value, msg.binary_value = row.type_url, row.data, row.binary
            else:
                msg.value.type_url, msg.value.value, _ = _codec.encode(rec.type, rec.value, binary=False)
            msg.last_updated_at.FromNanoseconds(int(row.updated_at * 1e9))
            rec.cache[key] = msg
        return msg

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
        self.store.limits.check_value(any_value.ByteSize() + len(binary), len(any_value.value))
        _, raw = _codec.decode(any_value.type_url, any_value.value, binary)
        return raw

    def _decode_updates(self, values: Mapping[str, Any], binaries: Mapping[str, bytes]) -> dict[str, Any]:
        """``{identifier: value}`` of a batch; an entry that cannot be decoded maps to its
        :class:`DspexError`, which the store raises (atomic) or reports for that entry."""
        updates: dict[str, Any] = {}
        for ident, any_value in values.items():
            try:
                updates[ident] = self._decode(any_value, binaries.get(ident, b""))
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

    @_rpc
    def Ping(self, request, principal, raw):
        reply = pb.PingResponse(
            message=f"pong: {request.message}", store_id=self.store.store_id,
            revision=self.store.revision, server_version=self._version,
        )
        reply.server_time.GetCurrentTime()
        return reply

    @_rpc
    def InitializeSession(self, request, principal, raw):
        rev = self.store.init_session(principal, request.session_id, dict(request.metadata))
        return pb.InitializeSessionResponse(success=True, revision=rev)

    @_rpc
    def CleanupSession(self, request, principal, raw):
        removed, rev = self.store.cleanup_session(principal, request.session_id)
        return pb.CleanupSessionResponse(success=True, resources_cleaned=removed, revision=rev)

    @_rpc
    def GetSession(self, request, principal, raw):
        row, count = self.store.get_session(principal, request.session_id)
        reply = pb.GetSessionResponse(session_id=row.session_id, metadata=row.metadata,
                                      variable_count=count, tool_count=0)
        reply.created_at.FromNanoseconds(int(row.created_at * 1e9))
        reply.last_accessed_at.FromNanoseconds(int(row.last_access * 1e9))
        return reply

    @_rpc
    def Heartbeat(self, request, principal, raw):
        reply = pb.HeartbeatResponse(session_valid=self.store.heartbeat(principal, request.session_id))
        reply.server_time.GetCurrentTime()
        return reply

    # ------------------------------------------------------------------------------------------
    # variables

    @_rpc
    def RegisterVariable(self, request, principal, raw):
        value = self._decode(request.initial_value, request.initial_binary_value)
        rec = self.store.register(
            principal, request.session_id, request.name, request.type, value,
            self._constraints(request), dict(request.metadata), replace=request.replace,
        )
        return pb.RegisterVariableResponse(
            success=True, variable_id=rec.id, revision=self.store.revision, variable=self._var(rec, raw)
        )

    @_rpc
    def RegisterVariables(self, request, principal, raw):
        specs = [
            (r.name, r.type, self._decode(r.initial_value, r.initial_binary_value),
             self._constraints(r), dict(r.metadata), r.replace)
            for r in request.variables
        ]
        updates = self._decode_updates(request.updates, request.binary_updates)
        recs = self.store.register_many(principal, request.session_id, specs, updates,
                                        dict(request.update_metadata))
        return pb.BatchRegisterVariablesResponse(
            success=True, variable_ids={r.name: r.id for r in recs}, revision=self.store.revision,
            variables=[self._var(r, raw) for r in recs],
        )

    @_rpc
    def GetVariable(self, request, principal, raw):
        # GetVariableResponse{1: variable, 3: revision}, assembled from the cached bytes
        rec = self.store.resolve(principal, request.session_id, request.variable_identifier)
        return pbwire.field_bytes(1, self._var_bytes(rec, raw)) + pbwire.field_varint(
            3, self.store.revision)

    @_rpc
    def SetVariable(self, request, principal, raw):
        value = self._decode(request.value, request.binary_value)
        expected = request.expected_version if request.HasField("expected_version") else None
        rec = self.store.set(principal, request.session_id, request.variable_identifier, value,
                             dict(request.metadata), expected)
        return pb.SetVariableResponse(success=True, new_version=rec.version,
                                      revision=rec.row.mod_revision)

    @_rpc
    def GetVariables(self, request, principal, raw):
        # BatchGetVariablesResponse{1: map<string, Variable>, 2: missing, 3: revision}, assembled
        # from each record's cached serialized Variable: no per-item message copies.
        found, missing = self.store.get_many(principal, request.session_id,
                                             list(request.variable_identifiers))
        if request.values_only and raw:
            return self._packed_values(found, missing)
        parts = [
            pbwire.map_entry(1, ident.encode(), self._var_bytes(rec, raw))
            for ident, rec in found.items()
        ]
        parts += [pbwire.field_bytes(2, m.encode()) for m in missing]
        parts.append(pbwire.field_varint(3, self.store.revision))
        reply = b"".join(parts)
        self._reply_fits(len(reply), "GetVariables")
        return reply

    def _packed_values(self, found: Mapping[str, VarRecord], missing: list[str]) -> bytes:
        """The ``values_only`` reply: one JSON document plus concatenated raw arrays."""
        elements, blobs = [], []
        for rec in found.values():
            element = rec.cache.get("packed")
            if element is None:
                row = rec.row
                element = b'["' + row.type.encode() + b'",' + row.data
                if row.type in ("embedding", "tensor"):  # raw bytes follow, even zero of them
                    element += b"," + str(len(row.binary)).encode() + b"]"
                else:
                    element += b"]"
                rec.cache["packed"] = element
            elements.append(element)
            if rec.row.binary:  # an empty array contributes no bytes (its count is 0)
                blobs.append(rec.row.binary)
        parts = [pbwire.field_bytes(2, m.encode()) for m in missing]
        parts.append(pbwire.field_varint(3, self.store.revision))
        parts.append(pbwire.field_bytes(4, b"[" + b",".join(elements) + b"]"))
        if blobs:
            parts.append(pbwire.field_bytes(5, b"".join(blobs)))
        reply = b"".join(parts)
        self._reply_fits(len(reply), "GetVariables")
        return reply

    @_rpc
    def SetVariables(self, request, principal, raw):
        updates = self._decode_updates(request.updates, request.binary_updates)
        versions, errors, rev = self.store.set_many(
            principal, request.session_id, updates, dict(request.metadata), request.atomic
        )
        return pb.BatchSetVariablesResponse(success=not errors, errors=errors,
                                            new_versions=versions, revision=rev)

    @_rpc
    def ListVariables(self, request, principal, raw):
        recs = self.store.list(principal, request.session_id, request.pattern)
        reply = pb.ListVariablesResponse(variables=[self._var(r, raw) for r in recs],
                                         revision=self.store.revision)
        self._reply_fits(reply.ByteSize(), "ListVariables")
        return reply

    @_rpc
    def DeleteVariable(self, request, principal, raw):
        rev = self.store.delete(principal, request.session_id, request.variable_identifier)
        return pb.DeleteVariableResponse(success=True, revision=rev)

    # ------------------------------------------------------------------------------------------
    # not served (yet): a clear UNIMPLEMENTED instead of the generated base class' exception

    ExecuteTool = _unsupported("ExecuteTool (tool bridge)")
    RegisterTools = _unsupported("RegisterTools (tool bridge)")
    GetExposedElixirTools = _unsupported("GetExposedElixirTools (tool bridge)")
    ExecuteElixirTool = _unsupported("ExecuteElixirTool (tool bridge)")
    AddDependency = _unsupported("AddDependency")
    StartOptimization = _unsupported("StartOptimization")
    StopOptimization = _unsupported("StopOptimization")
    GetVariableHistory = _unsupported("GetVariableHistory")
    RollbackVariable = _unsupported("RollbackVariable")

    # server-streaming: the same path, so callers are authenticated before being told
    ExecuteStreamingTool = _unsupported("ExecuteStreamingTool (tool bridge)")
    WatchVariables = _unsupported("WatchVariables")
