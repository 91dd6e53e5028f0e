"""The wire contract: what a snakepit v0.4.3 client sees, error mapping, proto drift, layering."""

from __future__ import annotations

import ast
import json
import pathlib
import pickle
import subprocess
import sys

import grpc
import numpy as np
import pytest

import dspex_notebook as dn
from dspex_notebook._proto import snakepit_bridge_pb2 as pb
from dspex_notebook._proto import snakepit_bridge_pb2_grpc as pb_grpc
from dspex_notebook._wire.status import error_from_rpc

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "dspex_notebook"
URL = "type.googleapis.com/snakepit."


def any_json(type_name: str, text: str | bytes, suffix: str = ""):
    from google.protobuf import any_pb2

    data = text.encode() if isinstance(text, str) else text
    return any_pb2.Any(type_url=URL + type_name + suffix, value=data)


class OldClient:
    """Raw generated stubs, as the v0.4.3 Python client used them: no ``dspex-codec`` header."""

    def __init__(self, server, session_id: str) -> None:
        self.channel = grpc.aio.insecure_channel(server.address)
        self.stub = pb_grpc.BridgeServiceStub(self.channel)
        self.md = (("authorization", f"Bearer {server.token}"),)
        self.sid = session_id

    async def __aenter__(self) -> OldClient:
        await self.stub.InitializeSession(pb.InitializeSessionRequest(session_id=self.sid),
                                          metadata=self.md, timeout=10)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stub.CleanupSession(pb.CleanupSessionRequest(session_id=self.sid),
                                       metadata=self.md, timeout=10)
        await self.channel.close()

    async def call(self, rpc: str, request):
        return await getattr(self.stub, rpc)(request, metadata=self.md, timeout=10)

    async def register(self, name, type_name, value_any, constraints="", binary=b""):
        req = pb.RegisterVariableRequest(session_id=self.sid, name=name, type=type_name,
                                         constraints_json=constraints, initial_binary_value=binary)
        req.initial_value.CopyFrom(value_any)
        return await self.call("RegisterVariable", req)

    async def get(self, ident):
        req = pb.GetVariableRequest(session_id=self.sid, variable_identifier=ident)
        return (await self.call("GetVariable", req)).variable

    async def set(self, ident, value_any, binary=b""):
        req = pb.SetVariableRequest(session_id=self.sid, variable_identifier=ident,
                                    binary_value=binary)
        req.value.CopyFrom(value_any)
        return await self.call("SetVariable", req)


@pytest.fixture
async def old(server, request):
    async with OldClient(server, f"old-{request.node.name}"[:200]) as client:
        yield client


# ----------------------------------------------------------------------------------------------
# value encodings an old client reads and writes


async def test_old_client_scalar_encodings(old):
    cases = [
        ("float", "0.7", {}, b"0.7", 0.7),
        ("integer", "3", {}, b"3", 3),
        ("string", '"hi \\u00fc"', {}, None, "hi ü"),  # the old client escapes non-ASCII
        ("boolean", "true", {}, b"true", True),
        ("choice", '"b"', {"choices": ["a", "b"]}, b'"b"', "b"),
        ("module", '"ReAct"', {}, b'"ReAct"', "ReAct"),
    ]
    for type_name, text, cons, exact, value in cases:
        name = f"v_{type_name}"
        reply = await old.register(name, type_name, any_json(type_name, text), json.dumps(cons))
        assert reply.success and reply.variable_id
        var = await old.get(name)
        assert var.type == type_name
        assert var.value.type_url == URL + type_name
        assert var.binary_value == b""
        assert json.loads(var.value.value) == value
        if exact is not None:
            assert var.value.value == exact
        assert var.id == reply.variable_id and var.name == name
        assert json.loads(var.constraints_json) == cons


