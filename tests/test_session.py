"""Every SessionContext method against a real server, plus revisions, versions and concurrency."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import textwrap

import grpc
import numpy as np
import pytest

import dspex_notebook as dn
from dspex_notebook.server import EmbeddedServer
from dspex_notebook.testing import running_server, session_for


async def revision(session) -> int:
    return (await session.ping())["revision"]


# ----------------------------------------------------------------------------------------------
# lifecycle


async def test_initialize_is_idempotent(server, session):
    rev = await revision(session)
    assert await session.initialize() is session
    assert await session.initialize({"k": "v"}) is session
    assert await revision(session) == rev  # re-initializing an existing session writes nothing
    await session.register_variable("x", "integer", 1)
    await session.initialize()
    assert await session.get_variable("x", bypass_cache=True) == 1  # and keeps its variables
    info = await session.get_session_info()
    assert info["session_id"] == session.session_id
    assert info["variable_count"] == 1
    assert info["created_at"] is not None


async def test_initialize_new_session_is_one_revision_and_keeps_metadata(server):
    async with session_for(server, "meta-session") as probe:
        rev = await revision(probe)
        channel = grpc.aio.insecure_channel(server.address)
        ctx = dn.SessionContext("fresh-session", channel, token=server.token)
        try:
            await ctx.initialize({"owner": "me"})
            assert await revision(probe) == rev + 1
            assert (await ctx.get_session_info())["metadata"] == {"owner": "me"}
            await ctx.cleanup()
        finally:
            await ctx.close()
            await channel.close()
        await probe.cleanup()


def test_session_id_must_be_a_non_empty_string():
    with pytest.raises(ValueError):
        dn.SessionContext("", None)
    with pytest.raises(ValueError):
        dn.SessionContext(None, None)  # type: ignore[arg-type]


@pytest.mark.parametrize("session_id", ["bad\x00id", "tab\there", "x" * 300])
async def test_bad_session_id_is_invalid_argument(server, session_id):
    channel = grpc.aio.insecure_channel(server.address)
    try:
        ctx = dn.SessionContext(session_id, channel, token=server.token)
        with pytest.raises(dn.InvalidArgument):
            await ctx.initialize()
    finally:
        await channel.close()


async def test_close_and_async_with(server):
    async with session_for(server, "closing") as ctx:
        await ctx.register_variable("x", "integer", 1)
        assert await ctx.get_variable("x") == 1
    await ctx.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await ctx.get_variable("x", bypass_cache=True)
    with pytest.raises(RuntimeError, match="closed"):
        await ctx.get_variable("x")  # not even from the (cleared) cache
    async with session_for(server, "closing") as again:  # the data stayed on the server
        assert await again.get_variable("x") == 1
        await again.cleanup()


async def test_close_does_not_close_a_channel_it_did_not_open(server):
    channel = grpc.aio.insecure_channel(server.address)
    try:
        async with dn.SessionContext("borrowed", channel, token=server.token) as ctx:
            await ctx.initialize()
            await ctx.register_variable("x", "integer", 1)
        async with dn.SessionContext("borrowed", channel, token=server.token) as ctx2:
            assert await ctx2.initialize() is ctx2
            assert await ctx2.get_variable("x") == 1
            await ctx2.cleanup()
    finally:
        await channel.close()


async def test_cleanup_deletes_session_and_variables(server):
    async with session_for(server, "cleanup-me") as ctx:
        await ctx.register_variables([
            {"name": "a", "type": "integer", "initial_value": 1},
            {"name": "b", "type": "string", "initial_value": "x"},
        ])
        assert await ctx.get_variable("a") == 1
        assert await ctx.cleanup() == 2
        with pytest.raises(KeyError) as info:
            await ctx.get_variable("a")  # the cache was dropped too
        assert isinstance(info.value, dn.SessionNotFoundError)
        assert "not found" in str(info.value).lower()
        assert await ctx.cleanup() == 0  # cleaning a missing session is fine
        await ctx.initialize()  # a new, empty session of the same id
        assert await ctx.list_variables() == []
        await ctx.cleanup()


async def test_ping(session):
    info = await session.ping()
    assert info["message"] == "pong: ping"
    assert info["server_time"].tzinfo is not None
    assert isinstance(info["store_id"], str) and len(info["store_id"]) >= 16
    assert info["revision"] >= 1
    assert info["server_version"].startswith("dspex-notebook/")


# ----------------------------------------------------------------------------------------------
# connect()


async def test_connect_with_address_and_token(server):
    ctx = await dn.SessionContext.connect("via-address", address=server.address,
                                          token=server.token, start_server=False)
    async with ctx:
        await ctx.register_variable("x", "integer", 3)
        assert await ctx.get_variable("x", bypass_cache=True) == 3
        await ctx.cleanup()


async def test_connect_finds_a_server_by_its_runtime_file(tmp_path):
    srv = EmbeddedServer(tmp_path / "s.db").start()  # runtime file in $DSPEX_RUNTIME_DIR
    try:
        # not the default store: it is not used without asking for it, and the error says
        # which servers run and how to choose one
        with pytest.raises(dn.BridgeUnavailable) as info:
            await dn.SessionContext.connect("found", start_server=False)
        assert f"{srv.address} (store {tmp_path / 's.db'})" in str(info.value)
        assert "db=PATH" in str(info.value)
        ctx = await dn.SessionContext.connect("found", db=tmp_path / "s.db", start_server=False)
        async with ctx:
            await ctx.register_variable("x", "integer", 7)
        ctx = await dn.SessionContext.connect("found", db=tmp_path / "s.db", start_server=False)
        async with ctx:
            assert await ctx.get_variable("x") == 7
            assert (await ctx.ping())["store_id"] == srv.store_id
    finally:
        srv.stop()
    with pytest.raises(dn.BridgeUnavailable):  # the runtime file went away with the server
        await dn.SessionContext.connect("found", start_server=False)


async def test_connect_from_environment(server, tmp_path, monkeypatch):
    token_file = tmp_path / "token"
    token_file.write_text(f"\n  {server.token}  \n")
    monkeypatch.setenv("DSPEX_ADDRESS", server.address)
    monkeypatch.setenv("DSPEX_TOKEN_FILE", str(token_file))
    ctx = await dn.SessionContext.connect("from-env")
    async with ctx:
        assert (await ctx.ping())["store_id"] == server.store_id
        await ctx.cleanup()
    monkeypatch.setenv("DSPEX_TOKEN_FILE", str(tmp_path / "missing"))
    monkeypatch.setenv("DSPEX_TOKEN", "wrong")
    with pytest.raises(dn.AuthenticationError):
        await dn.SessionContext.connect("from-env")


async def test_connect_without_any_server_and_start_server_false():
    with pytest.raises(dn.BridgeUnavailable, match="start_server=False"):
        await dn.SessionContext.connect("nobody", start_server=False)


# ----------------------------------------------------------------------------------------------
# register


async def test_register_returns_id_and_version_starts_at_zero(session):
    vid = await session.register_variable("temperature", "float", 0.7,
                                          constraints={"min": 0.0, "max": 2.0},
                                          metadata={"description": "LLM temperature"})
    info = await session.get_variable_info("temperature")
    assert info.id == vid
    assert info.version == 0
    assert info.constraints == {"min": 0.0, "max": 2.0}
    assert info.metadata["description"] == "LLM temperature"
    assert info.create_revision == info.mod_revision > 0
    assert info.updated_at is not None and info.updated_at.tzinfo is not None
    assert await session.get_variable(vid) == 0.7  # reachable by id too


async def test_register_existing_name_needs_replace(session):
    old = await session.register_variable("x", "integer", 1)
    await session.set_variable("x", 2)
    with pytest.raises(dn.VariableExistsError) as info:
        await session.register_variable("x", "integer", 5)
    assert isinstance(info.value, ValueError) and "'x'" in str(info.value)
    assert await session.get_variable("x", bypass_cache=True) == 2
    new = await session.register_variable("x", "string", "now a string", replace=True)
    assert new != old
    var = await session.get_variable_info("x")
    assert (var.type, var.value, var.version) == ("string", "now a string", 0)
    with pytest.raises(KeyError):
        await session.get_variable(old, bypass_cache=True)  # the replaced variable is gone
    assert [v.name for v in await session.list_variables()] == ["x"]


async def test_register_variables_is_atomic(server, session):
    rev = await revision(session)
    ids = await session.register_variables([
        {"name": "temperature", "type": "float", "initial_value": 0.7,
         "constraints": {"min": 0.0, "max": 2.0}},
        {"name": "model", "type": "choice", "initial_value": "gpt-4",
         "constraints": {"choices": ["gpt-4", "claude-3", "gemini"]}},
        {"name": "meta", "type": "dict", "initial_value": {"a": 1}, "metadata": {"k": "v"}},
    ])
    assert list(ids) == ["temperature", "model", "meta"]
    assert await revision(session) == rev + 1  # one batch, one revision
    assert await session.get_variables(["temperature", "model", "meta"]) == {
        "temperature": 0.7, "model": "gpt-4", "meta": {"a": 1}}
    infos = {v.name: v for v in await session.list_variables()}
    assert {v.create_revision for v in infos.values()} == {rev + 1}
    assert infos["meta"].metadata["k"] == "v"

    bad_batches = [
        # refused by the client (constraint) ...
        [{"name": "a1", "type": "integer", "initial_value": 1},
         {"name": "a2", "type": "float", "initial_value": 5.0, "constraints": {"max": 1.0}}],
        # ... by the server (name taken, bad name, duplicate in the batch) ...
        [{"name": "a1", "type": "integer", "initial_value": 1},
         {"name": "model", "type": "string", "initial_value": "x"}],
        [{"name": "a1", "type": "integer", "initial_value": 1},
         {"name": "9bad", "type": "integer", "initial_value": 1}],
        [{"name": "a1", "type": "integer", "initial_value": 1},
         {"name": "a1", "type": "integer", "initial_value": 2}],
        # ... or malformed
        [{"name": "a1", "type": "integer", "initial_value": 1},
         {"name": "a2", "type": "integer", "initial_value": 1, "bogus": True}],
        [{"name": "a1", "type": "integer", "initial_value": 1},
         {"name": "a2", "type": "nope", "initial_value": 1}],
    ]
    rev = await revision(session)
    for batch in bad_batches:
        with pytest.raises(ValueError):
            await session.register_variables(batch)
    assert await revision(session) == rev
    async with session_for(server, session.session_id) as other:
        assert [v.name for v in await other.list_variables()] == ["temperature", "model", "meta"]
        with pytest.raises(KeyError):
            await other.get_variable("a1")


async def test_register_variables_with_replace(session):
    await session.register_variable("a", "integer", 1)
    ids = await session.register_variables([
        {"name": "a", "type": "string", "initial_value": "s", "replace": True},
        {"name": "b", "type": "integer", "initial_value": 2},
    ])
    assert set(ids) == {"a", "b"}
    assert await session.get_variables(["a", "b"]) == {"a": "s", "b": 2}


# ----------------------------------------------------------------------------------------------
# get


async def test_get_variable_default_and_key_error(session):
    assert await session.get_variable("missing", default=5) == 5
    assert await session.get_variable("missing", default=0) == 0  # falsy defaults count
    assert await session.get_variable("missing", default=False) is False
    with pytest.raises(KeyError):
        await session.get_variable("missing")
    with pytest.raises(dn.VariableNotFoundError):
        await session.get_variable("missing", default=None, bypass_cache=True)
    await session.register_variable("present", "integer", 1)
    assert await session.get_variable("present", default=5) == 1


async def test_get_variable_bypass_cache_without_a_watch(server):
    # coherent_cache=False: the TTL alone decides, so another client's write is not seen
    async with session_for(server, "ttl-only", coherent_cache=False, cache_ttl=3600) as session:
        await session.register_variable("x", "integer", 1)
        assert await session.get_variable("x") == 1
        async with session_for(server, session.session_id) as other:
            await other.set_variable("x", 2)
        assert await session.get_variable("x") == 1  # fresh enough for the cache ...
        assert await session.get_variable("x", bypass_cache=True) == 2  # ... not for a bypass
        assert await session.get_variable("x") == 2  # and the bypass refreshed the cache


async def test_cache_is_coherent_across_name_and_id(session):
    session.set_cache_config(ttl=3600)
    vid = await session.register_variable("x", "integer", 1)
    assert await session.get_variable(vid) == 1
    assert await session.get_variable("x") == 1
    await session.set_variable("x", 2)
    assert await session.get_variable(vid) == 2
    await session.set_variable(vid, 3)
    assert await session.get_variable("x") == 3
    await session.update_variables({vid: 4})
    assert await session.get_variable("x") == 4
    await session.delete_variable(vid)
    with pytest.raises(KeyError):
        await session.get_variable("x")


async def test_get_variables(server, session):
    session.set_cache_config(ttl=3600)
    await session.register_variables([
        {"name": n, "type": "integer", "initial_value": i} for i, n in enumerate("abcd")
    ])
    session.set_cache_config(ttl=0)
    session.set_cache_config(ttl=3600)  # start with an empty cache
    # order preserved, whatever the server's map order
    assert list(await session.get_variables(["d", "b", "a", "c"])) == ["d", "b", "a", "c"]
    # defaults fill missing names only
    got = await session.get_variables(["a", "zz", "b"], defaults={"zz": 9, "a": 100})
    assert got == {"a": 0, "zz": 9, "b": 1} and list(got) == ["a", "zz", "b"]
    # every missing name is named
    with pytest.raises(KeyError) as info:
        await session.get_variables(["a", "nope1", "b", "nope2"])
    assert isinstance(info.value, dn.VariableNotFoundError)
    assert "nope1" in str(info.value) and "nope2" in str(info.value)
    # include_metadata
    meta = await session.get_variables(["a", "nope"], defaults={"nope": 1}, include_metadata=True)
    assert meta["a"]["value"] == 0
    assert meta["a"]["metadata"]["type"] == "integer"
    assert meta["a"]["metadata"]["version"] == 0
    assert meta["a"]["metadata"]["name"] == "a"
    assert meta["nope"] == {"value": 1, "metadata": None}
    with pytest.raises(KeyError, match="nope"):
        await session.get_variables(["nope"], include_metadata=True)


async def test_get_variables_cache_hits_skip_the_round_trip(server, session):
    session.set_cache_config(ttl=3600)
    await session.register_variables([
        {"name": "a", "type": "integer", "initial_value": 1},
        {"name": "b", "type": "integer", "initial_value": 2},
    ])
    session.set_cache_config(ttl=0)
    session.set_cache_config(ttl=3600)
    before = session.get_cache_info()
    assert await session.get_variables(["a", "b"]) == {"a": 1, "b": 2}
    mid = session.get_cache_info()
    assert mid["misses"] - before["misses"] == 2 and mid["hits"] == before["hits"]
    async with session_for(server, session.session_id) as other:
        await other.update_variables({"a": 10, "b": 20})
    # served from the cache, no round trip: the watch already brought the other client's write
    assert await wait_for_value(session, "b", 20)
    mid = session.get_cache_info()  # (the wait looked into the cache too)
    assert await session.get_variables(["a", "b"]) == {"a": 10, "b": 20}
    after = session.get_cache_info()
    assert after["hits"] - mid["hits"] == 2 and after["misses"] == mid["misses"]
    assert await session.get_variable("a", bypass_cache=True) == 10


async def test_second_client_sees_writes_through_its_coherent_cache(server, session):
    await session.register_variable("shared", "string", "one")
    async with session_for(server, session.session_id, cache_ttl=3600) as other:
        assert await other.get_variable("shared") == "one"
        await session.set_variable("shared", "two")
        assert await wait_for_value(other, "shared", "two")  # its watch updated the cache
        await other.set_variable("shared", "three")
    assert await session.get_variable("shared", bypass_cache=True) == "three"


async def wait_for_value(ctx, name, value, timeout=5.0):
    """Poll the cache (no round trips) until it holds ``value``; bounded."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if ctx.cached_value(name) == value:
            return True
        await asyncio.sleep(0.005)
    return False


