"""Contexts on one channel, with one token, for one session share one server watch stream
(``dspex_notebook._watch_stream``): each still gets every event, in order, with its own cache
kept exact; a context joining late does not keep values it read before it joined; contexts on
other channels, sessions or tokens get their own stream. Real server on 127.0.0.1:0; loops
bounded in count and time.
"""

from __future__ import annotations

import asyncio

import pytest
from waiting import TIMEOUT, take, until

from dspex_notebook import SessionContext
from dspex_notebook._wire.client import insecure_channel
from dspex_notebook.testing import session_for


@pytest.fixture
async def shared(server, request):
    """A writer, and one channel for the contexts under test (closed at the end)."""
    sid = f"sh-{request.node.name}"[:200]
    channel = insecure_channel(server.address)
    async with session_for(server, sid, cache_ttl=0) as writer:
        yield sid, channel, writer
        await writer.cleanup()
    await channel.close()


async def contexts(server, sid: str, channel, n: int, **options) -> list[SessionContext]:
    made = [SessionContext(sid, channel, token=server.token, **options) for _ in range(n)]
    for ctx in made:
        await ctx.initialize()
    return made


async def test_contexts_on_one_channel_share_one_stream_and_each_gets_every_event(server, shared):
    sid, channel, writer = shared
    await writer.register_variable("x", "integer", 0)
    ctxs = await contexts(server, sid, channel, 5)
    try:
        watches = [c.watch_variable("x") for c in ctxs]
        for c, w in zip(ctxs, watches, strict=True):
            assert [u.value for u in await take(w, 1)] == [0]
            assert await c.get_variable("x") == 0  # now cached
        # one stream on the server for the five hubs
        assert (await writer.get_variable_stats())["watchers"] == 1
        for i in range(1, 31):
            await writer.set_variable("x", i)
        for c, w in zip(ctxs, watches, strict=True):
            got = await take(w, 30)
            assert [u.value for u in got] == list(range(1, 31))
            assert [u.revision for u in got] == sorted({u.revision for u in got})
            assert c.cached_value("x") == 30  # each context's own cache, kept exact
            assert c.get_cache_info()["coherent"]
        for w in watches:
            await w.aclose()
    finally:
        for c in ctxs:
            await c.close()


async def test_closing_one_context_leaves_the_others_live_and_the_last_closes_the_stream(
        server, shared):
    sid, channel, writer = shared
    await writer.register_variable("y", "integer", 0)
    first, second = await contexts(server, sid, channel, 2)
    try:
        assert await first._hub.wait_live(TIMEOUT) and await second._hub.wait_live(TIMEOUT)
        await first.close()
        assert first.watch_status == "closed"
        assert second.watch_status == "live"
        async with second.watch_variable("y") as watch:
            await take(watch, 1)
            await writer.set_variable("y", 7)
            assert [u.value for u in await take(watch, 1)] == [7]
        assert (await writer.get_variable_stats())["watchers"] == 1
    finally:
        await second.close()
    async with asyncio.timeout(TIMEOUT):
        while (await writer.get_variable_stats())["watchers"]:
            await asyncio.sleep(0.01)


async def test_a_context_joining_late_does_not_serve_what_it_read_before_joining(server, shared):
    sid, channel, writer = shared
    await writer.register_variable("z", "integer", 0)
    (early,) = await contexts(server, sid, channel, 1)
    # the late one reads (and caches, 60 s TTL) before its stream starts
    late = SessionContext(sid, channel, token=server.token, cache_ttl=60,
                          coherent_cache=False)
    try:
        await late.initialize()
        assert await late.get_variable("z") == 0
        assert await early._hub.wait_live(TIMEOUT)
        await writer.set_variable("z", 1)  # delivered to `early`'s hub only
        await until(lambda: early._hub.revision >= writer.last_revision)
        async with late.watch_variable("z", include_initial=False) as _watch:
            assert await late._hub.wait_live(TIMEOUT)
            assert late._hub._stream is early._hub._stream
            # without the join's read floor this would be the cached 0, served as exact
            assert await late.get_variable("z") == 1
            await writer.set_variable("z", 2)
            await until(lambda: late.cached_value("z") == 2)
    finally:
        await late.close()
        await early.close()


async def test_other_channels_sessions_and_tokens_get_their_own_stream(server, shared):
    sid, channel, writer = shared
    other_channel = insecure_channel(server.address)
    made = [
        SessionContext(sid, channel, token=server.token),
        SessionContext(sid, other_channel, token=server.token),  # another channel
        SessionContext(sid + "-2", channel, token=server.token),  # another session
        SessionContext(sid, channel, token=server.token),  # shares the first one's
    ]
    try:
        for ctx in made:
            await ctx.initialize()
            assert await ctx._hub.wait_live(TIMEOUT)
        streams = {id(ctx._hub._stream) for ctx in made}
        assert len(streams) == 3 and made[3]._hub._stream is made[0]._hub._stream
        assert (await writer.get_variable_stats())["watchers"] == 2
        await made[2].cleanup()
    finally:
        for ctx in made:
            await ctx.close()
        await other_channel.close()
