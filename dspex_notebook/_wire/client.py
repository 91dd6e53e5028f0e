"""The client side of the wire: one method per RPC, Python values in and out.

:class:`Bridge` owns the stub, the call metadata (token, codec) and error translation; it knows
nothing about caching (that is :class:`~dspex_notebook.SessionContext`'s job).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, NamedTuple

import grpc

from .. import _codec
from .._errors import AuthenticationError, DspexError, SessionNotFoundError
from .._proto import snakepit_bridge_pb2 as pb
from .._proto import snakepit_bridge_pb2_grpc as pb_grpc
from .._values import VariableSpec, metadata_strings
from .convert import set_any, timestamp_to_datetime, update_from_pb, value_of, variable_from_pb
from .status import CODEC_KEY, BridgeUnavailable, error_from_rpc

DEFAULT_CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
)


NO_PROPOSAL: Any = object()  #: next_trial without a proposal (a server-side run)


class WatchMessage(NamedTuple):
    """One decoded ``WatchResponse``."""

    store_id: str
    revision: int
    updates: list[Any]
    created: bool
    initial: bool
    progress: bool
    canceled: bool
    cancel_reason: str
    compact_revision: int


def _what(what: str, ident: str | None) -> str:
    return what if ident is None else f"{what}({ident!r})"


def insecure_channel(address: str, token: str | None = None) -> grpc.aio.Channel:
    """A grpc.aio channel to ``address`` with this package's message-size limits; with
    ``token``, every call on it carries ``authorization: Bearer <token>`` (unless the call
    already has an ``authorization`` entry)."""
    interceptors = list(_token_interceptors(token)) if token else None
    return grpc.aio.insecure_channel(address, options=DEFAULT_CHANNEL_OPTIONS,
                                     interceptors=interceptors)


def channel_target(channel: Any) -> str | None:
    """The address a grpc.aio channel was made for, or None when it cannot be told.

    grpc.aio has no public accessor; its Cython channel keeps the target as bytes.
    """
    target = getattr(getattr(channel, "_channel", None), "target", None)
    if isinstance(target, bytes):
        return target.decode("utf-8", "replace")
    return target if isinstance(target, str) else None


def _with_token(details: Any, token: str) -> Any:
    metadata = list(details.metadata or ())
    if not any(key == "authorization" for key, _ in metadata):
        metadata.append(("authorization", f"Bearer {token}"))
    return grpc.aio.ClientCallDetails(details.method, details.timeout, metadata,
                                      details.credentials, details.wait_for_ready)


def _token_interceptors(token: str) -> tuple[Any, Any]:
    """Interceptors adding the bearer token to unary calls and server streams (Watch)."""

    class Unary(grpc.aio.UnaryUnaryClientInterceptor):
        async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            return await continuation(_with_token(details, token), request)

    class Streams(grpc.aio.UnaryStreamClientInterceptor):
        async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
            return await continuation(_with_token(details, token), request)

    return Unary(), Streams()


class Recovery:
    """What a :class:`Bridge` asks when a call fails for want of its server: the server went
    away (UNAVAILABLE) or refused the token (UNAUTHENTICATED). Implemented by
    ``dspex_notebook._connect`` (runtime files, embedded servers); the wire knows none of it."""

    generation = 0  # bumped by each successful recovery, so concurrent failures recover once

    async def recover(self, bridge: Bridge, error: DspexError, generation: int,
                      may_start: bool) -> bool:
        """Point ``bridge`` at a working server (``bridge.rebind``); True if it did (or
        another call already did since ``generation``), so the call is worth retrying."""
        return False

    def explain(self, error: DspexError) -> DspexError:
        """The error to raise when recovery did not help (may add a hint)."""
        return error


def _recoverable(error: DspexError) -> bool:
    if isinstance(error, AuthenticationError):
        return True
    return isinstance(error, BridgeUnavailable) and error.code() is grpc.StatusCode.UNAVAILABLE


class Bridge:
    """Typed calls to ``snakepit.bridge.BridgeService`` over one channel."""

    def __init__(self, channel: grpc.aio.Channel, token: str | None = None,
                 timeout: float | None = 30.0) -> None:
        self.channel = channel
        self._stub = pb_grpc.BridgeServiceStub(channel)
        self._auth(token)
        self.timeout = timeout
        #: finds the server again after it went away or changed its token (see Recovery)
        self.recovery: Recovery = Recovery()
        #: the session was initialized (or found) on the server: SessionNotFoundError before
        #: that gets a hint to call initialize()
        self.initialized = False
        #: arrays travel as raw bytes unless the peer is an old snakepit server (see ping()).
        self.binary = True
        #: the store the server said it serves (its last Ping), "" before one
        self.store_id = ""
        #: set by SessionContext.close(): later calls fail clearly instead of inside grpc.
        self.closed = False
        # grpc.aio channels are bound to the loop they were created on (private attribute, so
        # fall back to the loop of the first call when a channel-like object lacks it).
        self._loop: asyncio.AbstractEventLoop | None = getattr(channel, "_loop", None)

    def _auth(self, token: str | None) -> None:
        self.token = token
        auth = (("authorization", f"Bearer {token}"),) if token else ()
        # Only replies that carry values depend on the codec, so only those calls say "raw"
        # (one header less on writes, which are latency-bound).
        self._md = auth
        self._md_values = ((CODEC_KEY, "raw"), *auth)

    def rebind(self, channel: grpc.aio.Channel | None, token: str | None) -> grpc.aio.Channel | None:
        """Send later calls over ``channel`` (None: keep the current one) with ``token``;
        return the channel that was replaced (the caller closes it if it owns it)."""
        self._auth(token)
        if channel is None or channel is self.channel:
            return None
        old, self.channel = self.channel, channel
        self._stub = pb_grpc.BridgeServiceStub(channel)
        return old

    async def _call(self, method: str, request: Any, what: str, ident: str | None = None,
                    values: bool = False) -> Any:
        """Call the RPC named ``method``; ``what``/``ident`` name the call in errors (formatted only then).

        A call that fails because the server went away or refused the token is retried once
        after :attr:`recovery` found the server again (a restarted server's new runtime file,
        or a new embedded server for the same store): such a request never reached a server
        that could act on it, so retrying cannot apply it twice.
        """
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
        generation = self.recovery.generation
        try:
            return await self._invoke(method, request, values, what, ident)
        except DspexError as error:
            if not _recoverable(error):
                raise
            if not await self.recovery.recover(self, error, generation, may_start=True):
                raise self.recovery.explain(error) from None
        try:  # once, over the recovered connection
            return await self._invoke(method, request, values, what, ident)
        except DspexError as error:
            if not _recoverable(error):
                raise
            raise self.recovery.explain(error) from None

    async def _invoke(self, method: str, request: Any, values: bool, what: str,
                      ident: str | None) -> Any:
        # the stub's method is looked up again: a recovery may have replaced the stub
        call = getattr(self._stub, method)
        try:
            return await call(request, metadata=self._md_values if values else self._md,
                              timeout=self.timeout)
        except grpc.RpcError as err:
            error = error_from_rpc(err, _what(what, ident))
        if isinstance(error, SessionNotFoundError) and not self.initialized:
            error = SessionNotFoundError(
                f"{error}; call `await session.initialize()` first (or use "
                "`async with SessionContext(...)`), which creates it")
        raise error

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
        reply = await self._call("Ping", pb.PingRequest(message=message), "Ping")
        if not reply.server_version:
            self.binary = False  # a v0.4.x server cannot read raw arrays
        self.store_id = reply.store_id
        return {
            "message": reply.message,
            "server_time": timestamp_to_datetime(reply.server_time),
            "store_id": reply.store_id,
            "revision": reply.revision,
            "server_version": reply.server_version,
        }

    async def initialize_session(self, session_id: str, metadata: Mapping[str, str]) -> int:
        req = pb.InitializeSessionRequest(session_id=session_id,
                                          metadata=metadata_strings(metadata))
        revision = (await self._call("InitializeSession", req, "InitializeSession")).revision
        self.initialized = True
        return revision

    async def cleanup_session(self, session_id: str) -> int:
        req = pb.CleanupSessionRequest(session_id=session_id)
        return (await self._call("CleanupSession", req, "CleanupSession")).resources_cleaned

    async def get_session(self, session_id: str) -> dict[str, Any]:
        req = pb.GetSessionRequest(session_id=session_id)
        r = await self._call("GetSession", req, "GetSession")
        self.initialized = True
        return {
            "session_id": r.session_id, "metadata": dict(r.metadata),
            "created_at": timestamp_to_datetime(r.created_at), "variable_count": r.variable_count,
            "last_accessed_at": timestamp_to_datetime(r.last_accessed_at),
        }

    async def list_sessions(self) -> list[dict[str, Any]]:
        """The caller's sessions: ``session_id``, ``variable_count``, ``last_accessed_at``.

        Raises:
            Unsupported: an older server without ``ListSessions``.
        """
        r = await self._call("ListSessions", pb.ListSessionsRequest(), "ListSessions")
        return [{"session_id": s.session_id, "variable_count": s.variable_count,
                 "last_accessed_at": timestamp_to_datetime(s.last_accessed_at)}
                for s in r.sessions]

    # ------------------------------------------------------------------------------------------
    # variables

    def _fill_spec(self, item: Any, spec: VariableSpec) -> None:
        type_url, data, binary = self._value(spec.type, spec.value)
        item.name, item.type = spec.name, spec.type
        item.constraints_json = json.dumps(spec.constraints or {})
        item.metadata.update(spec.metadata)
        item.initial_binary_value = binary
        item.replace = spec.replace
        set_any(item.initial_value, type_url, data)

    async def register_variable(self, session_id: str, spec: VariableSpec,
                                dependencies: Sequence[str] = ()) -> Any:
        """The registered :class:`Variable` (or only its id, from an old server)."""
        req = pb.RegisterVariableRequest(session_id=session_id, dependencies=dependencies)
        self._fill_spec(req, spec)
        reply = await self._call("RegisterVariable", req, "RegisterVariable", spec.name,
                                 values=True)
        if reply.HasField("variable"):
            return variable_from_pb(reply.variable)
        return reply.variable_id  # an old server answers with the id only

    async def register_variables(
        self, session_id: str, specs: Sequence[VariableSpec],
        updates: Mapping[str, tuple[str, Any]] | None = None,
        update_metadata: Mapping[str, str] | None = None,
    ) -> tuple[list[Any], int]:
        """Register ``specs`` and apply ``updates`` (ident -> (type, value)) atomically; return
        the registered Variables and the revision."""
        req = pb.BatchRegisterVariablesRequest(session_id=session_id,
                                               update_metadata=metadata_strings(update_metadata))
        self._fill_updates(req, updates or {})
        for spec in specs:
            item = req.variables.add(session_id=session_id)
            self._fill_spec(item, spec)
        reply = await self._call("RegisterVariables", req, "RegisterVariables",
                                 values=True)
        return [variable_from_pb(v) for v in reply.variables], reply.revision

    async def get_variable(self, session_id: str, ident: str,
                           value_only: bool = False) -> tuple[Any, int, int]:
        """``(Variable or only its value, mod_revision, revision of the read)``; ``value_only``
        skips decoding the metadata."""
        req = pb.GetVariableRequest(session_id=session_id, variable_identifier=ident, bypass_cache=True)
        reply = await self._call("GetVariable", req, "GetVariable", ident, values=True)
        var = reply.variable
        return (value_of(var) if value_only else variable_from_pb(var), var.mod_revision,
                reply.revision)

    async def set_variable(
        self, session_id: str, ident: str, type_name: str, value: Any,
        metadata: Mapping[str, str], expected_version: int | None,
    ) -> tuple[int, int]:
        """``(new version, revision of the write)``."""
        type_url, data, binary = self._value(type_name, value)
        req = pb.SetVariableRequest(session_id=session_id, variable_identifier=ident)
        if metadata:
            req.metadata.update(metadata_strings(metadata))
        if binary:
            req.binary_value = binary
        if expected_version is not None:
            req.expected_version = expected_version
        set_any(req.value, type_url, data)
        reply = await self._call("SetVariable", req, "SetVariable", ident)
        return reply.new_version, reply.revision

    async def get_variables(self, session_id: str,
                            idents: Sequence[str]) -> tuple[dict[str, Any], list[str], int]:
        """``({ident: Variable}, missing, revision of the read)``."""
        req = pb.BatchGetVariablesRequest(session_id=session_id, variable_identifiers=idents,
                                          include_metadata=True, bypass_cache=True)
        reply = await self._call("GetVariables", req, "GetVariables", values=True)
        found = {ident: variable_from_pb(var) for ident, var in reply.variables.items()}
        return found, list(reply.missing_variables), reply.revision

    async def get_values(self, session_id: str, idents: Sequence[str]) -> tuple[
            dict[str, Any], list[str], int, dict[str, int]]:
        """Like :meth:`get_variables` but decodes only the values:
        ``({ident: value}, missing, revision of the read, {ident: mod_revision})``."""
        req = pb.BatchGetVariablesRequest(session_id=session_id, variable_identifiers=idents,
                                          bypass_cache=True, values_only=True)
        reply = await self._call("GetVariables", req, "GetVariables", values=True)
        missing = list(reply.missing_variables)
        revision = reply.revision
        if reply.variables or not reply.packed_values:  # a server without values_only
            return ({ident: value_of(var) for ident, var in reply.variables.items()}, missing,
                    revision, {ident: var.mod_revision for ident, var in reply.variables.items()})
        order = list(dict.fromkeys(idents))
        if missing:
            absent = set(missing)
            order = [i for i in order if i not in absent]
        values, revs = _codec.unpack_values(reply.packed_values, reply.packed_binary)
        if len(values) != len(order):
            raise DspexError(f"GetVariables: {len(values)} values for {len(order)} identifiers")
        mod_revs: dict[str, int] = (
            dict(zip(order, revs, strict=True)) if None not in revs  # type: ignore[arg-type]
            # an older server: the read's revision stands in
            else {i: revision if r is None else r for i, r in zip(order, revs, strict=True)})
        return dict(zip(order, values, strict=True)), missing, revision, mod_revs

    async def set_variables(
        self, session_id: str, updates: Mapping[str, tuple[str, Any]],
        metadata: Mapping[str, str], atomic: bool,
    ) -> tuple[dict[str, str], dict[str, int], int]:
        """``(errors, new_versions, revision)``."""
        req = pb.BatchSetVariablesRequest(session_id=session_id,
                                          metadata=metadata_strings(metadata), atomic=atomic)
        self._fill_updates(req, updates)
        reply = await self._call("SetVariables", req, "SetVariables")
        return dict(reply.errors), dict(reply.new_versions), reply.revision

    async def list_variables(self, session_id: str, pattern: str = "") -> list[Any]:
        req = pb.ListVariablesRequest(session_id=session_id, pattern=pattern)
        reply = await self._call("ListVariables", req, "ListVariables", values=True)
        return [variable_from_pb(v) for v in reply.variables]

    async def get_variable_history(self, session_id: str, ident: str, limit: int,
                                   offset: int) -> list[dict[str, Any]]:
        """History entries, newest first: version, value, updated_at, updated_by, metadata,
        revision, op."""
        req = pb.GetVariableHistoryRequest(session_id=session_id, variable_identifier=ident,
                                           limit=limit, offset=offset)
        reply = await self._call("GetVariableHistory", req, "GetVariableHistory", ident,
                                 values=True)
        out = []
        for e in reply.entries:
            _, value = _codec.decode(e.value.type_url, e.value.value, e.binary_value)
            out.append({"version": e.version, "value": value,
                        "updated_at": timestamp_to_datetime(e.timestamp),
                        "updated_by": e.changed_by, "metadata": dict(e.metadata),
                        "revision": e.revision, "op": e.op or "set"})
        return out

    async def rollback_variable(self, session_id: str, ident: str, version: int,
                                reason: str) -> tuple[Any, int]:
        """``(the new Variable, revision of the write)``."""
        req = pb.RollbackVariableRequest(session_id=session_id, variable_identifier=ident,
                                         target_version=version, reason=reason)
        reply = await self._call("RollbackVariable", req, "RollbackVariable", ident,
                                 values=True)
        return variable_from_pb(reply.variable), reply.revision

    async def export_variables(self, session_id: str, pattern: str, include_history: bool,
                               include_dependencies: bool) -> bytes:
        """The export document (UTF-8 JSON, ``server/io_document.py``)."""
        req = pb.ExportVariablesRequest(session_id=session_id, pattern=pattern,
                                        include_history=include_history,
                                        include_dependencies=include_dependencies)
        return bytes((await self._call("ExportVariables", req, "ExportVariables")).document_json)

    async def import_variables(self, session_id: str, document: bytes, strategy: str,
                               dry_run: bool) -> dict[str, Any]:
        """The import summary (``imported``, ``skipped``, ``errors``, ``details``, ...)."""
        req = pb.ImportVariablesRequest(session_id=session_id, document_json=document,
                                        merge_strategy=strategy, dry_run=dry_run)
        reply = await self._call("ImportVariables", req, "ImportVariables")
        return dict(json.loads(reply.summary_json))

    async def get_variables_at(self, session_id: str, idents: Sequence[str],
                               revision: int) -> tuple[dict[str, Any], list[str]]:
        """``({ident: Variable as of revision}, missing)``."""
        req = pb.GetVariablesAtRequest(session_id=session_id, variable_identifiers=idents,
                                       revision=revision)
        reply = await self._call("GetVariablesAt", req, "GetVariablesAt", values=True)
        found = {ident: variable_from_pb(v) for ident, v in reply.variables.items()}
        return found, list(reply.missing_variables)

    async def restore_session(self, session_id: str, revision: int,
                              dry_run: bool) -> dict[str, Any]:
        req = pb.RestoreSessionRequest(session_id=session_id, revision=revision, dry_run=dry_run)
        reply = await self._call("RestoreSession", req, "RestoreSession")
        return dict(json.loads(reply.summary_json))

    async def delete_variable(self, session_id: str, ident: str, force: bool = False) -> int:
        req = pb.DeleteVariableRequest(session_id=session_id, variable_identifier=ident,
                                       force=force)
        return (await self._call("DeleteVariable", req, "DeleteVariable", ident)).revision

    # ------------------------------------------------------------------------------------------
    # dependencies

    async def add_dependency(self, session_id: str, source: str, target: str,
                             dependency_type: str, metadata: Mapping[str, Any] | None) -> int:
        """The revision of the write."""
        req = pb.AddDependencyRequest(session_id=session_id, from_variable=source,
                                      to_variable=target, dependency_type=dependency_type,
                                      metadata_json=json.dumps(dict(metadata)) if metadata else "")
        return (await self._call("AddDependency", req, "AddDependency", source)).revision

    async def remove_dependency(self, session_id: str, source: str, target: str) -> int:
        req = pb.RemoveDependencyRequest(session_id=session_id, from_variable=source,
                                         to_variable=target)
        return (await self._call("RemoveDependency", req, "RemoveDependency", source)).revision

    async def get_dependencies(self, session_id: str, ident: str, dependents: bool,
                               transitive: bool) -> list[dict[str, Any]]:
        req = pb.GetDependenciesRequest(session_id=session_id, variable_identifier=ident,
                                        include_transitive=transitive, dependents=dependents)
        reply = await self._call("GetDependencies", req, "GetDependencies", ident)
        return [{"variable_id": d.variable_id, "name": d.name, "type": d.type,
                 "metadata": json.loads(d.metadata_json or "{}"), "depth": d.depth, "via": d.via}
                for d in reply.dependencies]

    async def get_variable_stats(self, session_id: str, idents: Sequence[str]) -> tuple[
            dict[str, dict[str, Any]], list[str], int]:
        """``({ident: server stats}, missing, session_watchers)``."""
        req = pb.GetVariableStatsRequest(session_id=session_id, variable_identifiers=idents)
        reply = await self._call("GetVariableStats", req, "GetVariableStats")
        stats = {
            ident: {"variable_id": s.variable_id, "name": s.name, "read_count": s.read_count,
                    "write_count": s.write_count, "watchers": s.watchers, "version": s.version,
                    "history_length": s.history_length}
            for ident, s in reply.stats.items()
        }
        return stats, list(reply.missing_variables), reply.session_watchers

    # ------------------------------------------------------------------------------------------
    # optimization runs (values, metrics and status travel as JSON: see servicer/optimization.py)

    async def start_optimization(self, session_id: str, ident: str, optimizer: str,
                                 config: Mapping[str, Any], max_iterations: int | None,
                                 convergence_threshold: float | None, client_side: bool,
                                 lease_seconds: float, driven: bool) -> tuple[str, dict[str, Any]]:
        req = pb.StartOptimizationRequest(
            session_id=session_id, variable_identifier=ident, optimizer_id=optimizer,
            optimizer_config_json=json.dumps(dict(config)), max_iterations=max_iterations or 0,
            client_side=client_side, lease_seconds=lease_seconds, driven=driven)
        if convergence_threshold is not None:
            req.convergence_threshold = convergence_threshold
        reply = await self._call("StartOptimization", req, "StartOptimization", ident)
        return reply.optimization_id, json.loads(reply.status_json or "{}")

    async def stop_optimization(self, session_id: str, ident: str, run_id: str = "") -> dict[str, Any]:
        req = pb.StopOptimizationRequest(session_id=session_id, variable_identifier=ident,
                                         optimization_id=run_id)
        reply = await self._call("StopOptimization", req, "StopOptimization", ident)
        return json.loads(reply.status_json or "{}")

    async def next_trial(self, session_id: str, ident: str, run_id: str = "",
                         proposal: Any = NO_PROPOSAL) -> tuple[int, Any, str, str]:
        """``(trial id, value, stop_reason, run id)``; trial id 0 when the run is over; the
        run id is empty from servers that do not send it."""
        req = pb.NextTrialRequest(session_id=session_id, variable_identifier=ident,
                                  optimization_id=run_id)
        if proposal is not NO_PROPOSAL:
            req.proposal_json = json.dumps(proposal)
        reply = await self._call("NextTrial", req, "NextTrial", ident)
        return _next_tuple(reply)

    async def report_trial(self, session_id: str, ident: str, run_id: str, trial_id: int,
                           metrics: Any, error: str = "") -> dict[str, Any]:
        """The run's status after the report."""
        reply = await self._call("ReportTrial", self._report(session_id, ident, run_id, trial_id,
                                                             metrics, error), "ReportTrial", ident)
        return json.loads(reply.status_json or "{}")

    async def report_and_next(self, session_id: str, ident: str, run_id: str, trial_id: int,
                              metrics: Any, error: str = "", proposal: Any = NO_PROPOSAL,
                              status: bool = True,
                              ) -> tuple[dict[str, Any], tuple[int, Any, str, str] | None]:
        """Report a trial and get the next one in the same round trip: ``(status, next)``
        with ``next`` as :meth:`next_trial` returns it, or None from a server that does not
        know ``ReportTrialRequest.next`` (ask with :meth:`next_trial` then). ``proposal``: a
        client-side run's next value. ``status=False`` leaves the status out (``{}``)."""
        req = self._report(session_id, ident, run_id, trial_id, metrics, error)
        req.next = True
        req.omit_status = not status
        if proposal is not NO_PROPOSAL:
            req.proposal_json = json.dumps(proposal)
        reply = await self._call("ReportTrial", req, "ReportTrial", ident)
        after = json.loads(reply.status_json) if reply.status_json else {}
        if not reply.HasField("next"):
            return after, None
        return after, _next_tuple(reply.next)

    @staticmethod
    def _report(session_id: str, ident: str, run_id: str, trial_id: int, metrics: Any,
                error: str) -> pb.ReportTrialRequest:
        return pb.ReportTrialRequest(session_id=session_id, variable_identifier=ident,
                                     optimization_id=run_id, trial_id=trial_id,
                                     metrics_json="" if error else json.dumps(metrics), error=error)

    async def optimization_query(self, method: str, session_id: str, ident: str, run_id: str = "",
                                 limit: int = 0, since: float = 0.0) -> Any:
        """``GetOptimizationStatus`` / ``GetOptimizationHistory`` / ``KeepAliveOptimization``."""
        req = pb.OptimizationQuery(session_id=session_id, variable_identifier=ident,
                                   optimization_id=run_id, limit=limit, since=since)
        reply = await self._call(method, req, method, ident)
        return json.loads(reply.json or "null")

    # ------------------------------------------------------------------------------------------
    # access rules

    async def set_variable_permissions(self, session_id: str, ident: str,
                                       rules: list[dict[str, Any]]) -> tuple[list[Any], int]:
        """``(the rules as stored, revision)``."""
        req = pb.SetVariablePermissionsRequest(session_id=session_id, variable_identifier=ident,
                                               rules_json=json.dumps(rules))
        reply = await self._call("SetVariablePermissions", req, "set_variable_permissions", ident)
        return json.loads(reply.rules_json or "[]"), reply.revision

    async def get_variable_permissions(self, session_id: str, ident: str) -> list[Any]:
        req = pb.GetVariablePermissionsRequest(session_id=session_id, variable_identifier=ident)
        reply = await self._call("GetVariablePermissions", req, "get_variable_permissions", ident)
        return list(json.loads(reply.rules_json or "[]"))

    async def check_variable_access(self, session_id: str, ident: str, permission: str,
                                    as_session: str = "") -> tuple[bool, str]:
        req = pb.CheckVariableAccessRequest(session_id=session_id, variable_identifier=ident,
                                            permission=permission, as_session=as_session)
        reply = await self._call("CheckVariableAccess", req, "check_variable_access", ident)
        return reply.allowed, reply.reason

    async def watch(self, session_id: str, idents: Sequence[str] = (), *, start_revision: int = 0,
                    store_id: str = "", include_initial: bool = False,
                    progress_interval_ms: int = 0,
                    include_upstream: bool = False) -> AsyncIterator[WatchMessage]:
        """The ``Watch`` stream, decoded; no deadline (a watch lasts as long as it is read).

        Raises:
            BridgeUnavailable: the stream broke (the caller resumes from its last revision).
            Unsupported: the server has no ``Watch`` (a snakepit v0.4.x server).
        """
        if self.closed:
            raise RuntimeError("Watch: this SessionContext is closed")
        req = pb.WatchRequest(session_id=session_id, variable_identifiers=idents,
                              start_revision=start_revision, store_id=store_id,
                              include_initial=include_initial,
                              progress_interval_ms=progress_interval_ms,
                              include_upstream=include_upstream)
        generation = self.recovery.generation
        call = self._stub.Watch(req, metadata=self._md_values)
        try:
            async for resp in call:
                yield WatchMessage(
                    resp.store_id, resp.revision, [update_from_pb(e) for e in resp.events],
                    resp.created, resp.initial, resp.progress, resp.canceled, resp.cancel_reason,
                    resp.compact_revision,
                )
        except grpc.RpcError as err:
            error = error_from_rpc(err, "Watch")
        else:
            return
        finally:
            call.cancel()
        if _recoverable(error):
            # find a restarted server (new runtime file) for the caller's next attempt; never
            # start one from a background stream, only a call the user made may do that
            await self.recovery.recover(self, error, generation, may_start=False)
        raise error

    async def close(self) -> None:
        await self.channel.close()


def _next_tuple(reply: pb.NextTrialResponse) -> tuple[int, Any, str, str]:
    """``(trial id, value, stop_reason, run id)`` of a ``NextTrialResponse`` (trial id 0: over)."""
    if reply.done:
        return 0, None, reply.stop_reason, reply.optimization_id
    return reply.trial_id, json.loads(reply.value_json), "", reply.optimization_id