# ----------------------------------------------------------------------------------------------
# set / update


async def test_set_variable_versions_and_metadata(session):
    await session.register_variable("x", "integer", 0)
    versions = [await session.set_variable("x", i, metadata={"reason": "test", "i": str(i)})
                for i in range(1, 6)]
    assert versions == [1, 2, 3, 4, 5]
    info = await session.get_variable_info("x")
    assert (info.version, info.value) == (5, 5)
    with pytest.raises(dn.ResourceLimitExceeded):
        await session.set_variable("x", 6, metadata={f"k{i}": "v" for i in range(1000)})
    assert (await session.get_variable_info("x")).version == 5


async def test_set_variable_missing(session):
    with pytest.raises(KeyError) as info:
        await session.set_variable("nope", 1)
    assert isinstance(info.value, dn.VariableNotFoundError)
    with pytest.raises(KeyError):
        await session.get_variable("nope")


async def test_set_variable_create_if_missing(session):
    assert await session.set_variable("cfg", {"key": "value"}, create_if_missing=True,
                                      type_hint="dict") == 0
    info = await session.get_variable_info("cfg")
    assert (info.type, info.value, info.version) == ("dict", {"key": "value"}, 0)
    assert await session.set_variable("cfg", {"key": 2}, create_if_missing=True) == 1
    # inferred types
    cases = {"f": (0.5, "float"), "i": (3, "integer"), "s": ("x", "string"), "b": (True, "boolean"),
             "l": ([1, 2], "list"), "e": (np.ones(3), "embedding"),
             "t": (np.ones((2, 2), dtype=np.int8), "tensor")}
    for name, (value, type_name) in cases.items():
        await session.set_variable(name, value, create_if_missing=True)
        assert (await session.get_variable_info(name)).type == type_name
    # a hint wins over inference
    await session.set_variable("as_float", 3, create_if_missing=True, type_hint="float")
    assert await session.get_variable("as_float", bypass_cache=True) == 3.0
    # nothing fits: TypeError, nothing created
    with pytest.raises(TypeError) as exc:
        await session.set_variable("weird", object(), create_if_missing=True)
    assert isinstance(exc.value, dn.VariableTypeError) and "type_hint" in str(exc.value)
    with pytest.raises(KeyError):
        await session.get_variable("weird")
    with pytest.raises(dn.InvalidArgument):
        await session.set_variable("w2", 1, create_if_missing=True, type_hint="nonsense")


