"""The coherent client cache: kept exact by the session's watch, never older than what was seen,
consistent bulk reads (the bank-transfer test), TTL when the stream is down, eviction and
counters, the spec's ``VariableCache`` extras, and statistics (RELIABILITY-NOTES §5.1 item 3,
§5.2 item 8). Real servers on 127.0.0.1:0; every loop bounded in count and time.
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from waiting import TIMEOUT, take, until

from dspex_notebook import BridgeUnavailable
from dspex_notebook._cache import MISS, VariableCache
from dspex_notebook.server import EmbeddedServer
from dspex_notebook.testing import running_server, session_for


@pytest.fixture
async def two(server, request):
    """Clients A (writer) and B (reader, coherent cache) of one fresh session."""
    sid = f"cc-{request.node.name}"[:200]
    async with session_for(server, sid) as a, session_for(server, sid, cache_ttl=0.2) as b:
        yield a, b
        await a.cleanup()


# ----------------------------------------------------------------------------------------------
# coherence


async def test_a_remote_write_is_a_cache_hit_once_the_watch_delivered_it(two):
    a, b = two
    await a.register_variable("x", "integer", 0)
    assert await b.get_variable("x") == 0  # a miss: now cached
    async with b.watch_variable("x") as watch:
        assert [u.value for u in await take(watch, 1)] == [0]
        await asyncio.sleep(0.25)  # longer than B's TTL: a coherent entry is served regardless
        for i in range(1, 21):
            await a.set_variable("x", i)
            (update,) = await take(watch, 1)
            assert update.value == i
            before = b.get_cache_info()
            assert await b.get_variable("x") == i  # already the new value ...
            after = b.get_cache_info()
            assert (after["hits"] - before["hits"], after["misses"] - before["misses"]) == (1, 0)
            assert after["coherent"]  # ... and no round trip


async def test_a_read_racing_an_invalidation_never_installs_an_older_value(two):
    a, b = two
    await a.register_variable("r", "integer", 0)
    assert await b.get_variable("r") == 0
    stale = 0
    async with b.watch_variable("r") as watch:
        await take(watch, 1)
        for i in range(1, 101):
            read, _ = await asyncio.gather(b.get_variable("r", bypass_cache=True),
                                           a.set_variable("r", i))
            stale += read == i - 1
            assert (await take(watch, 1))[0].value == i
            cached = b.cached_value("r")
            assert cached is MISS or cached == i, f"older value {cached} cached after {i}"
            assert await b.get_variable("r") == i
    print(f"\nracing reads: {stale}/100 read the value from before the racing write")


def test_cache_refuses_a_value_older_than_a_seen_write():
    cache = VariableCache(ttl=60)
    assert cache.put("k", "v5", mod_revision=5)
    cache.note_revision("k", 7)  # a write at 7 was seen (event or own write) ...
    assert not cache.put("k", "v6", mod_revision=6)  # ... so a read of 6 must not be installed
    assert cache.get("k") is MISS  # and the older entry is gone too
    assert cache.put("k", "v7", mod_revision=7) and cache.get("k") == "v7"
    assert not cache.update("k", "v6", 6) or cache.get("k") == "v7"
    assert cache.get("k") == "v7"


# ----------------------------------------------------------------------------------------------
# bank transfer: atomic batches never seen half applied


ACCOUNTS = [f"acct{i}" for i in range(5)]
TOTAL = 100 * len(ACCOUNTS)


async def test_bank_transfer_every_snapshot_and_every_revision_conserves_the_sum(server):
    sid = "bank"
    async with session_for(server, sid) as setup:
        await setup.register_variables([{"name": n, "type": "integer", "initial_value": 100}
                                        for n in ACCOUNTS])
    locks = {n: asyncio.Lock() for n in ACCOUNTS}
    done = asyncio.Event()
    stats = {"transfers": 0, "cached_snapshots": 0, "mixed_snapshots": 0,
             "uncached_snapshots": 0, "revisions": 0}
    async with (session_for(server, sid) as c0, session_for(server, sid) as c1,
                session_for(server, sid) as c2, session_for(server, sid) as c3,
                session_for(server, sid, cache_ttl=60) as cached,
                session_for(server, sid, cache_ttl=0) as uncached,
                # TTL only (no watch): its entries come from reads at different revisions
                session_for(server, sid, cache_ttl=60, coherent_cache=False) as mixed,
                session_for(server, sid) as watcher):

        async def transfers(ctx, seed: int, count: int = 20) -> None:
            rnd = random.Random(seed)
            for _ in range(count):
                src, dst = sorted(rnd.sample(ACCOUNTS, 2))
                async with locks[src], locks[dst]:  # no lost update: one transfer per account
                    got = await ctx.get_variables([src, dst], include_metadata=True)
                    amount = rnd.randint(1, 30)
                    result = await ctx.update_variables({src: got[src]["value"] - amount,
                                                         dst: got[dst]["value"] + amount})
                    assert result == {src: True, dst: True}
                stats["transfers"] += 1

        async def read(ctx, key: str) -> None:
            rnd = random.Random(key)
            for _ in range(5000):  # bounded; normally ends when the transfers are done
                before = ctx.get_cache_info()["hits"]
                snapshot = await ctx.get_variables(ACCOUNTS)
                assert sum(snapshot.values()) == TOTAL, snapshot
                if key != "uncached_snapshots" and ctx.get_cache_info()["hits"] > before:
                    stats[key] += 1
                elif key == "uncached_snapshots":
                    stats[key] += 1
                if key == "mixed_snapshots":  # refresh one entry: entries of mixed revisions
                    await ctx.get_variable(rnd.choice(ACCOUNTS), bypass_cache=True)
                if done.is_set():
                    return
                await asyncio.sleep(0.001)  # spread the bounded reads over the transfers

        watch = watcher.watch_variables(ACCOUNTS)
        state: dict[str, int] = {}
        pending: dict[str, int] = {}
        pending_rev = None

        async def follow() -> None:
            nonlocal pending_rev
            async for u in watch:
                if pending_rev is not None and u.revision != pending_rev:
                    state.update(pending)  # the previous revision is complete: check it
                    pending.clear()
                    if len(state) == len(ACCOUNTS):
                        assert sum(state.values()) == TOTAL, (pending_rev, state)
                        stats["revisions"] += 1
                pending_rev = u.revision
                pending[u.name] = u.value

        follower = asyncio.create_task(follow())
        readers = [asyncio.create_task(read(cached, "cached_snapshots")),
                   asyncio.create_task(read(uncached, "uncached_snapshots")),
                   asyncio.create_task(read(mixed, "mixed_snapshots"))]
        await asyncio.wait_for(asyncio.gather(*(transfers(c, seed)
                                                for seed, c in enumerate((c0, c1, c2, c3)))), 60)
        done.set()
        await asyncio.wait_for(asyncio.gather(*readers), TIMEOUT)
        final = await uncached.get_variables(ACCOUNTS)
        assert sum(final.values()) == TOTAL
        await until(lambda: {**state, **pending} == final)  # the watcher reached the end
        await watch.aclose()
        await asyncio.wait_for(follower, TIMEOUT)
        state.update(pending)
        assert sum(state.values()) == TOTAL
    assert stats["transfers"] == 80 and stats["revisions"] >= 1
    print(f"\nbank transfer: {stats}")


# ----------------------------------------------------------------------------------------------
# the stream drops: TTL rules again


async def test_when_the_stream_drops_cached_values_are_not_served_beyond_the_ttl(tmp_path):
    db = tmp_path / "ttl.sqlite3"
    srv = EmbeddedServer(db, write_runtime_file=False, token="ttl-token").start()
    port = int(srv.address.rsplit(":", 1)[1])
    from dspex_notebook import SessionContext
    from dspex_notebook._wire.client import insecure_channel

    def ctx(**options) -> SessionContext:
        return SessionContext("ttl", insecure_channel(srv.address), token="ttl-token",
                              close_channel=True, timeout=5, **options)

    a = await ctx().initialize()
    b = await ctx(cache_ttl=0.3).initialize()
    try:
        await a.register_variable("x", "integer", 1)
        assert await b.get_variable("x") == 1
        await asyncio.sleep(0.35)  # past the TTL, but the watch keeps the entry exact
        assert b.get_cache_info()["coherent"] and b.cached_value("x") == 1
        srv.stop()
        await until(lambda: b.watch_status != "live")
        assert not b.get_cache_info()["coherent"]
        assert b.cached_value("x") is MISS  # stale and past its TTL: not served
        with pytest.raises(BridgeUnavailable):
            await b.get_variable("x")  # ... and no stale value instead of the error
        srv = EmbeddedServer(db, write_runtime_file=False, token="ttl-token", port=port).start()
        deadline = time.monotonic() + TIMEOUT
        while True:  # A writes as soon as its channel is back
            try:
                await a.set_variable("x", 2)
                break
            except BridgeUnavailable:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
        await until(lambda: b.watch_status == "live", timeout=TIMEOUT)
        assert await b.get_variable("x") == 2  # as of the latest revision
        assert b.get_cache_info()["coherent"]
    finally:
        await a.close()
        await b.close()
        srv.stop()


# ----------------------------------------------------------------------------------------------
# eviction and counters


@pytest.mark.parametrize(("policy", "evicted"), [("lru", "b"), ("lfu", "b"), ("fifo", "a")])
async def test_eviction_policies_and_counters(server, policy, evicted):
    sid = f"evict-{policy}"
    async with session_for(server, sid) as a, session_for(server, sid, cache_ttl=60) as b:
        await a.register_variables([{"name": n, "type": "integer", "initial_value": i}
                                    for i, n in enumerate("abcd")])
        b.set_cache_config(max_size=3, eviction_policy=policy)
        for name in ("a", "b", "c"):  # 3 misses, cached in this order
            await b.get_variable(name)
        for name in ("a", "a", "c"):  # uses: a 2, b 0, c 1; a is the most recent but c
            await b.get_variable(name)
        await b.get_variable("c")
        await b.get_variable("a")
        await b.get_variable("d")  # a fourth entry: one goes
        assert {n for n in "abcd" if n in b.cache} == set("abcd") - {evicted}
        info = b.get_cache_info()
        assert (info["size"], info["max_size"], info["eviction_policy"]) == (3, 3, policy)
        assert (info["hits"], info["misses"], info["eviction_count"]) == (5, 4, 1)
        assert info["hit_rate"] == pytest.approx(5 / 9)
        await a.cleanup()


# ----------------------------------------------------------------------------------------------
# the spec's VariableCache extras


async def test_get_batch_serves_cached_and_fetches_the_rest():
    cache = VariableCache(ttl=60)
    cache.put("a", 1, 1)
    cache.put("b", [2], 2)
    asked = []

    async def fetch(missing):
        asked.append(list(missing))
        return {k: ord(k) for k in missing if k != "nope"}

    got = await cache.get_batch(["b", "c", "a", "nope"], fetch)
    assert got == {"b": [2], "c": ord("c"), "a": 1} and list(got) == ["b", "c", "a"]
    assert asked == [["c", "nope"]]
    assert "c" in cache and "nope" not in cache  # fetched values are cached too
    assert await cache.get_batch(["c", "a"], fetch) == {"c": ord("c"), "a": 1}
    assert asked == [["c", "nope"]]  # all cached now: no fetch
    assert await cache.get_batch(["zz"]) == {}  # without fetch_missing: only what is cached
    got["b"].append(3)
    assert cache.get("b") == [2]  # callers cannot edit the cache


async def test_subscribe_invalidation_on_remote_write_delete_and_pattern(two):
    a, b = two
    await a.register_variables([{"name": n, "type": "integer", "initial_value": 0}
                                for n in ("x", "p.a", "p.b", "q")])
    calls = []

    async def async_callback(key: str, reason: str) -> None:
        await asyncio.sleep(0)
        calls.append(("async", key, reason))

    sub = b.cache.subscribe_invalidation("x", lambda k, r: calls.append(("sync", k, r)))
    b.cache.subscribe_invalidation("x", async_callback)
    await until(lambda: b.get_cache_info()["coherent"])  # B's stream is live: entries stay
    for name in ("x", "p.a", "p.b", "q"):
        await b.get_variable(name)
    async with b.watch_variables(["x", "q"]) as watch:
        await take(watch, 2)
        await a.set_variable("x", 1)  # a remote write of a cached value
        await take(watch, 1)
        await until(lambda: len(calls) == 2)
        assert sorted(calls) == [("async", "x", "changed"), ("sync", "x", "changed")]
        await a.set_variable("q", 1)  # another variable: no call
        await take(watch, 1)
        await a.delete_variable("x")
        assert (await take(watch, 1))[0].kind == "delete"
        await until(lambda: len(calls) == 4)
        assert sorted(calls[2:]) == [("async", "x", "deleted"), ("sync", "x", "deleted")]
        assert "x" not in b.cache
    assert b.cache.unsubscribe_invalidation(sub) and not b.cache.unsubscribe_invalidation(sub)
    # invalidate_pattern: a regular expression over the cached names
    p_calls = []
    b.cache.subscribe_invalidation("p.a", lambda k, r: p_calls.append((k, r)))
    assert await b.cache.invalidate_pattern(r"^p\.") == 2
    assert {n for n in ("p.a", "p.b", "q") if n in b.cache} == {"q"}
    assert p_calls == [("p.a", r"pattern '^p\\.'")]
    assert await b.cache.invalidate_pattern(r"^p\.", reason="manual") == 0
    assert await b.get_variable("p.a") == 0  # read again from the server


# ----------------------------------------------------------------------------------------------
# statistics

STATS_KEYS = {"read_count", "write_count", "cache_hits", "cache_misses", "cache_hit_rate",
              "avg_read_latency_ms", "avg_write_latency_ms", "total_optimization_time_s",
              "watchers", "version", "history_length"}


async def test_variable_stats_and_get_variables_include_stats():
    with running_server() as srv:  # server-side counters start with this server
        async with session_for(srv, "stats") as a, session_for(srv, "stats", cache_ttl=60) as b:
            await a.register_variable("x", "integer", 0)
            await a.set_variable("x", 1)
            await a.set_variable("x", 2)
            await a.register_variable("y", "string", "s")
            await until(lambda: a.watch_status == b.watch_status == "live")  # both streams open
            assert await b.get_variable("x") == 2  # miss: one server read
            assert await b.get_variable("x") == 2  # hit: none
            assert await b.get_variable("x", bypass_cache=True) == 2  # one more
            x = await b.get_variable_stats("x")
            assert set(x) == STATS_KEYS
            assert (x["read_count"], x["write_count"], x["version"], x["history_length"]) == (
                2, 3, 2, 3)
            assert (x["cache_hits"], x["cache_misses"]) == (1, 1) and x["cache_hit_rate"] == 0.5
            assert x["watchers"] == 2  # the session streams of A and B
            assert x["avg_read_latency_ms"] > 0 and x["avg_write_latency_ms"] == 0.0
            assert x["total_optimization_time_s"] == 0.0
            assert (await a.get_variable_stats("x"))["avg_write_latency_ms"] > 0

            both = await b.get_variables(["x", "y"], include_stats=True)
            assert set(both) == {"x", "y"}
            assert all(set(entry) == {"value", "stats"} for entry in both.values())
            assert both["x"]["value"] == 2 and both["y"]["value"] == "s"
            assert set(both["x"]["stats"]) == STATS_KEYS
            assert both["x"]["stats"]["read_count"] == 3  # include_stats read it once more
            assert both["y"]["stats"]["read_count"] == 1
            assert both["y"]["stats"]["write_count"] == 1
            meta = await b.get_variables(["y"], include_stats=True, include_metadata=True)
            assert set(meta["y"]) == {"value", "metadata", "stats"}

            total = await b.get_variable_stats()
            assert set(total) == STATS_KEYS - {"version"} | {"variables"}
            assert set(total["variables"]) == {"x", "y"}
            assert total["read_count"] == sum(v["read_count"] for v in total["variables"].values())
            assert total["write_count"] == 4 and total["history_length"] == 4
            assert total["watchers"] == 2
            with pytest.raises(KeyError):
                await b.get_variable_stats("nope")
            await a.cleanup()


async def test_get_batch_does_not_cache_a_value_fetched_across_a_newer_write():
    cache = VariableCache(ttl=60)
    cache.note_revision("k", 3)

    async def fetch(missing):
        cache.note_revision("k", 4)  # the hub applied a write of k while the fetch ran
        return {"k": "as of 3"}

    assert await cache.get_batch(["k"], fetch) == {"k": "as of 3"}
    assert "k" not in cache


async def test_a_stream_that_starts_after_a_read_replays_what_the_read_missed(server):
    """A value cached before the stream was live, then changed before it connected, must not
    stay in the cache as 'coherent': the stream starts from the oldest cached read."""
    sid = "cc-late-stream"
    async with session_for(server, sid) as a, \
            session_for(server, sid, cache_ttl=3600, coherent_cache=False) as b:
        await a.register_variable("shared", "string", "one")
        assert await b.get_variable("shared") == "one"  # cached, no stream yet
        await a.set_variable("shared", "two")  # committed before b's stream exists
        b._hub.start()  # the stream connects late (as on a loaded machine)
        await until(lambda: b.get_cache_info()["coherent"])
        await until(lambda: b.cached_value("shared") == "two")
        await a.cleanup()
