"""Notebook-layer benchmark: ``%var NAME`` (cache hit and miss) vs a direct ``await`` on a
SessionContext, against the same server, in one process.

Topology (everything measured in the same run):

* the server: ``python -m dspex_notebook serve --port 0 --memory`` in its own process (default),
  or ``dspex_notebook.testing.running_server()`` in a thread of this process (``--in-process``,
  the topology of a kernel's embedded server: the server shares this process's GIL);
* an IPython ``InteractiveShell`` with ``%load_ext dspex_notebook`` configured to that server
  (``%config DspexMagics.address/token``): its SessionContext lives on the ``dspex-io`` thread
  and ``session`` (a NotebookSession proxy) is in the user namespace;
* a second, plain SessionContext on an asyncio loop in the main thread (the baseline: what a
  script does), and the proxy awaited from that same main-thread loop (what a cell does).

Cases, all reading the float variable ``x``:

* hit  -- ``%var x`` (``ip.run_line_magic``), ``await session.get_variable("x")`` (proxy), and
  ``await ctx.get_variable("x")`` (direct), each with a warm cache (TTL 1 h). Sub-microsecond
  paths are timed in batches of 100 back-to-back calls (mean per call), all hit rows alike;
* miss -- ``%var x`` with the proxy's cache disabled (``session.set_cache_config(ttl=0)``),
  ``await session.get_variable("x", bypass_cache=True)``, ``Portal.run`` of the IO-thread
  context's call (the magic's thread hop without IPython/parsing), and the direct
  ``await ctx.get_variable("x", bypass_cache=True)``; timed per call.

Each round runs every case once (interleaved, so drift hits all alike); the table reports the
median over rounds of the per-round p50 and p99, and the ratio of p50s to the direct await in
the same cache state.

    python benchmarks/notebook.py                  # 5 rounds x 2000 (~1.5 min on 2 cores)
    python benchmarks/notebook.py --quick          # 3 rounds x 300 (smoke, ~10 s)
    python benchmarks/notebook.py --in-process --output table.md
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _common import (  # noqa: E402
    ServerProcess,
    Stats,
    emit,
    environment,
    fmt_time,
    markdown_table,
    time_async,
    time_async_batched,
)

BATCH = 100  # calls per timed batch for the hit rows


@dataclass
class Case:
    op: str
    path: str
    kind: str  # "hit" | "miss"
    sync: Callable[[], Any] | None = None
    aio: Callable[[], Awaitable[Any]] | None = None
    setup: Callable[[], None] | None = None
    baseline: bool = False
    stats: Stats = field(default_factory=Stats)
    paired: Stats = field(default_factory=Stats)  # its baseline, timed interleaved


def time_sync(fn: Callable[[], Any], iterations: int, warmup: int) -> list[float]:
    clock = time.perf_counter_ns
    for _ in range(warmup):
        fn()
    out = [0.0] * iterations
    for i in range(iterations):
        t0 = clock()
        fn()
        out[i] = (clock() - t0) * 1e-9
    return out


def time_sync_batched(fn: Callable[[], Any], batches: int, per_batch: int, warmup: int) -> list[float]:
    clock = time.perf_counter_ns
    for _ in range(warmup):
        fn()
    out = [0.0] * batches
    for b in range(batches):
        t0 = clock()
        for _ in range(per_batch):
            fn()
        out[b] = (clock() - t0) * 1e-9 / per_batch
    return out


def start_server_process(tmp: str, token_file: str) -> ServerProcess:
    def parse(line: str) -> str | None:
        return line.rsplit(" on ", 1)[1].strip() if " serving " in line and " on " in line else None

    env = dict(os.environ, DSPEX_RUNTIME_DIR=os.path.join(tmp, "server-runtime"))
    for var in ("DSPEX_ADDRESS", "DSPEX_TOKEN", "DSPEX_TOKEN_FILE"):
        env.pop(var, None)
    return ServerProcess([sys.executable, "-m", "dspex_notebook", "serve", "--port", "0", "--memory",
                          "--token-file", token_file], parse, env=env)


def make_shell(tmp: str, address: str, token: str) -> Any:
    os.environ["IPYTHONDIR"] = os.path.join(tmp, "ipython")
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryAccessor.enabled = False
    ip = InteractiveShell.instance(config=config)
    ip.run_line_magic("config", f"DspexMagics.address = {address!r}")
    ip.run_line_magic("config", f"DspexMagics.token = {token!r}")
    ip.run_line_magic("config", "DspexMagics.session_id = 'bench-notebook'")
    ip.run_line_magic("load_ext", "dspex_notebook")
    ip.run_line_magic("var", "register x float 0.5 --replace")
    return ip


def build_cases(ip: Any, ctx: Any) -> list[Case]:
    session = ip.user_ns["session"]  # NotebookSession: context on the dspex-io thread
    io_ctx, portal = session.context, session.portal

    def warm_hits() -> None:
        session.set_cache_config(ttl=3600.0)
        ip.run_line_magic("var", "x")  # (re)fill the proxy's cache

    def no_cache() -> None:
        session.set_cache_config(ttl=0)

    magic = ip.run_line_magic
    return [
        Case("`%var x`", "magic, hit (kernel thread)", "hit",
             sync=lambda: magic("var", "x"), setup=warm_hits),
        Case("`await session.get_variable('x')`", "NotebookSession proxy, hit", "hit",
             aio=lambda: session.get_variable("x"), setup=warm_hits),
        Case("`await ctx.get_variable('x')`", "direct SessionContext, hit", "hit",
             aio=lambda: ctx.get_variable("x"), baseline=True),
        Case("`%var x`", "magic, miss (cache ttl=0) → IO thread → server", "miss",
             sync=lambda: magic("var", "x"), setup=no_cache),
        Case("`Portal.run(ctx.get_variable('x', bypass_cache=True))`",
             "IO-thread hop only (no IPython)", "miss",
             sync=lambda: portal.run(io_ctx.get_variable("x", bypass_cache=True), 30.0)),
        Case("`await session.get_variable('x', bypass_cache=True)`",
             "NotebookSession proxy, miss (wrap_future hop)", "miss",
             aio=lambda: session.get_variable("x", bypass_cache=True)),
        Case("`await ctx.get_variable('x', bypass_cache=True)`", "direct SessionContext, miss",
             "miss", aio=lambda: ctx.get_variable("x", bypass_cache=True), baseline=True),
    ]


def measure(loop: asyncio.AbstractEventLoop, case: Case, units: int, warmup: int) -> list[float]:
    """``units`` samples: single calls for misses, mean per call of BATCH-call batches for hits."""
    if case.kind == "hit":
        if case.sync is not None:
            return time_sync_batched(case.sync, units, BATCH, warmup)
        return loop.run_until_complete(time_async_batched(case.aio, units, BATCH, warmup))
    if case.sync is not None:
        return time_sync(case.sync, units, warmup)
    return loop.run_until_complete(time_async(lambda i, f=case.aio: f(), units, warmup))


def run_rounds(loop: asyncio.AbstractEventLoop, cases: list[Case], rounds: int, iterations: int,
               warmup: int, chunks: int = 10) -> None:
    """Each round runs every case once. A non-baseline case is timed in ``chunks`` blocks that
    alternate with equally many calls of its baseline (the direct await in the same cache state),
    so its ratio compares calls made within the same second: other load on a small machine
    moves absolute numbers by tens of percent between seconds."""
    base = {c.kind: c for c in cases if c.baseline}
    for r in range(rounds):
        t0 = time.perf_counter()
        for case in cases:
            units = iterations if case.kind == "miss" else max(20, iterations // 10)
            if case.setup is not None:
                case.setup()
            gc.collect()
            if case.baseline:
                case.stats.add_round(measure(loop, case, units, warmup))
                continue
            ref = base[case.kind]
            measure(loop, ref, 0, warmup)
            measure(loop, case, 0, warmup)
            per = max(1, units // chunks)
            mine: list[float] = []
            theirs: list[float] = []
            for _ in range(chunks):
                theirs += measure(loop, ref, per, 0)
                mine += measure(loop, case, per, 0)
            case.stats.add_round(mine)
            case.paired.add_round(theirs)
        print(f"  round {r + 1}/{rounds}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)


def table(cases: list[Case]) -> str:
    rows = []
    for c in cases:
        if c.baseline:
            ratio = "1.00× (baseline)"
        else:  # median over rounds of (this case's p50 / its interleaved baseline's p50)
            pairs = zip(c.stats.p50s, c.paired.p50s, strict=True)
            ratio = f"{statistics.median([a / b for a, b in pairs]):.2f}×"
        rows.append([c.kind, c.op, c.path, fmt_time(c.stats.p50), fmt_time(c.stats.p99), ratio,
                     " ".join(fmt_time(x) for x in c.stats.p50s)])
    return markdown_table(["cache", "operation", "path", "p50", "p99",
                           "p50 / direct await p50 (paired)", "per-round p50s"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds × 300 iterations (smoke)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 5; quick 3)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="timed calls per miss case per round (default 2000; quick 300); hit "
                             f"cases time iterations/10 batches of {BATCH} calls")
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls per case per round")
    parser.add_argument("--in-process", action="store_true",
                        help="run the server in a thread of this process (running_server) "
                             "instead of a `dspex_notebook serve --memory` subprocess")
    parser.add_argument("--output", default=None, help="also write the markdown report here")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (3 if args.quick else 5)
    args.iterations = args.iterations or (300 if args.quick else 2000)
    args.warmup = args.warmup if args.warmup is not None else (30 if args.quick else 100)

    tmp = tempfile.mkdtemp(prefix="dspex-bench-nb-")
    os.environ["DSPEX_RUNTIME_DIR"] = os.path.join(tmp, "runtime")  # never the user's files
    os.environ["DSPEX_DB"] = os.path.join(tmp, "unused.sqlite3")
    for var in ("DSPEX_ADDRESS", "DSPEX_TOKEN", "DSPEX_TOKEN_FILE"):
        os.environ.pop(var, None)
    env = environment()
    from dspex_notebook._session import SessionContext
    from dspex_notebook._wire.client import insecure_channel
    from dspex_notebook.testing import running_server

    proc = ip = None
    loop = asyncio.new_event_loop()
    ctx = None
    stack = contextlib.ExitStack()
    try:
        if args.in_process:
            srv = stack.enter_context(running_server())
            address, token = srv.address, srv.token
            where = "in-process (`running_server()`, a thread of this process)"
        else:
            token = secrets.token_urlsafe(24)
            token_file = os.path.join(tmp, "token")
            with open(token_file, "w") as fh:
                fh.write(token)
            proc = start_server_process(tmp, token_file)
            address = proc.address
            where = f"`python -m dspex_notebook serve --port 0 --memory` (pid {proc.pid})"
        print(f"server: {where} at {address}", file=sys.stderr, flush=True)
        ip = make_shell(tmp, address, token)

        async def direct() -> Any:
            c = SessionContext("bench-notebook", insecure_channel(address), token=token,
                               cache_ttl=3600.0)
            c._owns_channel = True
            await c.initialize()
            await c.get_variable("x")  # warm
            return c

        ctx = loop.run_until_complete(direct())
        cases = build_cases(ip, ctx)
        run_rounds(loop, cases, args.rounds, args.iterations, args.warmup)
    finally:
        if ctx is not None:
            loop.run_until_complete(ctx.close())
        loop.close()
        if ip is not None:
            ip.run_line_magic("unload_ext", "dspex_notebook")
        if proc is not None:
            proc.stop()
        stack.close()
        shutil.rmtree(tmp, ignore_errors=True)

    import ipykernel
    import IPython

    env["ipython / ipykernel"] = f"{IPython.__version__} / {ipykernel.__version__}"
    env["server"] = where
    env["rounds × iterations"] = (f"{args.rounds} × {args.iterations} per miss case; hit cases "
                                  f"{max(20, args.iterations // 10)} batches × {BATCH} calls")
    if hasattr(os, "getloadavg"):
        env["load average (end)"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    report = "\n".join(f"- {k}: {v}" for k, v in env.items()) + "\n\n" + table(cases) + "\n"
    emit(report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