def test_infer_type():
    assert dn.infer_type(True) == "boolean"
    assert dn.infer_type(np.bool_(False)) == "boolean"
    assert dn.infer_type(1) == "integer" and dn.infer_type(np.int8(1)) == "integer"
    assert dn.infer_type(1.5) == "float" and dn.infer_type(np.float32(1)) == "float"
    assert dn.infer_type("s") == "string"
    assert dn.infer_type({"a": 1}) == "dict"
    assert dn.infer_type((1,)) == "list"
    assert dn.infer_type(np.ones(2)) == "embedding"
    assert dn.infer_type(np.ones(2, dtype=np.int64)) == "tensor"
    assert dn.infer_type(np.ones((2, 2))) == "tensor"
    with pytest.raises(TypeError):
        dn.infer_type(None)
    with pytest.raises(TypeError):
        dn.infer_type(b"bytes")


async def test_unaware_client_writes_are_checked_locally_first(server, session):
    """A client that has not seen a variable infers the value's type; values that have no wire
    form fail with a DspexError before any round trip (not a bare json TypeError)."""
    await session.register_variable("l", "list", [1])
    async with session_for(server, session.session_id) as other:
        for bad in ([float("nan")], [object()], {(1, 2): "x"}):
            with pytest.raises(dn.DspexError):
                await other.set_variable("l", bad)
        await other.set_variable("l", [np.int64(3), np.float32(0.5), (1, 2)])
    assert await session.get_variable("l", bypass_cache=True) == [3, 0.5, [1, 2]]