async def test_old_client_special_floats(old):
    cons = json.dumps({"allow_nonfinite": True})
    await old.register("x", "float", any_json("float", '"NaN"'), cons)
    assert (await old.get("x")).value.value == b'"NaN"'
    await old.set("x", any_json("float", '"-Infinity"'))
    assert (await old.get("x")).value.value == b'"-Infinity"'
    with pytest.raises(grpc.aio.AioRpcError) as info:  # default: non-finite refused
        await old.register("y", "float", any_json("float", '"Infinity"'))
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_old_client_gets_arrays_as_json(server, old):
    await old.register("emb", "embedding", any_json("embedding", "[0.1, 0.2, 0.3]"))
    var = await old.get("emb")
    assert var.value.type_url == URL + "embedding"  # no .binary for a client that cannot read it
    assert var.binary_value == b""
    assert json.loads(var.value.value) == [0.1, 0.2, 0.3]

    await old.register("ten", "tensor",
                       any_json("tensor", '{"shape": [2, 2], "data": [[1, 2], [3, 4]]}'))
    var = await old.get("ten")
    assert var.value.type_url == URL + "tensor" and var.binary_value == b""
    doc = json.loads(var.value.value)
    assert doc["shape"] == [2, 2]
    assert np.array_equal(np.asarray(doc["data"]).reshape(doc["shape"]), [[1, 2], [3, 4]])

    # arrays a new client wrote (raw binary) are still served to the old client as JSON
    from dspex_notebook.testing import session_for

    async with session_for(server, old.sid) as new:
        big = np.linspace(-1, 1, 1536).astype(np.float32)
        await new.register_variable("big", "embedding", big)
        await new.register_variable("t3", "tensor", np.arange(8, dtype=np.int16).reshape(2, 2, 2))
        raw = await new.get_variable("big", bypass_cache=True)
        assert raw.dtype == np.float32 and np.array_equal(raw, big)
    for var in [await old.get("big"),
                *(await old.call("ListVariables", pb.ListVariablesRequest(session_id=old.sid)))
                .variables]:
        assert not var.value.type_url.endswith(".binary"), var.name
        assert var.binary_value == b"", var.name
    big_back = json.loads((await old.get("big")).value.value)
    assert np.allclose(big_back, big) and len(big_back) == 1536
    t3 = json.loads((await old.get("t3")).value.value)
    assert t3["shape"] == [2, 2, 2]
    assert np.array_equal(np.asarray(t3["data"]).reshape(2, 2, 2),
                          np.arange(8).reshape(2, 2, 2))
    batch = await old.call("GetVariables", pb.BatchGetVariablesRequest(
        session_id=old.sid, variable_identifiers=["big"]))
    assert batch.variables["big"].value.type_url == URL + "embedding"


async def test_old_client_json_list_accepted_on_set(server, old):
    from dspex_notebook.testing import session_for

    await old.register("emb", "embedding", any_json("embedding", "[1, 0]"),
                       json.dumps({"dimensions": 2}))
    reply = await old.set("emb", any_json("embedding", "[0.5, 0.5]"))
    assert reply.success and reply.new_version == 1
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await old.set("emb", any_json("embedding", "[1, 2, 3]"))
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "dimensions" in info.value.details()
    async with session_for(server, old.sid) as new:
        got = await new.get_variable("emb")
        assert got.dtype == np.float64 and got.tolist() == [0.5, 0.5]


