"""Watches across failures: a SIGKILLed ``dspex-notebook serve``, compaction while a client was
away, and a watcher that stopped reading (RELIABILITY-NOTES §5.2 items 7, 9, 10).

Everything on loopback, against real servers (a ``serve`` subprocess, or an embedded one on a
fixed port so that clients reconnect to the same address). Every loop is bounded in count and
time; timings are printed, never asserted.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import statistics
import sys
import time

import grpc
import pytest

from dspex_notebook import SessionContext, VersionConflict
from dspex_notebook._proto import snakepit_bridge_pb2 as pb
from dspex_notebook._proto import snakepit_bridge_pb2_grpc as pb_grpc
from dspex_notebook._wire.client import insecure_channel
from dspex_notebook._wire.status import BridgeUnavailable
from dspex_notebook.server import EmbeddedServer, Store
from dspex_notebook.testing import FakeClock

TIMEOUT = 30.0
TOKEN = "resume-test-token"
ADDRESS_RE = re.compile(r"serving .* on (\S+:(\d+))")


class Serve:
    """``dspex-notebook serve`` as a child process on one SQLite file, port and token file."""

    def __init__(self, tmp_path, *extra: str, db: str | None = None) -> None:
        self.db = db or str(tmp_path / "serve.sqlite3")
        self.token_file = tmp_path / "token"
        self.token_file.write_text(TOKEN + "\n")
        self.extra = extra
        self.port = 0
        self.address = ""
        self.proc: asyncio.subprocess.Process | None = None
        self.env = {**os.environ, "DSPEX_RUNTIME_DIR": str(tmp_path / "rt")}
        self.log = open(tmp_path / "serve.log", "ab")  # closed in stop()

    async def start(self) -> float:
        """Start on the same port as before (any free port the first time); return the time
        (monotonic) at which it said it was serving."""
        args = ["--db", self.db, "--port", str(self.port), "--token-file", str(self.token_file),
                *self.extra]
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dspex_notebook", "serve", *args,
            stdout=asyncio.subprocess.PIPE, stderr=self.log, env=self.env)
        async with asyncio.timeout(60):
            for _ in range(20):  # a few banner lines at most
                line = (await self.proc.stdout.readline()).decode()
                if not line:
                    raise AssertionError(f"serve exited early ({await self.proc.wait()})")
                match = ADDRESS_RE.search(line)
                if match:
                    self.address, self.port = match.group(1), int(match.group(2))
                    return time.monotonic()
        raise AssertionError("serve never printed its address")

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(self.proc.wait(), 30)

    def rss_mb(self) -> float:
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self.log.close()


def context(address: str, session_id: str, **options) -> SessionContext:
    return SessionContext(session_id, insecure_channel(address), token=TOKEN, close_channel=True,
                          **options)


async def until(predicate, timeout: float = TIMEOUT, step: float = 0.005) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(step)


async def acked_write(ctx: SessionContext, name: str, value: int, deadline: float) -> int:
    """Write ``value`` (= the variable's next version) until it is acknowledged; a retry after
    a lost reply finds it written (version conflict with the value in place), so every value
    is written exactly once. Returns the number of attempts."""
    attempts = 0
    while True:
        attempts += 1
        try:
            await ctx.set_variable(name, value, expected_version=value - 1)
            return attempts
        except BridgeUnavailable:
            pass
        except VersionConflict:
            if await ctx.get_variable(name, bypass_cache=True) == value:
                return attempts  # the earlier attempt committed, its reply was lost
            raise
        assert time.monotonic() < deadline, f"write of {value} never acknowledged"
        await asyncio.sleep(0.02)


# ----------------------------------------------------------------------------------------------
# SIGKILL mid-watch, restart on the same file and port


@pytest.mark.slow
async def test_watch_resumes_across_sigkill_without_loss_or_duplicates(tmp_path):
    serve = Serve(tmp_path)
    await serve.start()
    n, kills = 60, (20, 40)
    resume_after_ready, resume_after_kill = [], []
    writer = watcher = None
    try:
        writer = await context(serve.address, "resume", timeout=5, coherent_cache=False).initialize()
        watcher = await context(serve.address, "resume", timeout=5).initialize()
        await writer.register_variable("counter", "integer", 0)
        log: list[tuple[str, int, int]] = []

        async def collect() -> None:
            async with watcher.watch_variable("counter") as watch:
                async for u in watch:
                    log.append((u.kind, u.value, u.revision))
                    if u.value == n:
                        return

        collector = asyncio.create_task(collect())
        await until(lambda: len(log) == 1)  # the snapshot (value 0) is in
        deadline = time.monotonic() + 90
        acked = [0]
        attempts = [0]

        async def write_all() -> None:  # with pauses; retries through the server's absence
            for i in range(1, n + 1):
                attempts[0] += await acked_write(writer, "counter", i, deadline)
                acked[0] = i
                await asyncio.sleep(0.01)

        writing = asyncio.create_task(write_all())
        for at in kills:  # kill while the writer keeps writing (a write may be in flight)
            await until(lambda at=at: acked[0] >= at)
            killed = time.monotonic()
            await serve.kill()
            await until(lambda: watcher.watch_status != "live")
            ready = await serve.start()
            await until(lambda: watcher.watch_status == "live")
            now = time.monotonic()
            resume_after_ready.append(now - ready)
            resume_after_kill.append(now - killed)
        await asyncio.wait_for(writing, 90)
        await asyncio.wait_for(collector, TIMEOUT)
        first_kind, first, _ = log[0]
        values = [v for _k, v, _r in log]
        assert first_kind == "initial" and first == 0
        lost = sorted(set(range(n + 1)) - set(values))
        duplicates = len(values) - len(set(values))
        assert (lost, duplicates) == ([], 0), log
        assert values == list(range(n + 1))  # in order
        revisions = [r for _k, _v, r in log]
        assert revisions == sorted(revisions) and len(set(revisions)) == len(revisions)
        assert watcher._hub.resumes >= len(kills)
        print(f"\nSIGKILL resume: {len(kills)} kills, lost 0, duplicates 0, {attempts[0] - n} write "
              f"retries; watch live again after the restart's banner: "
              f"p50 {statistics.median(resume_after_ready) * 1000:.0f} ms "
              f"(each {[round(x * 1000) for x in resume_after_ready]} ms), after the kill: "
              f"p50 {statistics.median(resume_after_kill) * 1000:.0f} ms")
    finally:
        for ctx in (writer, watcher):
            if ctx is not None:
                await ctx.close()
        await serve.stop()


@pytest.mark.slow
async def test_a_shared_stream_resumes_for_every_context_across_sigkill(tmp_path):
    """Three contexts on one channel share one stream (``_watch_stream``): after each kill -9
    and restart all three resume from the shared revision, none loses or repeats an event."""
    serve = Serve(tmp_path)
    await serve.start()
    n, kills = 30, (10, 20)
    channel = insecure_channel(serve.address)
    writer = await context(serve.address, "shared", timeout=5, coherent_cache=False).initialize()
    watchers = [SessionContext("shared", channel, token=TOKEN, timeout=5) for _ in range(3)]
    try:
        for w in watchers:
            await w.initialize()
        await writer.register_variable("counter", "integer", 0)
        logs: list[list[int]] = [[], [], []]

        async def collect(ctx: SessionContext, log: list[int]) -> None:
            async with ctx.watch_variable("counter") as watch:
                async for u in watch:
                    log.append(u.value)
                    if u.value == n:
                        return

        collectors = [asyncio.create_task(collect(w, log)) for w, log in zip(watchers, logs, strict=True)]
        await until(lambda: all(logs))
        assert watchers[0]._hub._stream is watchers[2]._hub._stream
        deadline = time.monotonic() + 90
        acked = [0]

        async def write_all() -> None:
            for i in range(1, n + 1):
                await acked_write(writer, "counter", i, deadline)
                acked[0] = i
                await asyncio.sleep(0.01)

        writing = asyncio.create_task(write_all())
        for at in kills:
            await until(lambda at=at: acked[0] >= at)
            await serve.kill()
            await until(lambda: watchers[0].watch_status != "live")
            await serve.start()
            await until(lambda: all(w.watch_status == "live" for w in watchers))
        await asyncio.wait_for(writing, 90)
        await asyncio.wait_for(asyncio.gather(*collectors), TIMEOUT)
        for log in logs:
            assert log == list(range(n + 1)), log  # no loss, no duplicate, in order
        assert all(w._hub.resumes >= len(kills) for w in watchers)
    finally:
        for ctx in (writer, *watchers):
            await ctx.close()
        await channel.close()
        await serve.stop()


# ----------------------------------------------------------------------------------------------
# compaction while a watcher was away


async def _write_retrying(ctx: SessionContext, name: str, value, deadline: float) -> None:
    while True:
        try:
            await ctx.set_variable(name, value)
            return
        except BridgeUnavailable:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)


async def _reconnect(ctx: SessionContext, clock: FakeClock) -> None:
    """Move ``ctx``'s fake clock on (its hub's backoff sleeps on it) until its hub is live."""
    async with asyncio.timeout(TIMEOUT):
        while ctx.watch_status != "live":
            clock.advance(5.0)
            await asyncio.sleep(0.02)


async def test_compaction_while_away_gives_resync_and_the_watch_goes_on(tmp_path):
    db = tmp_path / "compact.sqlite3"
    srv = EmbeddedServer(db, write_runtime_file=False, token=TOKEN).start()
    port = int(srv.address.rsplit(":", 1)[1])
    clock = FakeClock()
    writer = await context(srv.address, "cmp").initialize()
    watcher = await context(srv.address, "cmp", clock=clock).initialize()
    got = []
    try:
        await writer.register_variables([{"name": n, "type": "integer", "initial_value": 0}
                                         for n in ("x", "y", "gone")])
        watch = watcher.watch_variables(["x", "gone"])

        async def collect() -> None:
            async for u in watch:
                got.append((u.kind, u.name, u.value, u.old_value))

        collector = asyncio.create_task(collect())
        await until(lambda: len(got) == 2)
        await writer.set_variable("x", 1)
        await until(lambda: len(got) == 3)
        assert sorted(got[:2]) == [("initial", "gone", 0, None), ("initial", "x", 0, None)]
        assert got[2] == ("set", "x", 1, 0)

        # 1. away, then compacted exactly at the revision the watcher had reached (etcd
        #    #19179): resuming from there is still possible, so there is no resync and no gap
        srv.stop()
        await until(lambda: watcher.watch_status != "live")
        srv = EmbeddedServer(db, write_runtime_file=False, token=TOKEN, port=port).start()
        deadline = time.monotonic() + TIMEOUT
        seen = watcher._hub.revision
        await _write_retrying(writer, "x", 2, deadline)
        await writer.register_variable("x", "integer", 3, replace=True)
        assert srv.call(Store.compact, seen) == seen
        await _reconnect(watcher, clock)
        await until(lambda: len(got) == 6)
        # caught up from the change log: the replace reads as live, old variable first
        assert got[3:] == [("set", "x", 2, 1), ("delete", "x", None, 2), ("register", "x", 3, 2)]

        # 2. away, and compacted beyond the watcher's revision, with a delete before the
        #    watermark (etcd #18089): the watch is told to relist ("resync") with the current
        #    values, learns that "gone" is gone, and goes on
        srv.stop()
        await until(lambda: watcher.watch_status != "live")
        srv = EmbeddedServer(db, write_runtime_file=False, token=TOKEN, port=port).start()
        deadline = time.monotonic() + TIMEOUT
        await _write_retrying(writer, "x", 3, deadline)  # the same value: still a write
        await writer.set_variable("y", 3)
        await writer.delete_variable("gone")
        await writer.set_variable("x", 4)
        head = srv.call(lambda store: store.revision)
        assert srv.call(Store.compact, head) == head
        await _reconnect(watcher, clock)
        await until(lambda: len(got) >= 8)
        assert sorted(got[6:8]) == [("delete", "gone", None, 0), ("resync", "x", 4, None)]
        assert await watcher.get_variable("x") == 4  # the relisted cache is current
        await writer.set_variable("x", 5)
        await writer.register_variable("gone", "integer", 7)
        await until(lambda: len(got) >= 10)
        assert got[8:] == [("set", "x", 5, 4), ("register", "gone", 7, None)]
        await watch.aclose()
        await asyncio.wait_for(collector, TIMEOUT)
    finally:
        await writer.close()
        await watcher.close()
        srv.stop()


async def test_raw_watch_at_the_compaction_watermark(tmp_path):
    """``start_revision`` = watermark + 1 is the oldest resumable point; below it the stream
    answers ``canceled`` "compacted" with the watermark."""
    srv = EmbeddedServer(tmp_path / "raw.sqlite3", write_runtime_file=False, token=TOKEN).start()
    try:
        async with context(srv.address, "raw", coherent_cache=False) as ctx:
            await ctx.initialize()
            await ctx.register_variable("x", "integer", 0)
            for i in range(1, 6):
                await ctx.set_variable("x", i)
            head = (await ctx.ping())["revision"]
            watermark = head - 2
            assert srv.call(Store.compact, watermark) == watermark
            md = (("authorization", f"Bearer {TOKEN}"),)
            async with grpc.aio.insecure_channel(srv.address) as channel:
                stub = pb_grpc.BridgeServiceStub(channel)

                async def first_messages(start: int, count: int) -> list:
                    call = stub.Watch(pb.WatchRequest(session_id="raw", start_revision=start),
                                      metadata=md, timeout=TIMEOUT)
                    out = []
                    async for resp in call:
                        out.append(resp)
                        if resp.canceled or len(out) == count:
                            break
                    call.cancel()
                    return out

                created, a, b = await first_messages(watermark + 1, 3)
                assert created.created and created.compact_revision == watermark
                assert [(r.revision, [e.value.value for e in r.events]) for r in (a, b)] == [
                    (head - 1, [b"4"]), (head, [b"5"])]
                (refused,) = await first_messages(watermark, 3)
                assert refused.canceled and refused.cancel_reason == "compacted"
                assert refused.compact_revision == watermark
    finally:
        srv.stop()


# ----------------------------------------------------------------------------------------------
# a watcher that stopped reading


@pytest.mark.slow
async def test_slow_watcher_is_cut_off_fast_watcher_gets_everything_rss_bounded(tmp_path):
    serve = Serve(tmp_path, db=":memory:")
    await serve.start()
    max_pending, size, writers = 1024, 4096, 4
    writes = 2 * max_pending + 400  # per phase below: past the bound, then as much again
    fast = writer = None
    slow_channel = grpc.aio.insecure_channel(serve.address)
    try:
        writer = await context(serve.address, "slow", coherent_cache=False).initialize()
        fast = await context(serve.address, "slow").initialize()
        await writer.register_variable("v", "string", "")
        stub = pb_grpc.BridgeServiceStub(slow_channel)
        slow = stub.Watch(pb.WatchRequest(session_id="slow"),
                          metadata=(("authorization", f"Bearer {TOKEN}"),))
        assert (await slow.read()).created  # then it reads nothing more for a while
        fast_log: list[int] = []
        watch = fast.watch_variable("v")

        async def collect() -> None:
            async for u in watch:
                fast_log.append(u.revision)

        collector = asyncio.create_task(collect())
        await until(lambda: len(fast_log) == 1)
        rss = [serve.rss_mb()]
        counter = iter(range(10**6))

        async def write(count: int) -> None:
            for _ in range(count):
                i = next(counter)
                await writer.set_variable("v", f"{i:08d}" + "x" * size)

        async def phase(count: int) -> None:
            await asyncio.gather(*(write(count // writers) for _ in range(writers)))
            rss.append(serve.rss_mb())

        await phase(writes // 2)  # the slow watcher's queue fills up and overflows
        await phase(writes // 2)  # as much again: memory must not keep growing
        total = writes // 2 // writers * writers * 2
        await until(lambda: len(fast_log) == total + 1)
        # the fast watcher got every revision, in order, without a resync
        assert fast_log == sorted(set(fast_log)) and watch.status == "live"
        # the slow watcher, once it reads again: what was in flight, then "resync required"
        received, ending = [], None
        async with asyncio.timeout(TIMEOUT):
            try:
                while (resp := await slow.read()) is not grpc.aio.EOF:
                    if resp.canceled:
                        ending = resp.cancel_reason
                        break
                    if not resp.progress:
                        received.append(resp.revision)
            except grpc.aio.AioRpcError as err:
                ending = err.code().name
        assert ending is not None and (ending.startswith("resync required")
                                       or ending == "CANCELLED"), ending
        assert 0 < len(received) < total  # cut off long before the end ...
        assert received == fast_log[1:len(received) + 1]  # ... with no gap before the cut
        growth_1, growth_2 = rss[1] - rss[0], rss[2] - rss[1]
        print(f"\nslow watcher: {total} revisions of {size} B, cut off after {len(received)} "
              f"({ending!r}); serve RSS {rss[0]:.0f} -> {rss[1]:.0f} -> {rss[2]:.0f} MB "
              f"(+{growth_1:.0f} MB while its queue filled, +{growth_2:.0f} MB after)")
        # bounded: the queue of 1,024 revisions is the most the server ever holds for it, so a
        # second phase as long as the first adds (next to) nothing
        assert growth_2 < 16, rss
        assert rss[2] - rss[0] < 120, rss
        await watch.aclose()
        await asyncio.wait_for(collector, TIMEOUT)
    finally:
        await slow_channel.close()
        for ctx in (writer, fast):
            if ctx is not None:
                await ctx.close()
        await serve.stop()