async def test_expected_version(session):
    await session.register_variable("x", "integer", 0)
    assert await session.set_variable("x", 1, expected_version=0) == 1
    with pytest.raises(dn.VersionConflict) as info:
        await session.set_variable("x", 99, expected_version=0)
    assert isinstance(info.value, ValueError)
    assert "version 1" in str(info.value) and "expected 0" in str(info.value)
    assert await session.get_variable("x", bypass_cache=True) == 1
    assert await session.get_variable("x") == 1  # the refused value was not cached either
    assert await session.set_variable("x", 2, expected_version=1) == 2


async def test_update_variables_atomic(server, session):
    await session.register_variables([
        {"name": "t", "type": "float", "initial_value": 0.5, "constraints": {"min": 0, "max": 1}},
        {"name": "n", "type": "integer", "initial_value": 1},
        {"name": "m", "type": "choice", "initial_value": "a", "constraints": {"choices": ["a", "b"]}},
    ])
    rev = await revision(session)
    assert await session.update_variables({"t": 0.8, "n": 2, "m": "b"}) == {
        "t": True, "n": True, "m": True}
    assert await revision(session) == rev + 1  # one batch, one revision
    assert [v.version for v in await session.list_variables()] == [1, 1, 1]

    async def check_unchanged():
        assert await session.get_variables(["t", "n", "m"]) == {"t": 0.8, "n": 2, "m": "b"}
        async with session_for(server, session.session_id) as other:
            assert await other.get_variables(["t", "n", "m"]) == {"t": 0.8, "n": 2, "m": "b"}
        assert await revision(session) == rev + 1

    # refused locally (constraint known to this client)
    res = await session.update_variables({"t": 5.0, "n": 3, "m": "a"})
    assert res["t"] is not True and "max" in res["t"]
    for name in ("n", "m"):
        assert "not applied" in res[name] and "'t'" in res[name]
    assert list(res) == ["t", "n", "m"]
    await check_unchanged()
    # refused by the server (unknown variable; invalid value from a client that cannot check)
    res = await session.update_variables({"n": 3, "ghost": 1})
    assert "not found" in res["ghost"].lower() and "not applied" in res["n"]
    await check_unchanged()
    async with session_for(server, session.session_id) as other:
        res = await other.update_variables({"n": 3, "m": "zzz"})
        assert "choices" in res["m"] and "not applied" in res["n"]
    await check_unchanged()


