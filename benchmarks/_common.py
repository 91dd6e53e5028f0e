"""Shared benchmark helpers: timing, per-round percentiles, a markdown table, and a bare
grpc.aio echo server (the baseline every RPC benchmark measures in the same run).

Run the echo server on its own (what the benchmarks do, as a subprocess)::

    python benchmarks/_common.py echo-server [--port 0]

It prints ``PORT <n>`` once bound and serves until SIGTERM/SIGINT or until stdin closes. Methods
(generic handlers, raw bytes, no protobuf on either side):

* ``/bench.Echo/Echo``  returns the request bytes unchanged;
* ``/bench.Echo/Sized`` returns a reply of ``int.from_bytes(request[:8], "little")`` bytes (a
  cached buffer), so a small request can get a large answer, like a batch read.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

ECHO_SERVICE = "bench.Echo"
ECHO_METHOD = f"/{ECHO_SERVICE}/Echo"
SIZED_METHOD = f"/{ECHO_SERVICE}/Sized"
MAX_MESSAGE = 64 * 1024 * 1024
CHANNEL_OPTIONS = (  # the same limits the package's client channel uses
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
)

# ----------------------------------------------------------------------------------------------
# statistics


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class Stats:
    """Per-round p50/p99 of one case and their medians across rounds (seconds)."""

    p50s: list[float] = field(default_factory=list)
    p99s: list[float] = field(default_factory=list)
    samples: int = 0

    def add_round(self, samples: Sequence[float]) -> None:
        s = sorted(samples)
        self.p50s.append(percentile(s, 50))
        self.p99s.append(percentile(s, 99))
        self.samples += len(s)

    @property
    def p50(self) -> float:
        return statistics.median(self.p50s) if self.p50s else math.nan

    @property
    def p99(self) -> float:
        return statistics.median(self.p99s) if self.p99s else math.nan

    @property
    def p50_spread(self) -> tuple[float, float]:
        return (min(self.p50s), max(self.p50s)) if self.p50s else (math.nan, math.nan)


async def time_async(fn: Callable[[int], Awaitable[Any]], iterations: int, warmup: int) -> list[float]:
    """Await ``fn(i)`` ``warmup`` times untimed, then ``iterations`` times; return seconds each."""
    clock = time.perf_counter_ns
    for i in range(warmup):
        await fn(i)
    out = [0.0] * iterations
    for i in range(iterations):
        t0 = clock()
        await fn(warmup + i)
        out[i] = (clock() - t0) * 1e-9
    return out


async def time_async_batched(fn: Callable[[], Awaitable[Any]], batches: int, per_batch: int,
                             warmup: int) -> list[float]:
    """For sub-microsecond calls: mean seconds per call over ``batches`` batches of
    ``per_batch`` back-to-back awaits (per-call clock reads would dominate)."""
    clock = time.perf_counter_ns
    for _ in range(warmup):
        await fn()
    out = [0.0] * batches
    for b in range(batches):
        t0 = clock()
        for _ in range(per_batch):
            await fn()
        out[b] = (clock() - t0) * 1e-9 / per_batch
    return out


# ----------------------------------------------------------------------------------------------
# formatting


def fmt_time(seconds: float) -> str:
    if math.isnan(seconds):
        return "–"
    if seconds < 1e-6:
        return f"{seconds * 1e9:.0f} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def emit(report: str, output: str | None) -> None:
    """Print the report; with ``--output FILE`` also write it there (ending in one newline)."""
    print(report)
    if output:
        with open(output, "w") as fh:
            fh.write(report.rstrip("\n") + "\n")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def environment() -> dict[str, str]:
    """CPU model, cores, Python, grpcio, protobuf, numpy, kernel, date, load average."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    env = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": f"{cpu} ({os.cpu_count()} logical cores)",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "kernel": platform.release(),
    }
    for mod, key in (("grpc", "grpcio"), ("google.protobuf", "protobuf"), ("numpy", "numpy")):
        try:
            env[key] = __import__(mod, fromlist=["__version__"]).__version__
        except ImportError:
            env[key] = "not installed"
    try:
        from google.protobuf.internal import api_implementation

        env["protobuf"] += f" ({api_implementation.Type()})"
    except Exception:  # pragma: no cover - informational only
        pass
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "dspex_notebook"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        env["package source"] = f"git {head}" + (" + uncommitted changes in dspex_notebook/"
                                                 if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    with contextlib.suppress(OSError):
        env["load average (start)"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return env


# ----------------------------------------------------------------------------------------------
# subprocess servers


class ServerProcess:
    """A server subprocess that prints a line announcing its address; stopped with SIGTERM."""

    def __init__(self, argv: Sequence[str], parse: Callable[[str], str | None],
                 env: dict[str, str] | None = None, timeout: float = 30.0) -> None:
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env,
        )
        self.address = ""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            seen.append(line.rstrip())
            found = parse(line)
            if found:
                self.address = found
                return
        err = self.proc.stderr.read() if self.proc.poll() is not None and self.proc.stderr else ""
        self.stop()
        raise RuntimeError(f"{' '.join(self.argv)} did not start: {seen} {err}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(Exception):
                    stream.close()


def start_echo_process(python: str = sys.executable) -> ServerProcess:
    """The bare echo server in its own process (same topology as ``dspex-notebook serve``)."""

    def parse(line: str) -> str | None:
        return f"127.0.0.1:{line.split()[1]}" if line.startswith("PORT ") else None

    return ServerProcess([python, os.path.abspath(__file__), "echo-server", "--port", "0"], parse)


async def _start_echo(host: str, port: int, start: bool = True):
    """A grpc.aio server with the echo methods bound to ``host:port`` (started unless
    ``start`` is False, so that more handlers can be added first); ``(server, port)``."""
    import grpc

    blobs: dict[int, bytes] = {}

    async def echo(request: bytes, context: Any) -> bytes:
        return request

    async def sized(request: bytes, context: Any) -> bytes:
        n = int.from_bytes(request[:8], "little")
        blob = blobs.get(n)
        if blob is None:
            blob = blobs[n] = os.urandom(n)
        return blob

    server = grpc.aio.server(options=[("grpc.max_receive_message_length", MAX_MESSAGE),
                                      ("grpc.max_send_message_length", MAX_MESSAGE),
                                      ("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(ECHO_SERVICE, {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Sized": grpc.unary_unary_rpc_method_handler(sized),
    }),))
    bound = server.add_insecure_port(f"{host}:{port}")
    if start:
        await server.start()
    return server, bound


async def _echo_main(host: str, port: int) -> None:
    server, bound = await _start_echo(host, port)
    print(f"PORT {bound}", flush=True)
    await serve_until_stopped(server)


async def serve_until_stopped(server: Any) -> None:
    """Keep a started grpc.aio ``server`` up until SIGINT/SIGTERM or until stdin closes (the
    parent went away), then stop it."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # also stop when the parent goes away (stdin closes)
    def watch_stdin() -> None:
        sys.stdin.read()
        with contextlib.suppress(RuntimeError):  # loop already closed
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    await stop.wait()
    await server.stop(0.5)


@contextlib.contextmanager
def echo_in_thread(host: str = "127.0.0.1") -> Iterator[str]:
    """The echo server on its own event loop in a daemon thread of this process (the same
    topology as :class:`dspex_notebook.server.runner.EmbeddedServer`); yields its address."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    def main() -> None:
        loop = asyncio.new_event_loop()
        box["loop"] = loop

        async def run() -> None:
            server, bound = await _start_echo(host, 0)
            box["stop"] = asyncio.Event()
            box["address"] = f"{host}:{bound}"
            ready.set()
            await box["stop"].wait()
            await server.stop(0.5)

        try:
            loop.run_until_complete(run())
        finally:
            loop.close()

    thread = threading.Thread(target=main, name="bench-echo", daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("in-thread echo server did not start")
    try:
        yield box["address"]
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(10)


class EchoClient:
    """Raw-bytes unary calls to the echo server over one grpc.aio channel."""

    def __init__(self, address: str, metadata: Sequence[tuple[str, str]] | None = None,
                 timeout: float | None = None) -> None:
        import grpc

        self.channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        self._echo = self.channel.unary_unary(ECHO_METHOD)
        self._sized = self.channel.unary_unary(SIZED_METHOD)
        self._md = tuple(metadata) if metadata else None
        self._timeout = timeout

    async def echo(self, payload: bytes) -> bytes:
        return await self._echo(payload, metadata=self._md, timeout=self._timeout)

    async def sized(self, request: bytes) -> bytes:
        return await self._sized(request, metadata=self._md, timeout=self._timeout)

    @staticmethod
    def sized_request(reply_bytes: int, request_bytes: int = 8) -> bytes:
        return reply_bytes.to_bytes(8, "little") + b"\0" * max(0, request_bytes - 8)

    async def close(self) -> None:
        await self.channel.close()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="benchmark helper servers")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("echo-server", help="bare grpc.aio echo server (generic handler, bytes)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(_echo_main(args.host, args.port))
