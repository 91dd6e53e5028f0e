"""The client cache never serves a value the server no longer has after this client's own
writes, whatever identifier (name or id) was used to write and to read."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

import dspex_notebook as dn
from dspex_notebook._cache import VariableCache
from dspex_notebook.testing import session_for


@pytest.fixture
async def cached(server, request):
    async with session_for(server, f"c-{request.node.name}"[:200], cache_ttl=60) as ctx:
        yield ctx
        await ctx.cleanup()


async def _server_value(server, session_id, ident):
    async with session_for(server, session_id) as fresh:
        return await fresh.get_variable(ident, bypass_cache=True)


@pytest.mark.parametrize("write", ["set", "update", "batch"])
async def test_a_write_by_name_invalidates_the_value_cached_by_id(server, cached, write):
    vid = await cached.register_variable("temp", "float", 0.7)
    assert await cached.get_variable(vid) == 0.7  # cached under the id
    if write == "set":
        await cached.set_variable("temp", 1.5)
    elif write == "update":
        assert await cached.update_variables({"temp": 1.5}) == {"temp": True}
    else:
        await cached.apply_batch([], {"temp": 1.5})
    assert await cached.get_variable(vid) == 1.5
    assert await _server_value(server, cached.session_id, vid) == 1.5


async def test_values_read_in_bulk_are_invalidated_by_later_writes(cached):
    vid = await cached.register_variable("t", "float", 0.7)
    other = await cached.get_variables([vid])  # reads through the id
    assert other == {vid: 0.7}
    await cached.set_variable("t", 1.5)
    assert await cached.get_variable(vid) == 1.5
    assert (await cached.get_variables([vid, "t"])) == {vid: 1.5, "t": 1.5}


async def test_replace_forgets_the_old_id_and_type(cached):
    old_id = await cached.register_variable("x", "float", 0.5)
    assert await cached.get_variable(old_id) == 0.5
    new_id = await cached.register_variable("x", "string", "now text", replace=True)
    assert new_id != old_id
    with pytest.raises(KeyError):
        await cached.get_variable(old_id)
    assert await cached.set_variable("x", "still text") == 1  # validated as a string now


async def test_delete_forgets_both_identifiers(cached):
    vid = await cached.register_variable("d", "integer", 1)
    assert await cached.get_variable(vid) == 1 and await cached.get_variable("d") == 1
    await cached.delete_variable("d")
    for ident in (vid, "d"):
        with pytest.raises(KeyError):
            await cached.get_variable(ident)


async def test_a_read_racing_a_write_never_caches_the_older_value(cached):
    await cached.register_variable("r", "integer", 0)
    for i in range(1, 151):  # bounded
        await asyncio.gather(cached.get_variable("r", bypass_cache=True), cached.set_variable("r", i))
        assert await cached.get_variable("r") == i, f"stale value cached at iteration {i}"


async def test_writes_follow_a_variable_another_client_re_registered(server, cached):
    await cached.register_variable("temp", "float", 0.5, constraints={"max": 1.0})
    await cached.register_variable("mode", "string", "fast")
    async with session_for(server, cached.session_id) as other:
        await other.register_variable("temp", "float", 0.5, constraints={"max": 10.0}, replace=True)
        await other.register_variable("mode", "integer", 1, replace=True)
    # the local copy says max 1.0 / string; the server now says max 10 / integer
    assert await cached.set_variable("temp", 5.0) == 1
    assert await cached.set_variable("mode", 2) == 1
    assert await cached.update_variables({"temp": 6.0, "mode": 3}) == {"temp": True, "mode": True}


async def test_bulk_read_of_empty_arrays(cached):
    await cached.register_variable("e", "embedding", np.zeros(0))
    await cached.register_variable("t", "tensor", np.zeros((3, 0), dtype=np.int8))
    await cached.register_variable("f", "float", 1.0)
    cached.set_cache_config(ttl=0)
    got = await cached.get_variables(["e", "t", "f"])
    assert got["e"].shape == (0,) and got["e"].dtype == np.float64
    assert got["t"].shape == (3, 0) and got["t"].dtype == np.int8 and got["f"] == 1.0


def test_lfu_cache_survives_two_threads():
    cache = VariableCache(ttl=60, max_size=32, policy="lfu")
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(20_000):
                cache.put(f"k{i % 200}", i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def reader() -> None:
        try:
            for i in range(20_000):
                cache.get(f"k{i % 200}")
                if i % 7 == 0:
                    cache.invalidate(f"k{(i * 3) % 200}")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(cache) <= 32


async def test_oversize_value_is_refused_before_it_is_decoded():
    from dspex_notebook.server import Limits
    from dspex_notebook.testing import running_server

    with running_server(limits=Limits(max_value_bytes=4096)) as srv:
        async with session_for(srv, "big") as ctx:
            await ctx.register_variable("l", "list", [])
            with pytest.raises(dn.ResourceLimitExceeded, match="exceeds the limit of 4096"):
                await ctx.set_variable("l", [[]] * 5000)
            result = await ctx.update_variables({"l": [[]] * 5000}, atomic=False)
            assert "exceeds the limit of 4096" in result["l"]
            assert await ctx.get_variable("l", bypass_cache=True) == []


async def test_a_reply_over_the_message_limit_says_what_to_do():
    from dspex_notebook.server import Limits
    from dspex_notebook.testing import running_server

    with running_server(limits=Limits(max_message_bytes=64 * 1024, max_value_bytes=40_000)) as srv:
        async with session_for(srv, "wide", cache_ttl=0) as ctx:
            for i in range(3):
                await ctx.register_variable(f"s{i}", "string", "x" * 30_000)
            with pytest.raises(dn.ResourceLimitExceeded, match="read fewer variables"):
                await ctx.get_variables(["s0", "s1", "s2"])
            with pytest.raises(dn.ResourceLimitExceeded, match="narrower"):
                await ctx.list_variables()
            assert len((await ctx.get_variables(["s0"]))["s0"]) == 30_000


def test_sqlite_store_path_is_absolute(tmp_path, monkeypatch):
    from dspex_notebook.server.backends import SQLiteBackend

    monkeypatch.chdir(tmp_path)
    backend = SQLiteBackend("relative.sqlite3")
    try:
        assert backend.path == str(tmp_path / "relative.sqlite3")
    finally:
        backend.close()
