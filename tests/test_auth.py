"""Authentication and per-principal session ownership."""

from __future__ import annotations

import json
import os
import stat

import grpc
import pytest

import dspex_notebook as dn
from dspex_notebook import VariableSpec
from dspex_notebook._proto import snakepit_bridge_pb2 as pb
from dspex_notebook._wire.server import start_grpc_server
from dspex_notebook.server import EmbeddedServer, Store
from dspex_notebook.server.backends import MemoryBackend
from dspex_notebook.server.runner import ServerConfig, is_loopback

SERVICE = pb.DESCRIPTOR.services_by_name["BridgeService"]


def _channel(server):
    return grpc.aio.insecure_channel(server.address)


@pytest.mark.parametrize("token", [None, "", "wrong", "Bearer x"])
async def test_wrong_or_missing_token_is_authentication_error(server, token):
    channel = _channel(server)
    try:
        ctx = dn.SessionContext("auth", channel, token=token)
        with pytest.raises(dn.AuthenticationError) as info:
            await ctx.initialize()
        assert isinstance(info.value, PermissionError)
        assert isinstance(info.value, dn.AccessDenied)
        assert "token" in str(info.value)
    finally:
        await channel.close()


async def test_token_with_a_wrong_prefix_is_refused(server):
    """Another scheme, a longer token or a mangled prefix is not accepted."""
    channel = _channel(server)
    try:
        ping = channel.unary_unary(f"/{SERVICE.full_name}/Ping")
        for value in (f"Basic {server.token}", f"Bearer {server.token}x",
                      f"Bearer  {server.token}", f"bearer {server.token}"):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await ping(b"", metadata=(("authorization", value),), timeout=10)
            assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED, value
        assert await ping(b"", metadata=(("authorization", f"Bearer {server.token}"),), timeout=10)
    finally:
        await channel.close()


@pytest.mark.parametrize("method", [m.name for m in SERVICE.methods])
async def test_every_rpc_requires_the_token(server, method):
    m = SERVICE.methods_by_name[method]
    channel = _channel(server)
    try:
        path = f"/{SERVICE.full_name}/{method}"
        for md in ((), (("authorization", "Bearer nope"),)):
            if m.server_streaming:
                call = channel.unary_stream(path)(b"", metadata=md, timeout=10)
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    async for _ in call:
                        pass
            else:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await channel.unary_unary(path)(b"", metadata=md, timeout=10)
            assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED, (method, md)
    finally:
        await channel.close()


class _TokenInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Adds the bearer token to every call, as a user's own channel setup might."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.calls = 0

    async def intercept_unary_unary(self, continuation, details, request):
        self.calls += 1
        metadata = list(details.metadata or ()) + [("authorization", f"Bearer {self.token}")]
        details = grpc.aio.ClientCallDetails(details.method, details.timeout, metadata,
                                             details.credentials, details.wait_for_ready)
        return await continuation(details, request)


async def test_token_added_by_a_client_interceptor(server):
    interceptor = _TokenInterceptor(server.token)
    channel = grpc.aio.insecure_channel(server.address, interceptors=[interceptor])
    try:
        async with dn.SessionContext("intercepted", channel) as ctx:  # no token= argument
            await ctx.initialize()
            await ctx.register_variable("x", "integer", 1)
            assert await ctx.get_variable("x", bypass_cache=True) == 1
            await ctx.cleanup()
        assert interceptor.calls >= 4
    finally:
        await channel.close()


# ----------------------------------------------------------------------------------------------
# principals