async def test_update_variables_non_atomic(session):
    await session.register_variables([
        {"name": "t", "type": "float", "initial_value": 0.5, "constraints": {"max": 1}},
        {"name": "n", "type": "integer", "initial_value": 1},
    ])
    rev = await revision(session)
    res = await session.update_variables({"t": 5.0, "n": 3, "ghost": 1}, atomic=False)
    assert res["n"] is True
    assert "max" in res["t"] and "not found" in res["ghost"].lower()
    assert await session.get_variables(["t", "n"]) == {"t": 0.5, "n": 3}
    assert await session.get_variable("n", bypass_cache=True) == 3
    assert await revision(session) == rev + 1
    res = await session.update_variables({"t": 7.0}, atomic=False)  # nothing valid: no write
    assert res["t"] is not True
    assert await revision(session) == rev + 1


# ----------------------------------------------------------------------------------------------
# list / delete


async def test_list_variables_order_and_glob(session):
    names = ["temp_b", "temp_a", "top_p", "a.c", "abc", "tamp"]
    for i, name in enumerate(names):
        await session.register_variable(name, "integer", i)
    await session.set_variable("temp_b", 10)  # a write does not change the order
    assert [v.name for v in await session.list_variables()] == names
    assert [v.name for v in await session.list_variables("*")] == names
    assert [v.name for v in await session.list_variables("temp*")] == ["temp_b", "temp_a"]
    assert [v.name for v in await session.list_variables("t?mp*")] == ["temp_b", "temp_a", "tamp"]
    assert [v.name for v in await session.list_variables("a.c")] == ["a.c"]  # '.' is literal
    assert [v.name for v in await session.list_variables("t*p")] == ["top_p", "tamp"]  # anchored
    assert await session.list_variables("(") == []  # no live regex, no error
    assert await session.list_variables("[") == []
    var = (await session.list_variables("temp_b"))[0]
    assert (var.value, var.version, var.type) == (10, 1, "integer")


