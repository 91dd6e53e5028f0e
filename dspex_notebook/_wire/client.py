"""The client side of the wire: one method per RPC, Python values in and out.

:class:`Bridge` owns the stub, the call metadata (token, codec) and error translation; it knows
nothing about caching (that is :class:`~dspex_notebook.SessionContext`'s job).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

import grpc

from .. import _codec
from .._errors import DspexError
from .._proto import snakepit_bridge_pb2 as pb
from .._proto import snakepit_bridge_pb2_grpc as pb_grpc
from .convert import set_any, timestamp_to_datetime, value_of, variable_from_pb
from .status import CODEC_KEY, error_from_rpc

DEFAULT_CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
)


def _what(what: str, ident: str | None) -> str:
    return what if ident is None else f"{what}({ident!r})"


def insecure_channel(address: str) -> grpc.aio.Channel:
    """A grpc.aio channel to ``address`` with this package's message-size limits."""
    return grpc.aio.insecure_channel(address, options=DEFAULT_CHANNEL_OPTIONS)


class Bridge:
    """Typed calls to ``snakepit.bridge.BridgeService`` over one channel."""

    def __init__(self, channel: grpc.aio.Channel, token: str | None = None,
                 timeout: float | None = 30.0) -> None:
        self.channel = channel
        self._stub = pb_grpc.BridgeServiceStub(channel)
        auth = (("authorization", f"Bearer {token}"),) if token else ()
        # Only replies that carry values depend on the codec, so only those calls say "raw"
        # (one header less on writes, which are latency-bound).
        self._md = auth
        self._md_values = ((CODEC_KEY, "raw"), *auth)
        self.timeout = timeout
        #: arrays travel as raw bytes unless the peer is an old snakepit server (see ping()).
        self.binary = True
        #: set by SessionContext.close(): later calls fail clearly instead of inside grpc.
        self.closed = False
        # grpc.aio channels are bound to the loop they were created on (private attribute, so
        # fall back to the loop of the first call when a channel-like object lacks it).
        self._loop: asyncio.AbstractEventLoop | None = getattr(channel, "_loop", None)

    async def _call(self, method: Any, request: Any, what: str, ident: str | None = None,
                    values: bool = False) -> Any:
        """Call ``method``; ``what``/``ident`` name the call in errors (formatted only then)."""
        if self.closed:
            raise RuntimeError(f"{_what(what, ident)}: this SessionContext is closed")
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            if self._loop is not None:
                state = "a closed" if self._loop.is_closed() else "another"
                raise RuntimeError(
                    f"this SessionContext's gRPC channel belongs to {state} event loop (grpc.aio "
                    "objects are bound to the loop that created them); create one SessionContext "
                    "per loop, or in Jupyter use the `session` that %load_ext dspex_notebook made"
                )
            self._loop = loop
        try:
            return await method(request, metadata=self._md_values if values else self._md,
                                timeout=self.timeout)
        except grpc.RpcError as err:
            raise error_from_rpc(err, _what(what, ident)) from None

    def _value(self, type_name: str, value: Any) -> tuple[str, bytes, bytes]:
        return _codec.encode(type_name, value, binary=self.binary)

    def _fill_updates(self, req: Any, updates: Mapping[str, tuple[str, Any]]) -> None:
        """Encode ``{ident: (type, value)}`` into a request's ``updates``/``binary_updates``."""
        for ident, (type_name, value) in updates.items():
            type_url, data, binary = self._value(type_name, value)
            set_any(req.updates[ident], type_url, data)
            if binary:
                req.binary_updates[ident] = binary

    # ------------------------------------------------------------------------------------------
    # sessions

    async def ping(self, message: str = "") -> dict[str, Any]:
        reply = await self._call(self._stub.Ping, pb.PingRequest(message=message), "Ping")
        if not reply.server_version:
            self.binary = False  # a v0.4.x server cannot read raw arrays
        return {
            "message": reply.message,
            "server_time": timestamp_to_datetime(reply.server_time),
            "store_id": reply.store_id,
            "revision": reply.revision,
            "server_version": reply.server_version,
        }

    async def initialize_session(self, session_id: str, metadata: Mapping[str, str]) -> int:
        req = pb.InitializeSessionRequest(session_id=session_id, metadata=metadata)
        return (await self._call(self._stub.InitializeSession, req, "InitializeSession")).revision

    async def cleanup_session(self, session_id: str) -> int:
        req = pb.CleanupSessionRequest(session_id=session_id)
        return (await self._call(self._stub.CleanupSession, req, "CleanupSession")).resources_cleaned

    async def get_session(self, session_id: str) -> dict[str, Any]:
        req = pb.GetSessionRequest(session_id=session_id)
        r = await self._call(self._stub.GetSession, req, "GetSession")
        return {
            "session_id": r.session_id, "metadata": dict(r.metadata),
            "created_at": timestamp_to_datetime(r.created_at), "variable_count": r.variable_count,
            "last_accessed_at": timestamp_to_datetime(r.last_accessed_at),
        }

    async def heartbeat(self, session_id: str) -> bool:
        req = pb.HeartbeatRequest(session_id=session_id)
        return (await self._call(self._stub.Heartbeat, req, "Heartbeat")).session_valid

    # ------------------------------------------------------------------------------------------
    # variables

    async def register_variable(
        self, session_id: str, name: str, type_name: str, value: Any,
        constraints: Mapping[str, Any] | None, metadata: Mapping[str, str], replace: bool = False,
    ) -> Any:
        type_url, data, binary = self._value(type_name, value)
        req = pb.RegisterVariableRequest(
            session_id=session_id, name=name, type=type_name,
            constraints_json=json.dumps(constraints or {}), metadata=metadata,
            initial_binary_value=binary, replace=replace,
        )
        set_any(req.initial_value, type_url, data)
        reply = await self._call(self._stub.RegisterVariable, req, "RegisterVariable", name,
                                 values=True)
        if reply.HasField("variable"):
            return variable_from_pb(reply.variable)
        return reply.variable_id  # an old server answers with the id only

    async def register_variables(
        self, session_id: str, specs: Sequence[Mapping[str, Any]],
        updates: Mapping[str, tuple[str, Any]] | None = None,
        update_metadata: Mapping[str, str] | None = None,
    ) -> list[Any]:
        """Register ``{name, type, value, constraints, metadata, replace}`` specs and apply
        ``updates`` (ident -> (type, value)) atomically; return the registered Variables."""
        req = pb.BatchRegisterVariablesRequest(session_id=session_id,
                                               update_metadata=update_metadata or {})
        self._fill_updates(req, updates or {})
        for spec in specs:
            type_url, data, binary = self._value(spec["type"], spec["value"])
            item = req.variables.add(
                session_id=session_id, name=spec["name"], type=spec["type"],
                constraints_json=json.dumps(spec.get("constraints") or {}),
                metadata=spec.get("metadata") or {}, initial_binary_value=binary,
                replace=bool(spec.get("replace", False)),
            )
            set_any(item.initial_value, type_url, data)
        reply = await self._call(self._stub.RegisterVariables, req, "RegisterVariables",
                                 values=True)
        return [variable_from_pb(v) for v in reply.variables]

    async def get_variable(self, session_id: str, ident: str, value_only: bool = False) -> Any:
        """The :class:`Variable` (or only its value, skipping the metadata decoding)."""
        req = pb.GetVariableRequest(session_id=session_id, variable_identifier=ident, bypass_cache=True)
        reply = await self._call(self._stub.GetVariable, req, "GetVariable", ident, values=True)
        return value_of(reply.variable) if value_only else variable_from_pb(reply.variable)

    async def set_variable(
        self, session_id: str, ident: str, type_name: str, value: Any,
        metadata: Mapping[str, str], expected_version: int | None,
    ) -> int:
        type_url, data, binary = self._value(type_name, value)
        req = pb.SetVariableRequest(session_id=session_id, variable_identifier=ident)
        if metadata:
            req.metadata.update(metadata)
        if binary:
            req.binary_value = binary
        if expected_version is not None:
            req.expected_version = expected_version
        set_any(req.value, type_url, data)
        reply = await self._call(self._stub.SetVariable, req, "SetVariable", ident)
        return reply.new_version

    async def get_variables(self, session_id: str, idents: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
        req = pb.BatchGetVariablesRequest(session_id=session_id, variable_identifiers=idents,
                                          include_metadata=True, bypass_cache=True)
        reply = await self._call(self._stub.GetVariables, req, "GetVariables", values=True)
        found = {ident: variable_from_pb(var) for ident, var in reply.variables.items()}
        return found, list(reply.missing_variables)

    async def get_values(self, session_id: str, idents: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
        """Like :meth:`get_variables` but decodes only the values: ``({ident: value}, missing)``."""
        req = pb.BatchGetVariablesRequest(session_id=session_id, variable_identifiers=idents,
                                          bypass_cache=True, values_only=True)
        reply = await self._call(self._stub.GetVariables, req, "GetVariables", values=True)
        missing = list(reply.missing_variables)
        if reply.variables or not reply.packed_values:  # a server without values_only
            return {ident: value_of(var) for ident, var in reply.variables.items()}, missing
        absent = set(missing)
        order = [i for i in dict.fromkeys(idents) if i not in absent]
        values = _codec.unpack_values(reply.packed_values, reply.packed_binary)
        if len(values) != len(order):
            raise DspexError(f"GetVariables: {len(values)} values for {len(order)} identifiers")
        return dict(zip(order, values, strict=True)), missing

    async def set_variables(
        self, session_id: str, updates: Mapping[str, tuple[str, Any]],
        metadata: Mapping[str, str], atomic: bool,
    ) -> tuple[bool, dict[str, str], dict[str, int]]:
        req = pb.BatchSetVariablesRequest(session_id=session_id, metadata=metadata, atomic=atomic)
        self._fill_updates(req, updates)
        reply = await self._call(self._stub.SetVariables, req, "SetVariables")
        return reply.success, dict(reply.errors), dict(reply.new_versions)

    async def list_variables(self, session_id: str, pattern: str = "") -> list[Any]:
        req = pb.ListVariablesRequest(session_id=session_id, pattern=pattern)
        reply = await self._call(self._stub.ListVariables, req, "ListVariables", values=True)
        return [variable_from_pb(v) for v in reply.variables]

    async def delete_variable(self, session_id: str, ident: str) -> None:
        req = pb.DeleteVariableRequest(session_id=session_id, variable_identifier=ident)
        await self._call(self._stub.DeleteVariable, req, "DeleteVariable", ident)

    async def close(self) -> None:
        await self.channel.close()