def test_store_principal_cannot_use_another_principals_session():
    store = Store(MemoryBackend())
    store.init_session("alice", "admin_x", {})
    rec = store.register("alice", "admin_x", VariableSpec("secret", "string", "s3cr3t", None, {}))
    rev = store.revision
    attempts = [
        lambda: store.init_session("bob", "admin_x", {}),  # naming it does not make it yours
        lambda: store.resolve("bob", "admin_x", "secret"),
        lambda: store.resolve("bob", "admin_x", rec.id),
        lambda: store.get_many("bob", "admin_x", ["secret"]),
        lambda: store.list("bob", "admin_x"),
        lambda: store.set("bob", "admin_x", "secret", "mine", {}),
        lambda: store.set_many("bob", "admin_x", {"secret": "mine"}, {}, True),
        lambda: store.register("bob", "admin_x", VariableSpec("other", "integer", 1, None, {})),
        lambda: store.delete("bob", "admin_x", "secret"),
        lambda: store.cleanup_session("bob", "admin_x"),
        lambda: store.get_session("bob", "admin_x"),
    ]
    for attempt in attempts:
        with pytest.raises(dn.AccessDenied) as info:
            attempt()
        assert isinstance(info.value, PermissionError)
    assert store.heartbeat("bob", "admin_x") is False
    assert store.heartbeat("alice", "admin_x") is True
    assert store.revision == rev
    assert store.resolve("alice", "admin_x", "secret").value == "s3cr3t"
    # bob's own session cannot reach alice's variable by its id either
    store.init_session("bob", "bobs", {})
    with pytest.raises(dn.VariableNotFoundError):
        store.resolve("bob", "bobs", rec.id)


async def test_two_principals_over_the_wire():
    """A grpc.aio server with two tokens (the Store supports many principals)."""
    store = Store(MemoryBackend())
    server, port = await start_grpc_server(store, "127.0.0.1", 0,
                                           {"tok-alice": "alice", "tok-bob": "bob"}, "test")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        async with dn.SessionContext("shared-name", channel, token="tok-alice") as alice:
            await alice.initialize()
            await alice.register_variable("x", "integer", 1)
        with pytest.raises(dn.AccessDenied) as info:  # `async with` initializes: refused
            async with dn.SessionContext("shared-name", channel, token="tok-bob"):
                pass
        assert not isinstance(info.value, dn.AuthenticationError)
        bob = dn.SessionContext("shared-name", channel, token="tok-bob")  # not initialized
        for call in (lambda: bob.get_variable("x"), lambda: bob.set_variable("x", 2),
                     bob.list_variables, lambda: bob.delete_variable("x"), bob.cleanup):
            with pytest.raises(PermissionError):
                await call()
        await bob.close()
        async with dn.SessionContext("shared-name", channel, token="tok-alice") as alice:
            assert await alice.get_variable("x") == 1
    finally:
        await channel.close()
        await server.stop(None)
        store.close()


# ----------------------------------------------------------------------------------------------
# binding and runtime files


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", "10.1.2.3"])
def test_non_loopback_bind_without_token_is_refused(host):
    with pytest.raises(ValueError, match="token"):
        EmbeddedServer(":memory:", host=host)
    with pytest.raises(ValueError, match="not loopback"):
        ServerConfig(host=host).check()
    srv = EmbeddedServer(":memory:", host=host, token="secret")  # allowed, never started here
    assert not srv.running and srv.address == ""


def test_loopback_detection():
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "10.0.0.1", "192.0.2.1"):
        assert not is_loopback(host), host


def test_runtime_file_is_private_and_removed_on_stop(tmp_path):
    folder = tmp_path / "rt"
    srv = EmbeddedServer(":memory:", runtime_dir=folder).start()
    try:
        path = srv.runtime_file
        assert path is not None and path.parent == folder
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        info = json.loads(path.read_text())
        assert info["address"] == srv.address and info["token"] == srv.token
        assert info["pid"] == os.getpid() and info["store_id"] == srv.store_id
        assert len(srv.token) >= 32
    finally:
        srv.stop()
    assert not path.exists()
    assert list(folder.iterdir()) == []


def test_each_server_gets_its_own_random_token():
    with EmbeddedServer(":memory:", write_runtime_file=False) as a, \
            EmbeddedServer(":memory:", write_runtime_file=False) as b:
        assert a.token != b.token
    with EmbeddedServer(":memory:", write_runtime_file=False, token="given") as c:
        assert c.token == "given"