async def test_delete_variable(session):
    await session.register_variable("x", "integer", 1)
    assert await session.get_variable("x") == 1
    rev_before = await revision(session)
    await session.delete_variable("x")
    assert await revision(session) == rev_before + 1
    with pytest.raises(KeyError):
        await session.get_variable("x")  # not served from a stale cache
    with pytest.raises(dn.VariableNotFoundError):
        await session.delete_variable("x")
    assert await revision(session) == rev_before + 1
    await session.register_variable("x", "string", "again")  # the name is free again
    assert await session.get_variable("x") == "again"


# ----------------------------------------------------------------------------------------------
# cache configuration


async def test_cache_info_and_config(session):
    info = session.get_cache_info()
    assert set(info) >= {"size", "ttl", "hit_rate", "eviction_count", "max_size",
                         "eviction_policy", "hits", "misses"}
    await session.register_variable("x", "integer", 1)
    session.set_cache_config(ttl=3600, max_size=2, eviction_policy="fifo")
    info = session.get_cache_info()
    assert (info["ttl"], info["max_size"], info["eviction_policy"]) == (3600, 2, "fifo")
    for name in ("a", "b", "c"):
        await session.register_variable(name, "integer", 0)
    info = session.get_cache_info()
    assert info["size"] == 2 and info["eviction_count"] >= 1
    hits = info["hits"]
    await session.get_variable("c")
    assert session.get_cache_info()["hits"] == hits + 1
    assert 0.0 < session.get_cache_info()["hit_rate"] <= 1.0

    session.set_cache_config(ttl=0)  # disables the cache
    assert session.get_cache_info()["size"] == 0
    misses = session.get_cache_info()["misses"]
    for _ in range(3):
        assert await session.get_variable("x") == 1
    info = session.get_cache_info()
    assert info["size"] == 0 and info["misses"] == misses + 3

    for bad in ({"eviction_policy": "random"}, {"ttl": -1}, {"max_size": 0}):
        with pytest.raises(ValueError):
            session.set_cache_config(**bad)


