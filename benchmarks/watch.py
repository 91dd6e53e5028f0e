"""Live-data benchmark: watch fan-out, server memory per watch, and the coherent cache.

Everything is measured in one run on this machine, baselines included:

* ``python -m dspex_notebook serve --port 0 --memory`` in its own process (the server);
* a local ``redis-server`` on a free loopback port, started by this script (no persistence),
  and redis-py asyncio subscribers: the fan-out baseline;
* the bare grpc.aio echo server of ``_common.py`` in its own process: the round-trip baseline;
* a **writer process** (this file, ``writer`` sub-command): the "other client" that sets the
  variable (one ``SessionContext`` per session, ``cache_ttl=0``) or publishes to redis. It takes
  the timestamp just before the call; the watchers' process takes the delivery timestamp.
  Both read ``time.perf_counter_ns`` = ``CLOCK_MONOTONIC``, one clock for all processes.

The watchers, the coherent-cache reader and the echo client are this process (one asyncio loop).

Cases:

1. **fan-out**, N = 1, 100, 1000 watchers of one variable, each row a p50/p99 of "set → the last
   of the N watchers got that revision":
   - ``SessionContext`` rows (what a user does): N ``SessionContext`` objects sharing ONE
     grpc.aio channel, each with its coherent cache on and one
     ``watch_variable("x", include_initial=False)`` consumed by an ``async for`` task; the time
     is taken when that task receives the update. Contexts on one channel, token and session
     share ONE server ``Watch`` stream (``dspex_notebook._watch_stream``), so the server sends
     each event once and the client fans it out to the N hubs;
   - ``Bridge.watch`` rows (the transport alone, and what N separate clients cost the
     server): N raw ``Bridge.watch`` streams on one channel, no hub/cache/``Watch`` objects;
   - redis rows (baseline): N redis-py asyncio ``PubSub`` subscribers (one connection each, as
     pub/sub requires), publish of a ~90 B JSON message, subscriber ``json.loads`` it.
   Within a round the three alternate in short chunks (so the ratio compares the same seconds);
   ratio = median over rounds of (case p50 / redis p50 of the same round).
   Also CPU per write: of the server (dspex ``serve`` or ``redis-server``, from /proc) and of
   this watchers' process (``time.process_time``, all threads).
2. **server memory per open watch**: a fresh ``serve --memory`` process per sample; VmRSS before
   and after opening 1000 raw watch streams on one channel, /1000 (the target: what the server
   holds per open stream); and after opening 1000 SessionContexts with a watch each on one
   channel (they share one stream: what each context costs the server).
3. **cache hit**: ``await ctx.get_variable('x')`` on a SessionContext whose watch stream keeps
   the cache coherent, batches of 100 awaits, against ``await`` of a coroutine returning a dict
   value (the floor) in alternating batches.
4. **write visible in another client's cache**: client A (writer process) sets x; client B
   (this process, coherent cache, x cached) — the time at which ``B.cached_value('x')`` returns
   the new value (taken in B's invalidation callback, which the cache calls right after it
   installed the new value). Alternates with a bare 64 B echo round trip from this process.

    python benchmarks/watch.py                 # full run (~4 min on 2 cores)
    python benchmarks/watch.py --quick         # smoke run (~1 min)
    python benchmarks/watch.py --cases fan --fan-n 1000 --rounds 3   # one part
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import itertools
import json
import math
import os
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _common import (  # noqa: E402
    EchoClient,
    ServerProcess,
    Stats,
    emit,
    environment,
    fmt_time,
    markdown_table,
    percentile,
    start_echo_process,
    time_async,
    time_async_batched,
)

FAN_N = (1, 100, 1000)


def fmt(seconds: float) -> str:
    """``fmt_time`` with two decimals between 1 and 10 µs (cache hits), and signed."""
    if seconds < 0:
        return "−" + fmt(-seconds)
    if 1e-6 <= seconds < 1e-5:
        return f"{seconds * 1e6:.2f} µs"
    return fmt_time(seconds)

MEM_N = 1000
TINY_ECHO = 64
CLOCK = time.perf_counter_ns
DELIVERY_TIMEOUT = 20.0  # seconds; a delivery slower than this is a bug, not a sample
GAP = 0.002  # seconds of idle between two writes (the loop settles)
#: progress messages for raw streams: rare (the hub's own streams use its default, 2 s, and the
#: chunks are kept shorter than that so idle streams send none while another case runs)
RAW_PROGRESS_MS = 60_000

# ----------------------------------------------------------------------------------------------
# processes


def start_dspex(backend_args: list[str], token_file: str, runtime_dir: str) -> ServerProcess:
    def parse(line: str) -> str | None:
        if " serving " in line and " on " in line:
            return line.rsplit(" on ", 1)[1].strip()
        return None

    env = dict(os.environ, DSPEX_RUNTIME_DIR=runtime_dir)
    for var in ("DSPEX_ADDRESS", "DSPEX_TOKEN", "DSPEX_TOKEN_FILE"):
        env.pop(var, None)
    argv = [sys.executable, "-m", "dspex_notebook", "serve", "--port", "0",
            "--token-file", token_file, *backend_args]
    proc = ServerProcess(argv, parse, env=env)
    _drain(proc.proc)
    return proc


def _drain(proc: subprocess.Popen[str]) -> None:
    """Read a child's stdout/stderr in daemon threads (a full pipe would block the child)."""
    proc.tail = collections.deque(maxlen=40)  # type: ignore[attr-defined]

    def pump(stream: Any) -> None:
        with contextlib.suppress(Exception):
            for line in stream:
                proc.tail.append(line.rstrip())  # type: ignore[attr-defined]

    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            threading.Thread(target=pump, args=(stream,), daemon=True).start()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """``redis-server`` on a free loopback port, no persistence; a child process."""

    def __init__(self, tmp: str) -> None:
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.path.exists(exe):
            raise SystemExit("redis-server not found: `apt-get install -y redis-server` "
                             "(or run with --no-redis to skip the redis baseline)")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", tmp, "--maxclients", "10000",
             "--protected-mode", "no", "--loglevel", "warning"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError("redis-server did not start")
        self.version = subprocess.run([exe, "--version"], capture_output=True, text=True,
                                      timeout=10).stdout.split(" v=")[-1].split()[0]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (all threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def vm_rss(pid: int) -> int:
    """Resident set size of a process in bytes (VmRSS)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Writer:
    """The writer process: ``set SESSION VALUE`` / ``pub CHANNEL SEQ`` → ``t0 t1`` (ns)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, address: str, token_file: str, redis_port: int | None,
                    echo_address: str | None) -> Writer:
        argv = [sys.executable, os.path.abspath(__file__), "writer", "--address", address,
                "--token-file", token_file]
        if echo_address:
            argv += ["--echo-address", echo_address]
        if redis_port:
            argv += ["--redis-port", str(redis_port)]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        writer = cls(proc)
        await writer.cmd("hello")
        return writer

    async def cmd(self, line: str) -> list[int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()
        reply = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        if not reply.startswith(b"ok"):
            raise RuntimeError(f"writer: {line!r} -> {reply!r}")
        return [int(x) for x in reply.split()[1:]]

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def redis_payload(seq: int) -> bytes:
    return json.dumps({"session": "fan", "name": "x", "value": float(seq), "revision": seq,
                       "ts": time.time()}).encode()


async def writer_main(args: argparse.Namespace) -> None:
    """The other client: reads commands on stdin, answers ``ok t0 t1`` on stdout."""
    from dspex_notebook._session import SessionContext
    from dspex_notebook._wire.client import insecure_channel

    with open(args.token_file) as fh:
        token = fh.read().strip()
    channel = insecure_channel(args.address)
    contexts: dict[str, Any] = {}
    red = None
    if args.redis_port:
        import redis.asyncio as aredis

        red = aredis.Redis(host="127.0.0.1", port=args.redis_port)
    echo = EchoClient(args.echo_address) if args.echo_address else None
    tiny = b"x" * TINY_ECHO
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            cmd, *rest = line.decode().split()
            if cmd == "set":
                ctx, value = contexts[rest[0]], float(rest[1])
                t0 = CLOCK()
                await ctx.set_variable("x", value)
                t1 = CLOCK()
                out.write(f"ok {t0} {t1}\n")
            elif cmd == "pub":
                payload = redis_payload(int(rest[1]))
                assert red is not None
                t0 = CLOCK()
                await red.publish(rest[0], payload)
                t1 = CLOCK()
                out.write(f"ok {t0} {t1}\n")
            elif cmd == "echo":
                assert echo is not None
                t0 = CLOCK()
                await echo.echo(tiny)
                t1 = CLOCK()
                out.write(f"ok {t0} {t1}\n")
            elif cmd == "session":
                ctx = SessionContext(rest[0], channel, token=token, cache_ttl=0)
                await ctx.initialize()
                await ctx.get_variable("x")  # learns the type: sets are validated locally
                contexts[rest[0]] = ctx
                out.write("ok\n")
            elif cmd == "hello":
                out.write("ok\n")
            out.flush()
    finally:
        for ctx in contexts.values():
            await ctx.close()
        await channel.close()
        if echo is not None:
            await echo.close()
        if red is not None:
            await red.aclose()


# ----------------------------------------------------------------------------------------------
# fan-out groups


class Collector:
    """Counts receivers of the awaited key; notes the time the last of ``n`` got it."""

    def __init__(self) -> None:
        self.want: Any = None
        self.n = 0
        self.count = 0
        self.t_last = 0
        self.fut: asyncio.Future[None] | None = None

    def expect(self, key: Any, n: int) -> asyncio.Future[None]:
        self.want, self.n, self.count, self.t_last = key, n, 0, 0
        self.fut = asyncio.get_running_loop().create_future()
        return self.fut

    def hit(self, key: Any) -> None:
        if key == self.want:
            self.count += 1
            if self.count == self.n:
                self.t_last = CLOCK()
                if self.fut is not None and not self.fut.done():
                    self.fut.set_result(None)


@dataclass
class FanCase:
    kind: str  # ctx | raw | redis
    n: int
    label: str
    stats: Stats = field(default_factory=Stats)
    ratios: list[float] = field(default_factory=list)  # per round: p50 / redis p50
    server_cpu: list[float] = field(default_factory=list)  # per round, seconds per write
    client_cpu: list[float] = field(default_factory=list)
    opened: list[float] = field(default_factory=list)  # seconds to open the N watchers


class Group:
    """N watchers of one variable plus the command that makes one write."""

    kind = ""

    def __init__(self, n: int, collector: Collector) -> None:
        self.n = n
        self.collector = collector
        self.tasks: list[asyncio.Task[Any]] = []
        self.seq = itertools.count(1)

    async def open(self) -> None: ...

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(BaseException):
                await t

    def command(self, key: int) -> str:
        raise NotImplementedError

    async def one(self, writer: Writer) -> float:
        key = next(self.seq)
        fut = self.collector.expect(key, self.n)
        t0, _t1 = await writer.cmd(self.command(key))
        await asyncio.wait_for(fut, DELIVERY_TIMEOUT)
        return (self.collector.t_last - t0) * 1e-9


class CtxGroup(Group):
    """N SessionContexts on one shared channel, each with one ``watch_variable('x')``."""

    kind = "ctx"

    def __init__(self, n: int, collector: Collector, channel: Any, token: str, sid: str) -> None:
        super().__init__(n, collector)
        self.channel, self.token, self.sid = channel, token, sid
        self.contexts: list[Any] = []

    async def open(self) -> None:
        from dspex_notebook._session import SessionContext

        for start in range(0, self.n, 100):
            batch = [SessionContext(self.sid, self.channel, token=self.token)
                     for _ in range(min(100, self.n - start))]
            await asyncio.gather(*(c.initialize() for c in batch))
            self.contexts += batch
        collector = self.collector

        async def consume(watch: Any) -> None:
            async for update in watch:
                collector.hit(update.value)

        for ctx in self.contexts:
            self.tasks.append(asyncio.create_task(
                consume(ctx.watch_variable("x", include_initial=False))))
        await wait_until(lambda: all(c.watch_status == "live" for c in self.contexts),
                         f"{self.n} SessionContext watch streams live")

    async def close(self) -> None:
        await super().close()
        for ctx in self.contexts:
            await ctx.close()
        self.contexts = []

    def command(self, key: int) -> str:
        return f"set {self.sid} {key}"


class RawGroup(Group):
    """N raw ``Bridge.watch`` streams on one channel (the transport only)."""

    kind = "raw"

    def __init__(self, n: int, collector: Collector, channel: Any, token: str, sid: str) -> None:
        super().__init__(n, collector)
        self.channel, self.token, self.sid = channel, token, sid
        self.created = 0

    async def open(self) -> None:
        from dspex_notebook._wire.client import Bridge

        bridge = Bridge(self.channel, self.token)
        collector = self.collector

        async def consume() -> None:
            async for msg in bridge.watch(self.sid, progress_interval_ms=RAW_PROGRESS_MS):
                if msg.created:
                    self.created += 1
                for u in msg.updates:
                    collector.hit(u.value)

        self.tasks = [asyncio.create_task(consume()) for _ in range(self.n)]
        await wait_until(lambda: self.created >= self.n, f"{self.n} raw watch streams created")

    def command(self, key: int) -> str:
        return f"set {self.sid} {key}"


class RedisGroup(Group):
    """N redis-py asyncio subscribers (one connection each) of one channel."""

    kind = "redis"

    def __init__(self, n: int, collector: Collector, port: int, channel_name: str) -> None:
        super().__init__(n, collector)
        self.port, self.channel_name = port, channel_name
        self.client: Any = None
        self.subs: list[Any] = []
        self.subscribed = 0

    async def open(self) -> None:
        import redis.asyncio as aredis

        self.client = aredis.Redis(host="127.0.0.1", port=self.port,
                                    max_connections=self.n + 16)
        collector = self.collector

        async def consume(pubsub: Any) -> None:
            async for msg in pubsub.listen():
                if msg["type"] == "message":
                    collector.hit(json.loads(msg["data"])["revision"])
                elif msg["type"] == "subscribe":
                    self.subscribed += 1

        for _ in range(self.n):
            p = self.client.pubsub()
            await p.subscribe(self.channel_name)
            self.subs.append(p)
            self.tasks.append(asyncio.create_task(consume(p)))
        await wait_until(lambda: self.subscribed >= self.n, f"{self.n} redis subscribers")

    async def close(self) -> None:
        await super().close()
        for p in self.subs:
            with contextlib.suppress(Exception):
                await p.aclose()
        self.subs = []
        if self.client is not None:
            await self.client.aclose()

    def command(self, key: int) -> str:
        return f"pub {self.channel_name} {key}"


async def wait_until(pred: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


# ----------------------------------------------------------------------------------------------
# phases


@dataclass
class Env:
    args: argparse.Namespace
    token: str
    token_file: str
    runtime_dir: str
    tmp: str
    server: ServerProcess | None = None
    redis: RedisServer | None = None
    echo: ServerProcess | None = None
    writer: Writer | None = None
    channel: Any = None
    admin: Any = None


async def register_x(env: Env, sid: str) -> None:
    from dspex_notebook._session import SessionContext

    ctx = SessionContext(sid, env.channel, token=env.token, cache_ttl=0)
    await ctx.initialize()
    await ctx.register_variable("x", "float", 0.0)
    await ctx.close()
    assert env.writer is not None
    await env.writer.cmd(f"session {sid}")


FAN_ITER = {"full": {1: 200, 100: 60, 1000: 30}, "quick": {1: 60, 100: 20, 1000: 8}}
FAN_CHUNK = {1: 20, 100: 10, 1000: 2}  # writes per chunk: a chunk stays well under 2 s


async def phase_fan(env: Env) -> list[FanCase]:
    from dspex_notebook._wire.client import insecure_channel

    args = env.args
    assert env.server is not None and env.writer is not None
    out: list[FanCase] = []
    for n in args.fan_n:
        collector = Collector()
        channel = insecure_channel(env.server.address)  # the watchers' one shared channel
        sid_ctx, sid_raw = f"fan-ctx-{n}", f"fan-raw-{n}"
        await register_x(env, sid_ctx)
        groups: list[Group] = [CtxGroup(n, collector, channel, env.token, sid_ctx)]
        cases = [FanCase("ctx", n, "N SessionContexts (1 channel, 1 shared stream), "
                                   f"watch_variable, N = {n}")]
        if not args.no_raw:
            await register_x(env, sid_raw)
            groups.append(RawGroup(n, collector, channel, env.token, sid_raw))
            cases.append(FanCase("raw", n, f"N raw Bridge.watch streams (1 channel), N = {n}"))
        if env.redis is not None:
            groups.append(RedisGroup(n, collector, env.redis.port, f"fan-{n}"))
            cases.append(FanCase("redis", n, f"redis-py pub/sub, N = {n} subscribers"))
        try:
            for g, c in zip(groups, cases, strict=True):
                t0 = time.perf_counter()
                await g.open()
                c.opened.append(time.perf_counter() - t0)
                print(f"  fan N={n}: opened {g.kind} in {c.opened[-1]:.1f} s", file=sys.stderr,
                      flush=True)
            iters = FAN_ITER["quick" if args.quick else "full"][n]
            chunk = min(FAN_CHUNK[n], iters)
            for g in groups:  # warm-up
                for _ in range(3):
                    await g.one(env.writer)
                    await asyncio.sleep(GAP)
            for r in range(args.rounds):
                t_round = time.perf_counter()
                samples: dict[str, list[float]] = {g.kind: [] for g in groups}
                cpu: dict[str, list[float]] = {g.kind: [0.0, 0.0, 0] for g in groups}
                gc.collect()  # once per round: with N=1000 contexts a full collection is ~0.1 s
                for k in range(max(1, iters // chunk)):
                    order = groups if k % 2 == 0 else groups[::-1]
                    for g in order:
                        spid = env.redis.pid if env.redis is not None and g.kind == "redis" \
                            else env.server.pid
                        s0, c0 = proc_cpu(spid), time.process_time()
                        for _ in range(chunk):
                            samples[g.kind].append(await g.one(env.writer))
                            await asyncio.sleep(GAP)
                        cpu[g.kind][0] += proc_cpu(spid) - s0
                        cpu[g.kind][1] += time.process_time() - c0
                        cpu[g.kind][2] += chunk
                base = percentile(sorted(samples["redis"]), 50) if "redis" in samples else math.nan
                for c in cases:
                    c.stats.add_round(samples[c.kind])
                    c.ratios.append(c.stats.p50s[-1] / base)
                    c.server_cpu.append(cpu[c.kind][0] / cpu[c.kind][2])
                    c.client_cpu.append(cpu[c.kind][1] / cpu[c.kind][2])
                print(f"  fan N={n} round {r + 1}/{args.rounds}: {time.perf_counter() - t_round:.1f} s "
                      + " ".join(f"{c.kind} {fmt_time(c.stats.p50s[-1])}" for c in cases),
                      file=sys.stderr, flush=True)
        finally:
            for g in groups:
                await g.close()
            await channel.close()
        out += cases
    return out


@dataclass
class Row:
    op: str
    stats: Stats = field(default_factory=Stats)
    paired: Stats = field(default_factory=Stats)
    target: str = "–"
    check: Callable[[float, float], bool] | None = None
    base_label: str = "–"

    @property
    def ratio(self) -> float:
        if not self.paired.p50s:
            return math.nan
        return statistics.median(a / b for a, b in zip(self.stats.p50s, self.paired.p50s, strict=False))


async def phase_cache(env: Env) -> list[Row]:
    """Cache hit from the coherent cache, and A's write visible in B's cache, vs echo."""
    from dspex_notebook._cache import MISS
    from dspex_notebook._session import SessionContext

    args = env.args
    assert env.writer is not None and env.echo is not None
    sid = "coherent"
    await register_x(env, sid)
    b = SessionContext(sid, env.channel, token=env.token)  # defaults: ttl 1 s, coherent cache
    await b.initialize()
    echo = EchoClient(env.echo.address)
    rows: list[Row] = []
    try:
        await wait_until(lambda: b.watch_status == "live", "B's watch stream live")
        await b.get_variable("x")
        assert b.cache.info()["coherent"], b.cache.info()

        # --- 3. cache hit vs the floor (await a coroutine returning a dict value)
        d = {"x": 0.5}

        async def floor() -> Any:
            return d["x"]

        hit = Row("`await ctx.get_variable('x')`, coherent cache hit", target="< 1 µs",
                  check=lambda p50, ratio: p50 < 1e-6,
                  base_label="`await` of a coroutine returning `d['x']`")
        base = Row("`await` of a coroutine returning `d['x']` (floor)")
        batches = 50 if args.quick else 200
        for _ in range(args.rounds):
            mine: list[float] = []
            theirs: list[float] = []
            for _ in range(10):
                gc.collect()
                theirs += await time_async_batched(floor, batches // 10, 100, 20)
                mine += await time_async_batched(lambda: b.get_variable("x"), batches // 10, 100, 20)
            hit.stats.add_round(mine)
            hit.paired.add_round(theirs)
            base.stats.add_round(theirs)
        hits_before = b.cache.info()["hits"]
        assert hits_before > 0 and b.cached_value("x") is not MISS

        # --- 4. A's set → B's cached read returns the new value, vs one echo
        seen = Collector()
        seen.n = 1

        def on_change(key: str, reason: str) -> None:
            if reason == "changed":
                seen.hit(b.cached_value("x"))

        b.cache.subscribe_invalidation("x", on_change)
        tiny = b"x" * TINY_ECHO
        vis = Row("A's `set_variable('x')` → B's `cached_value('x')` is the new value",
                  target="≤ 1.5× echo", check=lambda p50, ratio: ratio <= 1.5,
                  base_label=f"echo {TINY_ECHO} B, back to back from this process")
        # the same samples against an echo made the way A's sets are made (writer process,
        # woken by a command after idle): the like-for-like round trip
        vis_w = Row("same, against the echo made like A's sets", target="≤ 1.5× echo",
                    check=lambda p50, ratio: ratio <= 1.5,
                    base_label=f"echo {TINY_ECHO} B from the writer process")
        vis_w.stats = vis.stats
        aset = Row("A's own `set_variable('x')` round trip (writer process)",
                   base_label=f"echo {TINY_ECHO} B from the writer process")
        echo_row = Row(f"echo {TINY_ECHO} B, back to back (this process → echo process)")
        after = Row("B has the new value this long after A's `set_variable` returned "
                    "(`seen − A's t1`)", base_label="n/a")
        wecho_row = Row(f"echo {TINY_ECHO} B from the writer process, one per command like A's sets")
        iters = 60 if args.quick else 300
        counter = itertools.count(1)

        async def one() -> tuple[float, float, float]:
            key = float(next(counter))
            fut = seen.expect(key, 1)
            t0, t1 = await env.writer.cmd(f"set {sid} {key}")  # type: ignore[union-attr]
            await asyncio.wait_for(fut, DELIVERY_TIMEOUT)
            return (seen.t_last - t0) * 1e-9, (t1 - t0) * 1e-9, (seen.t_last - t1) * 1e-9

        for _ in range(20):
            await one()
            await echo.echo(tiny)
        for _ in range(args.rounds):
            mine, own, theirs, wtheirs, lag = [], [], [], [], []
            for _ in range(10):
                gc.collect()
                theirs += await time_async(lambda i: echo.echo(tiny), iters // 10, 0)
                for _ in range(iters // 10):
                    t0, t1 = await env.writer.cmd("echo")
                    wtheirs.append((t1 - t0) * 1e-9)
                    await asyncio.sleep(GAP)
                    v, a, late = await one()
                    mine.append(v)
                    own.append(a)
                    lag.append(late)
                    await asyncio.sleep(GAP)
            vis.stats.add_round(mine)
            vis.paired.add_round(theirs)
            vis_w.paired.add_round(wtheirs)
            aset.stats.add_round(own)
            aset.paired.add_round(wtheirs)
            after.stats.add_round(lag)
            echo_row.stats.add_round(theirs)
            wecho_row.stats.add_round(wtheirs)
        rows = [hit, base, vis, vis_w, aset, after, echo_row, wecho_row]
        print(f"  cache/coherence: done ({b.cache.info()['hits']} hits)", file=sys.stderr,
              flush=True)
    finally:
        await b.close()
        await echo.close()
    return rows


@dataclass
class MemCase:
    kind: str
    label: str
    per_watch: list[float] = field(default_factory=list)  # bytes per watch, one per fresh server
    base_rss: list[float] = field(default_factory=list)
    open_s: list[float] = field(default_factory=list)


async def phase_memory(env: Env) -> list[MemCase]:
    """A fresh server per sample: VmRSS before/after opening MEM_N watch streams."""
    from dspex_notebook._session import SessionContext
    from dspex_notebook._wire.client import insecure_channel

    args = env.args
    cases = [MemCase("raw", f"{MEM_N} raw Bridge.watch streams on 1 channel"),
             MemCase("ctx", f"{MEM_N} SessionContexts on 1 channel (sharing 1 Watch stream)")]
    for r in range(args.mem_samples):
        for case in cases:
            server = start_dspex(["--memory"], env.token_file, env.runtime_dir)
            channel = insecure_channel(server.address)
            group: Group | None = None
            try:
                sid = "mem"
                admin = SessionContext(sid, channel, token=env.token, cache_ttl=0)
                await admin.initialize()
                await admin.register_variable("x", "float", 0.0)
                await admin.close()
                # warm-up: the server's one-time costs of serving a stream (threads, pools)
                warm = (CtxGroup if case.kind == "ctx" else RawGroup)(10, Collector(), channel,
                                                                       env.token, sid)
                await warm.open()
                await warm.close()
                await asyncio.sleep(0.3)
                rss0 = vm_rss(server.pid)
                group = (CtxGroup if case.kind == "ctx" else RawGroup)(MEM_N, Collector(), channel,
                                                                        env.token, sid)
                t0 = time.perf_counter()
                await group.open()
                case.open_s.append(time.perf_counter() - t0)
                await asyncio.sleep(0.5)
                rss1 = vm_rss(server.pid)
                case.per_watch.append((rss1 - rss0) / MEM_N)
                case.base_rss.append(rss0)
                print(f"  memory sample {r + 1}/{args.mem_samples} {case.kind}: "
                      f"{rss0 / 2**20:.1f} MiB -> {rss1 / 2**20:.1f} MiB = "
                      f"{(rss1 - rss0) / MEM_N / 1024:.1f} KiB per watch", file=sys.stderr, flush=True)
            finally:
                if group is not None:
                    await group.close()
                await channel.close()
                server.stop()
    return cases


# ----------------------------------------------------------------------------------------------
# report


def fan_table(cases: list[FanCase]) -> str:
    rows = []
    for c in cases:
        if c.kind == "redis":
            ratio_s, target, verdict = "1.00× (baseline)", "–", "–"
        else:
            ratio = statistics.median(c.ratios) if c.ratios else math.nan
            ratio_s = "–" if math.isnan(ratio) else f"{ratio:.2f}×"
            target = "≤ 1.0× redis" if (c.kind == "ctx" and c.n == 1000) else "–"
            verdict = ("PASS" if ratio <= 1.0 else "FAIL") if target != "–" else "–"
        lo, hi = c.stats.p50_spread
        rows.append([c.label, fmt_time(c.stats.p50), fmt_time(c.stats.p99),
                     f"{fmt_time(lo)} – {fmt_time(hi)}", ratio_s,
                     f"{statistics.median(c.server_cpu) * 1e3:.2f} ms / "
                     f"{statistics.median(c.client_cpu) * 1e3:.2f} ms",
                     target, verdict])
    return markdown_table(["set → last of N watchers", "p50", "p99", "p50 spread (rounds)",
                           "p50 / redis p50 (paired)", "CPU per write: server / watchers' process",
                           "target", "pass/fail"], rows)


def fan_spread(cases: list[FanCase]) -> str:
    rows = [[c.label, " ".join(fmt_time(x) for x in c.stats.p50s),
             " ".join(fmt_time(x) for x in c.stats.p99s),
             " ".join(f"{x:.2f}" for x in c.ratios) if c.kind != "redis" else "–",
             " ".join(f"{x:.1f}" for x in c.opened), c.stats.samples] for c in cases]
    return markdown_table(["case", "per-round p50s", "per-round p99s", "per-round ratios",
                           "open N watchers (s)", "samples"], rows)


def mem_table(cases: list[MemCase]) -> str:
    rows = []
    for c in cases:
        per = statistics.median(c.per_watch)
        target = "≤ 25 KB" if c.kind == "raw" else "–"
        verdict = ("PASS" if per <= 25_000 else "FAIL") if c.kind == "raw" else "–"
        rows.append([c.label, f"{per / 1000:.1f} KB",
                     " ".join(f"{x / 1000:.1f}" for x in c.per_watch),
                     f"{statistics.median(c.base_rss) / 2**20:.1f} MiB",
                     f"{statistics.median(c.open_s):.2f} s", target, verdict])
    return markdown_table(["server RSS per open watch", "median", "per fresh server (KB)",
                           "RSS before", "open 1000", "target", "pass/fail"], rows)


def rows_table(rows: list[Row]) -> str:
    out = []
    for r in rows:
        if r.paired.p50s:
            ratio = r.ratio
            ratio_s = f"{ratio:.2f}×"
            base = f"{r.base_label}, paired: {fmt(r.paired.p50)}"
        elif r.base_label == "n/a":
            ratio, ratio_s, base = math.nan, "–", "–"
        else:
            ratio, ratio_s, base = 1.0, "1.00×", "(itself)"
        lo, hi = r.stats.p50_spread
        verdict = "–" if r.check is None else ("PASS" if r.check(r.stats.p50, ratio) else "FAIL")
        out.append([r.op, fmt(r.stats.p50), fmt(r.stats.p99),
                    f"{fmt(lo)} – {fmt(hi)}", ratio_s, base, r.target, verdict])
    return markdown_table(["operation", "p50", "p99", "p50 spread (rounds)", "ratio p50 / baseline p50",
                           "baseline", "target", "pass/fail"], out)


# ----------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    from dspex_notebook._wire.client import insecure_channel

    token = secrets.token_urlsafe(24)
    token_file = os.path.join(tmp, "token")
    with open(token_file, "w") as fh:
        fh.write(token)
    env = Env(args, token, token_file, os.path.join(tmp, "runtime"), tmp)
    results: dict[str, Any] = {}
    try:
        env.server = start_dspex(["--memory"], token_file, env.runtime_dir)
        if not args.no_redis:
            env.redis = RedisServer(tmp)
            results["redis-server"] = env.redis.version
        env.echo = start_echo_process()
        env.writer = await Writer.start(env.server.address, token_file,
                                        env.redis.port if env.redis else None, env.echo.address)
        env.channel = insecure_channel(env.server.address)
        print(f"servers: dspex pid {env.server.pid} {env.server.address}; "
              f"redis pid {env.redis.pid if env.redis else '-'}; echo pid {env.echo.pid}; "
              f"writer pid {env.writer.proc.pid}", file=sys.stderr, flush=True)
        if "cache" in args.cases:
            results["cache"] = await phase_cache(env)
        if "fan" in args.cases:
            results["fan"] = await phase_fan(env)
    finally:
        if env.writer is not None:
            await env.writer.stop()
        if env.channel is not None:
            await env.channel.close()
        for p in (env.server, env.echo, env.redis):
            if p is not None:
                p.stop()
    if "memory" in args.cases:
        results["memory"] = await phase_memory(env)
    return results


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["writer"]:
        p = argparse.ArgumentParser()
        p.add_argument("cmd")
        p.add_argument("--address", required=True)
        p.add_argument("--token-file", required=True)
        p.add_argument("--redis-port", type=int, default=0)
        p.add_argument("--echo-address", default="")
        asyncio.run(writer_main(p.parse_args(argv)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds, fewer writes (smoke)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 5; quick 3)")
    parser.add_argument("--cases", default="cache,fan,memory",
                        help="comma-separated parts: cache (hit + cross-client visibility), "
                             "fan (fan-out), memory (RSS per watch)")
    parser.add_argument("--fan-n", default=",".join(map(str, FAN_N)),
                        help="watcher counts for the fan-out (subset of 1,100,1000)")
    parser.add_argument("--mem-samples", type=int, default=None,
                        help="fresh servers per memory case (default 3; quick 1)")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw Bridge.watch rows")
    parser.add_argument("--no-redis", action="store_true", help="skip the redis baseline")
    parser.add_argument("--output", default=None, help="also write the markdown report here")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (3 if args.quick else 5)
    args.mem_samples = args.mem_samples or (1 if args.quick else 3)
    args.cases = {c.strip() for c in args.cases.split(",") if c.strip()}
    args.fan_n = [int(x) for x in args.fan_n.split(",")]
    if not set(args.fan_n) <= set(FAN_N) or not args.cases <= {"cache", "fan", "memory"}:
        parser.error("--fan-n must be a subset of 1,100,1000 and --cases of cache,fan,memory")
    if not 1 <= args.rounds <= 50:
        parser.error("--rounds must be 1..50")
    if time.get_clock_info("perf_counter").implementation != "clock_gettime(CLOCK_MONOTONIC)":
        raise SystemExit("needs perf_counter = CLOCK_MONOTONIC (one clock across processes)")
    # 1000 redis connections + streams: make sure the descriptor limit allows them
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 8192:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(8192, hard), hard))

    started = time.perf_counter()
    env_info = environment()
    try:
        import redis

        env_info["redis-py"] = redis.__version__
    except ImportError:
        if not args.no_redis:
            raise SystemExit("redis-py is missing: install the dev extra (or --no-redis)") from None
    tmp = tempfile.mkdtemp(prefix="dspex-watch-bench-")
    try:
        results = asyncio.run(run(args, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.perf_counter() - started
    if "redis-server" in results:
        env_info["redis-server"] = results["redis-server"]

    cmd = "python benchmarks/watch.py " + " ".join(argv)
    out = [
        "## Live data: watch fan-out and coherent cache",
        "",
        f"Command: `{cmd.strip()}` — {args.rounds} rounds; wall time {elapsed:.0f} s.",
        "p50/p99: per-round nearest-rank percentiles, median across rounds; spread = min – max "
        "of the per-round p50s. Ratios are paired (same round, alternating chunks).",
        "",
    ]
    if "fan" in results:
        out += ["### Fan-out: set (writer process) → delivered to the last of N watchers", "",
                fan_table(results["fan"]), ""]
    if "memory" in results:
        out += ["### Server memory per open watch (fresh `serve --memory` per sample)", "",
                mem_table(results["memory"]), ""]
    if "cache" in results:
        out += ["### Coherent cache", "", rows_table(results["cache"]), ""]
    out += ["Environment:", "", *[f"- {k}: {v}" for k, v in env_info.items()],
            f"- load average (end): {' '.join(f'{x:.2f}' for x in os.getloadavg())}", ""]
    if "fan" in results:
        out += ["<details><summary>fan-out per round</summary>", "", fan_spread(results["fan"]),
                "", "</details>"]
    report = "\n".join(out)
    emit(report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