class _Evil:
    """Unpickling this would create the marker file."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


async def test_pickle_payload_is_refused_and_never_unpickled(old, tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Evil(marker))
    meta = json.dumps({"shape": [2], "dtype": "float64", "binary_format": "pickle",
                       "type": "embedding"})
    evil = any_json("embedding", meta, ".binary")

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await old.register("emb", "embedding", evil, binary=payload)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "pickle" in info.value.details()

    await old.register("emb", "embedding", any_json("embedding", "[1, 2]"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await old.set("emb", evil, binary=payload)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "pickle" in info.value.details()

    req = pb.BatchSetVariablesRequest(session_id=old.sid, atomic=True)
    req.updates["emb"].CopyFrom(evil)
    req.binary_updates["emb"] = payload
    try:
        reply = await old.call("SetVariables", req)
        assert not reply.success and "pickle" in reply.errors["emb"]
    except grpc.aio.AioRpcError as err:  # also allowed by the contract
        assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert json.loads((await old.get("emb")).value.value) == [1.0, 2.0]
    tensor_meta = json.dumps({"shape": [2], "dtype": "float64", "binary_format": "pickle"})
    with pytest.raises(grpc.aio.AioRpcError):
        await old.register("ten", "tensor", any_json("tensor", tensor_meta, ".binary"),
                           binary=payload)
    assert not marker.exists()


async def test_raw_binary_payload_from_a_new_peer(old):
    arr = np.array([1.5, -2.0], dtype="<f4")
    meta = json.dumps({"shape": [2], "dtype": "float32", "binary_format": "raw"})
    await old.register("emb", "embedding", any_json("embedding", meta, ".binary"),
                       binary=arr.tobytes())
    assert json.loads((await old.get("emb")).value.value) == [1.5, -2.0]
    for bad_meta, payload in (
        ({"shape": [3], "dtype": "float32", "binary_format": "raw"}, arr.tobytes()),
        ({"shape": [2], "dtype": "float32", "binary_format": "raw"}, b"\x00" * 7),
        ({"shape": [2], "dtype": "complex64", "binary_format": "raw"}, arr.tobytes()),
        ({"shape": [2], "dtype": "float32", "binary_format": "erlang_binary"}, arr.tobytes()),
        ({"shape": [10**20, 0], "dtype": "float32", "binary_format": "raw"}, b""),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await old.set("emb", any_json("embedding", json.dumps(bad_meta), ".binary"),
                          binary=payload)
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT, bad_meta


# ----------------------------------------------------------------------------------------------
# status codes and message shapes


async def test_not_found_details(old, server):
    for rpc, request in (
        ("GetVariable", pb.GetVariableRequest(session_id=old.sid, variable_identifier="zz")),
        ("SetVariable", pb.SetVariableRequest(session_id=old.sid, variable_identifier="zz",
                                              value=any_json("integer", "1"))),
        ("DeleteVariable", pb.DeleteVariableRequest(session_id=old.sid, variable_identifier="zz")),
        ("GetVariable", pb.GetVariableRequest(session_id="no-such-session",
                                              variable_identifier="x")),
        ("GetSession", pb.GetSessionRequest(session_id="no-such-session")),
        ("ListVariables", pb.ListVariablesRequest(session_id="no-such-session")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await old.call(rpc, request)
        assert info.value.code() is grpc.StatusCode.NOT_FOUND, rpc
        assert "not found" in info.value.details().lower(), rpc


async def test_refused_single_writes_are_non_ok_statuses(old):
    await old.register("x", "float", any_json("float", "0.5"), json.dumps({"max": 1.0}))
    for value in (any_json("float", "1.5"), any_json("float", '"abc"'),
                  any_json("nonsense", "1"), any_json("float", "{not json")):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await old.set("x", value)
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await old.register("y", "float", any_json("float", "0.5"), "{not json")
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await old.register("y", "float", any_json("float", "0.5"), '{"maxi": 1}')
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "maxi" in info.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await old.register("x", "float", any_json("float", "0.5"))
    assert info.value.code() is grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await old.call("SetVariable", pb.SetVariableRequest(
            session_id=old.sid, variable_identifier="x", value=any_json("float", "0.7"),
            expected_version=5))
    assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert (await old.get("x")).version == 0


async def test_get_variables_keyed_as_requested(old):
    reply = await old.register("a", "integer", any_json("integer", "1"))
    await old.register("b", "integer", any_json("integer", "2"))
    req = pb.BatchGetVariablesRequest(session_id=old.sid,
                                      variable_identifiers=["z2", reply.variable_id, "b", "z1"])
    got = await old.call("GetVariables", req)
    assert set(got.variables) == {reply.variable_id, "b"}
    assert got.variables[reply.variable_id].name == "a"
    assert list(got.missing_variables) == ["z2", "z1"]
    batch = pb.BatchSetVariablesRequest(session_id=old.sid, atomic=False)
    batch.updates[reply.variable_id].CopyFrom(any_json("integer", "10"))
    batch.updates["b"].CopyFrom(any_json("integer", "20"))
    out = await old.call("SetVariables", batch)
    assert out.success and dict(out.new_versions) == {reply.variable_id: 1, "b": 1}


async def test_atomic_batch_refusal_applies_nothing(old):
    await old.register("a", "integer", any_json("integer", "1"), json.dumps({"max": 5}))
    await old.register("b", "integer", any_json("integer", "1"))
    batch = pb.BatchSetVariablesRequest(session_id=old.sid, atomic=True)
    batch.updates["a"].CopyFrom(any_json("integer", "50"))
    batch.updates["b"].CopyFrom(any_json("integer", "2"))
    out = await old.call("SetVariables", batch)
    assert not out.success and set(out.errors) == {"a"} and not out.new_versions
    assert json.loads((await old.get("b")).value.value) == 1


async def test_variable_message_fields(old):
    await old.register("x", "integer", any_json("integer", "1"))
    var = await old.get("x")
    assert var.HasField("optimization_status") and var.optimization_status.optimizing is False
    assert json.loads(var.constraints_json) == {}
    assert var.version == 0 and var.mod_revision == var.create_revision > 0
    assert var.HasField("last_updated_at") and var.last_updated_at.seconds > 1_600_000_000
    listed = await old.call("ListVariables", pb.ListVariablesRequest(session_id=old.sid))
    for v in listed.variables:
        assert v.HasField("optimization_status")
        assert isinstance(json.loads(v.constraints_json), dict)


async def test_session_rpcs(old):
    ping = await old.call("Ping", pb.PingRequest(message="hello"))
    assert ping.message == "pong: hello" and ping.server_time.seconds > 1_600_000_000
    again = await old.call("InitializeSession", pb.InitializeSessionRequest(session_id=old.sid))
    assert again.success  # idempotent
    hb = await old.call("Heartbeat", pb.HeartbeatRequest(session_id=old.sid))
    assert hb.session_valid and hb.server_time.seconds > 0
    hb = await old.call("Heartbeat", pb.HeartbeatRequest(session_id="nobody-here"))
    assert not hb.session_valid
    info = await old.call("GetSession", pb.GetSessionRequest(session_id=old.sid))
    assert info.session_id == old.sid and info.created_at.seconds > 1_600_000_000
    for rpc, request in (("GetExposedElixirTools", pb.GetExposedElixirToolsRequest()),
                         ("ExecuteTool", pb.ExecuteToolRequest())):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await old.call(rpc, request)
        assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(grpc.aio.AioRpcError) as info:  # served now (tests/test_dependencies.py)
        await old.call("AddDependency", pb.AddDependencyRequest())
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    # v0.4.x WatchVariables: initial values, then one VariableUpdate per change
    await old.register("watched", "integer", any_json("integer", "1"))
    stream = old.stub.WatchVariables(
        pb.WatchVariablesRequest(session_id=old.sid, variable_identifiers=["watched"],
                                 include_initial_values=True), metadata=old.md, timeout=10)
    first = await stream.read()
    assert first.update_type == "initial_value" and first.variable.value.value == b"1"
    await old.call("SetVariable", pb.SetVariableRequest(
        session_id=old.sid, variable_identifier="watched", value=any_json("integer", "2")))
    second = await stream.read()
    assert second.update_type == "value_change" and second.variable.value.value == b"2"
    assert second.variable.version == 1
    stream.cancel()


async def test_list_pattern_is_a_glob_never_internal(old):
    await old.register("temp_a", "integer", any_json("integer", "1"))
    await old.register("other", "integer", any_json("integer", "1"))
    for pattern, names in (("temp*", ["temp_a"]), ("(", []), ("[a-", []), (".*", []),
                           ("*", ["temp_a", "other"]), ("t??p_a", ["temp_a"])):
        got = await old.call("ListVariables", pb.ListVariablesRequest(session_id=old.sid,
                                                                      pattern=pattern))
        assert [v.name for v in got.variables] == names, pattern


# ----------------------------------------------------------------------------------------------
# error_from_rpc: mapping of (old) servers' statuses


class FakeRpcError(grpc.RpcError):
    """The three methods a grpc.aio.AioRpcError offers, with given values."""

    def __init__(self, code, details="", trailing=()) -> None:
        self._code, self._details, self._trailing = code, details, trailing

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return self._trailing


S = grpc.StatusCode


@pytest.mark.parametrize(("code", "details", "cls"), [
    (S.INTERNAL, "value 1.5 is above maximum 1.0", dn.ConstraintViolation),
    (S.INTERNAL, "must be an integer", dn.ConstraintViolation),
    (S.INTERNAL, "Unknown type: :dict", ValueError),
    (S.INTERNAL, "Invalid constraints: bad", ValueError),
    (S.INTERNAL, "Variable not found: x", dn.VariableNotFoundError),
    (S.UNKNOWN, "Variable not found: x", dn.VariableNotFoundError),
    (S.NOT_FOUND, "Variable not found: x", dn.VariableNotFoundError),
    (S.NOT_FOUND, "Session not found: s", dn.SessionNotFoundError),
    (S.ALREADY_EXISTS, "exists", dn.VariableExistsError),
    (S.FAILED_PRECONDITION, "version", dn.VersionConflict),
    (S.PERMISSION_DENIED, "no", dn.AccessDenied),
    (S.UNAUTHENTICATED, "no", dn.AuthenticationError),
    (S.UNIMPLEMENTED, "Variable watching not yet implemented (Stage 3)", dn.Unsupported),
    (S.RESOURCE_EXHAUSTED, "too big", dn.ResourceLimitExceeded),
])
def test_error_from_rpc_without_trailing_kind(code, details, cls):
    exc = error_from_rpc(FakeRpcError(code, details), "SetVariable('x')")
    assert isinstance(exc, cls), (type(exc), code, details)
    assert isinstance(exc, dn.DspexError)
    assert details in str(exc)


@pytest.mark.parametrize("code", [S.UNAVAILABLE, S.DEADLINE_EXCEEDED, S.CANCELLED])
def test_error_from_rpc_unavailable(code):
    exc = error_from_rpc(FakeRpcError(code, "connection refused"), "Ping")
    assert isinstance(exc, dn.BridgeUnavailable) and isinstance(exc, grpc.RpcError)
    assert exc.code() is code
    assert "Ping" in str(exc) and "connection refused" in exc.details()


def test_error_from_rpc_trailing_kind_wins():
    err = FakeRpcError(S.INVALID_ARGUMENT, "'x': bad type", (("dspex-error", "VariableTypeError"),))
    exc = error_from_rpc(err)
    assert isinstance(exc, dn.VariableTypeError) and isinstance(exc, TypeError)
    unknown_kind = FakeRpcError(S.INVALID_ARGUMENT, "odd", (("dspex-error", "NoSuchKind"),))
    assert type(error_from_rpc(unknown_kind)) is dn.DspexError


def test_error_from_rpc_other_internal_errors_stay_generic():
    exc = error_from_rpc(FakeRpcError(S.INTERNAL, "segfault in the NIF"), "GetVariable('x')")
    assert type(exc) is dn.DspexError
    assert "GetVariable('x')" in str(exc) and "INTERNAL" in str(exc)


async def test_client_against_an_old_style_server():
    """A v0.4.x-like server: no server_version (so arrays go as JSON), register answers with
    the id only, validation failures come back as INTERNAL with the message."""
    seen: list = []

    class OldServer(pb_grpc.BridgeServiceServicer):
        async def Ping(self, request, context):
            return pb.PingResponse(message=f"pong: {request.message}")

        async def InitializeSession(self, request, context):
            return pb.InitializeSessionResponse(success=True)

        async def RegisterVariable(self, request, context):
            seen.append(request)
            return pb.RegisterVariableResponse(success=True, variable_id=f"var_{request.name}_1")

        async def SetVariable(self, request, context):
            seen.append(request)
            await context.abort(grpc.StatusCode.INTERNAL, "value 1.5 is above maximum 1.0")

        async def GetVariable(self, request, context):
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"Variable not found: {request.variable_identifier}")

        async def GetVariables(self, request, context):  # knows nothing of values_only
            reply = pb.BatchGetVariablesResponse(missing_variables=["gone"])
            var = reply.variables["t"]
            var.name, var.type = "t", "float"
            var.value.type_url, var.value.value = URL + "float", b"0.25"
            return reply

    server = grpc.aio.server()
    pb_grpc.add_BridgeServiceServicer_to_server(OldServer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        ctx = await dn.SessionContext("old", channel).initialize()
        vid = await ctx.register_variable("emb", "embedding", np.arange(2000, dtype=np.float32))
        assert vid == "var_emb_1"
        req = seen[-1]
        assert req.initial_value.type_url == URL + "embedding"  # JSON, not .binary
        assert req.initial_binary_value == b""
        assert len(json.loads(req.initial_value.value)) == 2000
        with pytest.raises(dn.ConstraintViolation, match="above maximum"):
            await ctx.set_variable("x", 1.5)
        with pytest.raises(KeyError):
            await ctx.get_variable("nothing")
        assert await ctx.get_variables(["t", "gone"], defaults={"gone": 1}) == {"t": 0.25, "gone": 1}
    finally:
        await channel.close()
        await server.stop(None)


# ----------------------------------------------------------------------------------------------
# generated code, layering, exports


def test_generated_protos_have_not_drifted():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


def test_service_keeps_the_v043_method_set():
    service = pb.DESCRIPTOR.services_by_name["BridgeService"]
    assert pb.DESCRIPTOR.package == "snakepit.bridge"
    names = {m.name for m in service.methods}
    assert names >= {
        "Ping", "InitializeSession", "CleanupSession", "GetSession", "Heartbeat", "ExecuteTool",
        "ExecuteStreamingTool", "RegisterTools", "GetExposedElixirTools", "ExecuteElixirTool",
        "GetVariable", "SetVariable", "GetVariables", "SetVariables", "RegisterVariable",
        "ListVariables", "DeleteVariable", "WatchVariables", "AddDependency",
        "StartOptimization", "StopOptimization", "GetVariableHistory", "RollbackVariable",
    }
    fields = {f.name: f.number for f in pb.Variable.DESCRIPTOR.fields}
    assert {k: fields[k] for k in ("id", "name", "type", "value", "constraints_json", "metadata",
                                   "source", "last_updated_at", "version",
                                   "access_control_json", "optimization_status",
                                   "binary_value")} == {
        "id": 1, "name": 2, "type": 3, "value": 4, "constraints_json": 5, "metadata": 6,
        "source": 7, "last_updated_at": 8, "version": 9, "access_control_json": 10,
        "optimization_status": 11, "binary_value": 12}
    set_req = {f.name: f.number for f in pb.SetVariableRequest.DESCRIPTOR.fields}
    assert set_req["expected_version"] == 5 and set_req["binary_value"] == 6


def _imports(path: pathlib.Path, root: pathlib.Path = ROOT) -> list[str]:
    """Absolute module names imported by ``path`` (relative imports resolved)."""
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.append(mod)
            found += [f"{mod}.{a.name}" for a in node.names]
    return found


def test_only_wire_imports_grpc_or_proto():
    offenders = []
    checked = 0
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith(("_wire/", "_proto/")):
            continue
        checked += 1
        for mod in _imports(path):
            if mod == "grpc" or mod.startswith(("grpc.", "google.protobuf")) or (
                    "_proto" in mod.split(".")):
                offenders.append(f"{rel}: {mod}")
    assert checked >= 10
    assert offenders == []


def test_import_boundary_checker_catches_violations(tmp_path):
    """The checker above must be able to fail."""
    fake = tmp_path / "dspex_notebook" / "server" / "probe.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("from .._proto import snakepit_bridge_pb2\nimport grpc.aio\n"
                    "from . import store\n")
    mods = _imports(fake, tmp_path)
    assert "dspex_notebook._proto" in mods and "grpc.aio" in mods
    assert "dspex_notebook.server" in mods


def test_public_exports_and_light_import():
    script = (
        "import sys, json\n"
        "import dspex_notebook as dn\n"
        "import types\n"
        "public = sorted(n for n, v in vars(dn).items()\n"
        "                if not n.startswith('_') and not isinstance(v, types.ModuleType))\n"
        "print(json.dumps({'all': list(dn.__all__), 'public': public,\n"
        "  'missing': [n for n in dn.__all__ if not hasattr(dn, n)],\n"
        "  'heavy': sorted(m for m in sys.modules if m.split('.')[0] in\n"
        "      ('IPython', 'ipywidgets', 'matplotlib', 'ipykernel', 'pandas', 'torch'))}))\n"
    )
    out = subprocess.run([sys.executable, "-W", "error", "-c", script], capture_output=True,
                         text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["missing"] == []
    assert len(info["all"]) == len(set(info["all"]))
    # IPython's extension hooks must be module-level functions but are not API
    hooks = {"load_ipython_extension", "unload_ipython_extension"}
    assert sorted(set(info["all"]) - {"__version__"}) == sorted(set(info["public"]) - hooks)
    assert info["heavy"] == []
    assert dn.__version__ and "__version__" in dn.__all__