# ----------------------------------------------------------------------------------------------
# revisions and concurrency


async def test_revision_is_store_wide_and_counts_writes(server, session):
    rev = await revision(session)
    await session.register_variable("x", "integer", 0)
    assert await revision(session) == rev + 1
    await session.set_variable("x", 1)
    assert await revision(session) == rev + 2
    await session.get_variable("x", bypass_cache=True)
    await session.get_variables(["x"], include_metadata=True)
    await session.list_variables()
    assert await revision(session) == rev + 2  # reads write nothing
    with pytest.raises(dn.VariableTypeError):
        await session.set_variable("x", "nope")
    assert await revision(session) == rev + 2  # neither do refused writes
    async with session_for(server, session.session_id + "-other") as other:
        assert await revision(session) == rev + 3  # a new session is a write ...
        await other.register_variable("y", "integer", 0)  # ... and so is another session's write
        assert await revision(session) == rev + 4
        assert (await other.get_variable_info("y")).mod_revision == rev + 4
        await other.cleanup()
    assert await revision(session) == rev + 5
    await session.update_variables({"x": 2})
    assert await revision(session) == rev + 6
    assert (await session.get_variable_info("x")).mod_revision == rev + 6


async def test_many_tasks_share_one_session(session):
    await session.register_variables(
        [{"name": "counter", "type": "integer", "initial_value": 0}]
        + [{"name": f"v{i}", "type": "integer", "initial_value": -1} for i in range(50)]
    )
    versions = await asyncio.gather(*(session.set_variable("counter", i) for i in range(1, 51)))
    assert sorted(versions) == list(range(1, 51))  # every write got its own version
    assert (await session.get_variable_info("counter")).version == 50

    async def write_then_read(i: int) -> tuple[int, int, int]:
        await session.set_variable(f"v{i}", i)
        return i, await session.get_variable(f"v{i}"), await session.get_variable(
            f"v{i}", bypass_cache=True)

    results = await asyncio.gather(*(write_then_read(i) for i in range(50)))
    assert all(i == cached == fetched for i, cached, fetched in results)
    values = await session.get_variables([f"v{i}" for i in range(50)])
    assert values == {f"v{i}": i for i in range(50)}
    mixed = await asyncio.gather(
        *(session.get_variable(f"v{i}", bypass_cache=i % 2 == 0) for i in range(50)),
        *(session.update_variables({f"v{i}": i + 100}) for i in range(50)),
    )
    assert all(r == {f"v{i}": True} for i, r in enumerate(mixed[50:]))
    assert await session.get_variables([f"v{i}" for i in range(50)]) == {
        f"v{i}": i + 100 for i in range(50)}


async def test_session_from_a_second_running_loop_is_a_clear_runtime_error(session):
    await session.register_variable("x", "integer", 1)

    def other_loop() -> BaseException | None:
        async def use():
            await session.get_variable("x", bypass_cache=True)

        try:
            asyncio.run(use())
        except BaseException as exc:  # returned to the test loop for the assertions
            return exc
        return None

    exc = await asyncio.to_thread(other_loop)
    assert isinstance(exc, RuntimeError)
    assert "event loop" in str(exc)
    assert await session.get_variable("x", bypass_cache=True) == 1  # still fine on its own loop


def test_session_reused_after_its_loop_closed_is_a_clear_runtime_error(server):
    """``asyncio.run`` twice in a script: the channel died with the first loop."""
    script = textwrap.dedent(f"""
        import asyncio, warnings
        warnings.simplefilter("error")
        import dspex_notebook as dn
        from dspex_notebook._wire.client import insecure_channel

        async def first():
            ctx = dn.SessionContext("loops", insecure_channel({server.address!r}),
                                    token={server.token!r})
            await ctx.initialize()
            return ctx

        ctx = asyncio.run(first())
        try:
            asyncio.run(ctx.get_variable("x", bypass_cache=True))
        except RuntimeError as exc:
            print("RuntimeError:", exc)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert "RuntimeError:" in out.stdout, out.stdout + out.stderr
    assert "event loop" in out.stdout
    assert "Traceback" not in out.stderr, out.stderr


async def test_isolated_server_counts():
    """The same checks on a private server: revision starts at 0 on an empty store."""
    with running_server() as srv:
        async with session_for(srv, "only") as ctx:
            assert await revision(ctx) == 1  # the session itself
            await ctx.register_variable("x", "integer", 0)
            await ctx.set_variable("x", 1)
            assert await revision(ctx) == 3


async def test_mutating_a_returned_list_or_dict_does_not_change_the_cache(session):
    await session.register_variable("l", "list", [1, [2, 3]])
    await session.register_variable("d", "dict", {"a": {"b": 1}})
    first = await session.get_variable("l")
    first[1].append(99)
    first.append(4)
    assert await session.get_variable("l") == [1, [2, 3]]
    d = (await session.get_variables(["d"]))["d"]
    d["a"]["b"] = 2
    assert await session.get_variable("d") == {"a": {"b": 1}}
    assert session.get_cache_info()["hits"] >= 2  # served from the cache, still unchanged


def test_client_import_does_not_load_the_server_package():
    code = ("import sys, dspex_notebook; "
            "print(any(m.startswith('dspex_notebook.server') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


async def test_bulk_read_of_mixed_types_in_one_round_trip(session):
    """get_variables uses the packed values_only reply: every type, arrays sharing one blob,
    special floats, duplicates and missing names interleaved."""
    values = {
        "f": 0.5, "nan": float("nan"), "inf": float("-inf"), "i": 7, "s": "hé", "b": False,
        "c": "x", "m": "Predict", "e1": np.arange(3, dtype=np.float32),
        "t": np.arange(6, dtype=np.int16).reshape(2, 3), "e2": np.ones(5),
        "l": [1, "a", None], "d": {"k": [1.5]},
    }
    types = {"f": "float", "nan": "float", "inf": "float", "i": "integer", "s": "string",
             "b": "boolean", "c": "choice", "m": "module", "e1": "embedding", "t": "tensor",
             "e2": "embedding", "l": "list", "d": "dict"}
    cons = {"nan": {"allow_nonfinite": True}, "inf": {"allow_nonfinite": True},
            "c": {"choices": ["x", "y"]}}
    await session.register_variables([
        {"name": n, "type": types[n], "initial_value": v, "constraints": cons.get(n)}
        for n, v in values.items()
    ])
    session.set_cache_config(ttl=0)  # every name goes to the server
    names = ["e1", "missing1", *values, "e1", "missing2"]
    got = await session.get_variables(names, defaults={"missing1": 1, "missing2": 2})
    assert list(got) == ["e1", "missing1", *[n for n in values if n != "e1"], "missing2"]
    for name, want in values.items():
        have = got[name]
        if isinstance(want, np.ndarray):
            assert have.dtype == want.dtype and have.shape == want.shape
            assert np.array_equal(have, want) and not have.flags.writeable
        elif isinstance(want, float) and math.isnan(want):
            assert math.isnan(have)
        else:
            assert have == want and type(have) is type(want)
