"""Foundation benchmark: SessionContext get/set/batch latency against a bare grpc.aio echo.

Everything is measured in one run on this machine, baselines included:

* a bare grpc.aio echo server (generic handler, raw bytes) in its own process;
* ``python -m dspex_notebook serve --port 0 --memory`` in its own process;
* ``python -m dspex_notebook serve --port 0 --db <tmpfile>`` (SQLite, WAL + synchronous=FULL);
* a diagnostic second ``--memory`` server started with glibc's mmap/trim thresholds raised
  (``--no-malloc-row`` skips it): only the large batch reads are measured there;
* then, in a second phase, the in-process variant: ``dspex_notebook.testing.running_server``
  (server on its own loop in a thread of this process) against an echo server run the same way.

The client is always this process, on one asyncio loop, one grpc.aio channel per server.
"Uncached" means a SessionContext with ``cache_ttl=0`` plus ``bypass_cache=True``.

Each round runs every case once; a case records ``iterations`` (scaled per case) sequential
calls after a warm-up, in 10 chunks alternating with as many calls of its echo baseline, and
keeps its per-round p50/p99 and the paired baseline's p50. The table reports the median across
rounds of those p50s and p99s, and the median across rounds of (p50 / paired echo p50) as the
ratio: on a noisy 2-core box only calls made within the same second compare fairly.

    python benchmarks/foundation.py                 # full run (~3-4 min on 2 cores)
    python benchmarks/foundation.py --quick         # smoke run (~30 s)
    python benchmarks/foundation.py --rounds 7 --iterations 2000 --output table.md
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import math
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

import numpy as np  # noqa: E402
from _common import (  # noqa: E402
    EchoClient,
    ServerProcess,
    Stats,
    echo_in_thread,
    emit,
    environment,
    fmt_time,
    markdown_table,
    start_echo_process,
    time_async,
    time_async_batched,
)
from _floor import NAMES as FLOOR_NAMES  # noqa: E402
from _floor import FloorClient, start_floor_process, variable_message  # noqa: E402

from dspex_notebook.server.limits import Limits  # noqa: E402

SMALL_N = (100, 1000)
EMB_N = 1000
EMB_DIM = 768
TINY_ECHO = 64  # bytes each way; our tiny requests/replies are 19-93 bytes (printed below)
#: glibc settings for the diagnostic "malloc-tuned" server: keep large buffers on the heap instead
#: of fresh mmap()s, whose page faults dominate serializing a 3 MB reply on this VM.
#: the server refuses larger batches (Limits.max_batch, 500 by default): 1000-variable reads
#: are made as ceil(1000 / MAX_BATCH) sequential get_variables calls, as a caller has to
MAX_BATCH = Limits().max_batch
MALLOC_TUNED = {"MALLOC_MMAP_THRESHOLD_": str(64 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}


@dataclass
class Case:
    op: str
    backend: str
    fn: Callable[[int], Awaitable[Any]] | None
    baseline: str | None = None  # key of the case whose p50 the ratio divides by
    scale: float = 1.0  # iterations multiplier (expensive cases run fewer)
    target: str = "–"
    check: Callable[[float, float], bool] | None = None  # (p50, ratio) -> pass?
    batched: Callable[[], Awaitable[Any]] | None = None  # sub-µs: timed in batches
    stats: Stats = field(default_factory=Stats)
    #: the baseline's samples taken in chunks alternating with this case's (same time window)
    paired: Stats = field(default_factory=Stats)

    @property
    def ratio(self) -> float:
        """Median across rounds of (this round's p50 / the paired baseline's p50)."""
        if not self.paired.p50s:
            return math.nan
        return statistics.median(a / b for a, b in zip(self.stats.p50s, self.paired.p50s, strict=False))

    @property
    def key(self) -> str:
        return f"{self.op} [{self.backend}]"


async def get_many(ctx: Any, names: list[str]) -> dict[str, Any]:
    """``get_variables`` in calls of at most MAX_BATCH names (the server's batch limit)."""
    if len(names) <= MAX_BATCH:
        return await ctx.get_variables(names)
    out: dict[str, Any] = {}
    for start in range(0, len(names), MAX_BATCH):
        out.update(await ctx.get_variables(names[start: start + MAX_BATCH]))
    return out


def _calls(n: int) -> str:
    k = -(-n // MAX_BATCH)
    return "" if k == 1 else f" as {k} × {MAX_BATCH}"


def ratio_at_most(limit: float) -> Callable[[float, float], bool]:
    return lambda p50, ratio: ratio <= limit


def p50_at_most(seconds: float) -> Callable[[float, float], bool]:
    return lambda p50, ratio: p50 <= seconds


# ----------------------------------------------------------------------------------------------
# servers


def start_dspex(backend_args: list[str], token_file: str, runtime_dir: str,
                extra_env: dict[str, str] | None = None) -> ServerProcess:
    def parse(line: str) -> str | None:
        if " serving " in line and " on " in line:
            return line.rsplit(" on ", 1)[1].strip()
        return None

    env = dict(os.environ, DSPEX_RUNTIME_DIR=runtime_dir, **(extra_env or {}))
    for var in ("DSPEX_ADDRESS", "DSPEX_TOKEN", "DSPEX_TOKEN_FILE"):
        env.pop(var, None)
    argv = [sys.executable, "-m", "dspex_notebook", "serve", "--port", "0",
            "--token-file", token_file, *backend_args]
    return ServerProcess(argv, parse, env=env)


# ----------------------------------------------------------------------------------------------
# fixtures: variables in a fresh session


async def populate(ctx: Any, emb: bool) -> dict[str, Any]:
    """Register x (float), s_0000.. (floats), and optionally e_0000.. (768-dim embeddings)."""
    await ctx.register_variable("x", "float", 0.5, constraints={"min": 0.0, "max": 1e9})
    await ctx.register_variable("e", "embedding", np.random.rand(EMB_DIM).astype(np.float32))
    n_small = max(SMALL_N)
    for start in range(0, n_small, 500):
        await ctx.register_variables([
            {"name": f"s_{i:04d}", "type": "float", "initial_value": float(i)}
            for i in range(start, min(start + 500, n_small))
        ])
    if emb:
        rng = np.random.default_rng(1)
        for start in range(0, EMB_N, 250):
            await ctx.register_variables([
                {"name": f"e_{i:04d}", "type": "embedding",
                 "initial_value": rng.random(EMB_DIM, dtype=np.float32)}
                for i in range(start, min(start + 250, EMB_N))
            ])
    return {
        "small": {n: [f"s_{i:04d}" for i in range(n)] for n in SMALL_N},
        "emb": [f"e_{i:04d}" for i in range(EMB_N)] if emb else [],
    }


def wire_sizes() -> dict[str, int]:
    """Serialized sizes of the messages the measured calls exchange (for the echo sizes)."""
    from dspex_notebook import _codec
    from dspex_notebook._proto import snakepit_bridge_pb2 as pb

    sid = "bench-memory"
    sizes = {
        "GetVariableRequest": pb.GetVariableRequest(session_id=sid, variable_identifier="x",
                                                    bypass_cache=True).ByteSize(),
        "GetVariableResponse (float)": pb.GetVariableResponse(variable=variable_message("x", "float", 0.5),
                                                              revision=99).ByteSize(),
    }
    url, data, _ = _codec.encode("float", 0.25)
    req = pb.SetVariableRequest(session_id=sid, variable_identifier="x")
    req.value.type_url, req.value.value = url, data
    sizes["SetVariableRequest (float)"] = req.ByteSize()
    sizes["GetVariableResponse (embedding)"] = pb.GetVariableResponse(
        variable=variable_message("e", "embedding", np.zeros(EMB_DIM, np.float32))).ByteSize()
    batch = pb.BatchGetVariablesResponse(revision=99)
    for i in range(EMB_N):
        batch.variables[f"e_{i:04d}"].CopyFrom(variable_message(f"e_{i:04d}", "embedding",
                                                   np.zeros(EMB_DIM, np.float32)))
    sizes["BatchGetVariablesResponse (1000 emb)"] = batch.ByteSize()
    sizes["BatchGetVariablesRequest (1000 names)"] = pb.BatchGetVariablesRequest(
        session_id=sid, variable_identifiers=[f"e_{i:04d}" for i in range(EMB_N)],
        bypass_cache=True).ByteSize()
    return sizes


# ----------------------------------------------------------------------------------------------
# cases


def echo_cases(echo: EchoClient, echo_md: EchoClient | None, sizes: dict[str, int],
               where: str) -> list[Case]:
    """Baselines: tiny echo first (every ratio divides by one of these p50s)."""
    tiny = b"x" * TINY_ECHO
    emb = b"e" * sizes["GetVariableResponse (embedding)"]
    big_reply = sizes["BatchGetVariablesResponse (1000 emb)"]
    big = EchoClient.sized_request(big_reply, sizes["BatchGetVariablesRequest (1000 names)"])
    cases = [Case(f"echo {TINY_ECHO} B", where, lambda i: echo.echo(tiny))]
    if echo_md is not None:
        base = cases[0].key
        cases += [
            Case(f"echo {TINY_ECHO} B + Bridge's metadata & 30 s deadline", where,
                 lambda i: echo_md.echo(tiny), baseline=base),
            Case(f"echo {len(emb)} B (one embedding)", where, lambda i: echo.echo(emb),
                 baseline=base),
            Case(f"echo {len(big) // 1000} KB → {big_reply / 1e6:.1f} MB (like 1000 embeddings)",
                 where, lambda i: echo.sized(big), scale=0.2, baseline=base),
        ]
    return cases


def floor_cases(floor: FloorClient, beside: FloorClient, echo_key: str) -> list[Case]:
    """What the protobuf call costs with none of the spec's work (``_floor.py``): no
    implementation of get/set/get_variables on this machine can be faster."""
    what = "floor process (_floor.py)"
    return [
        Case("floor: get_variable (auth, parse, cached reply)", what,
             lambda i: floor.get(), echo_key),
        Case("floor: set_variable (auth, parse, dict write)", what,
             lambda i: floor.set(float(i)), echo_key),
        Case("floor: get_variables(100 floats) (auth, parse, 100 cached values)", what,
             lambda i: floor.get_many(FLOOR_NAMES), echo_key, 0.5),
        Case("floor: get_variable (auth, parse, cached reply)",
             "floor beside our servicer (one process)", lambda i: beside.get(), echo_key),
    ]


def session_cases(ctx: Any, hit_ctx: Any | None, names: dict[str, Any], backend: str,
                  echo_key: str, echo_emb_key: str | None, echo_big_key: str | None,
                  full: bool, acceptance: bool, write_scale: float) -> list[Case]:
    rng = np.random.default_rng(7)
    vecs = [rng.random(EMB_DIM, dtype=np.float32) for _ in range(8)]
    tag = secrets.token_hex(3)
    counter = itertools.count()  # registrations need fresh names across rounds
    small100 = names["small"][100] if full else []
    target12 = "≤ 1.2× echo" if acceptance else "–"
    check12 = ratio_at_most(1.2) if acceptance else None

    cases = [
        # the floor of any call through our server: authenticated, nothing to do
        Case("ping (no work: our RPC's floor)", backend, lambda i: ctx.ping(), echo_key, 1.0),
        Case("get_variable, uncached", backend,
             lambda i: ctx.get_variable("x", bypass_cache=True),
             echo_key, 1.0, target12, check12),
        Case("set_variable", backend,
             lambda i: ctx.set_variable("x", float(i)),
             echo_key, write_scale, target12 if write_scale == 1.0 else "–",
             check12 if write_scale == 1.0 else None),
    ]
    if not full:
        return cases
    if hit_ctx is not None:
        cases.append(Case("get_variable, cache hit", backend, None, echo_key, 1.0, "< 1 µs",
                          p50_at_most(1e-6), batched=lambda: hit_ctx.get_variable("x")))
    cases += [
        Case("register_variable (new name)", backend,
             lambda i: ctx.register_variable(f"r_{tag}_{next(counter)}", "float", 1.0),
             echo_key, write_scale),
        Case("update_variables(100 floats)", backend,
             lambda i: ctx.update_variables({n: float(i) for n in small100}),
             echo_key, write_scale * 0.5),
        Case("get_variables(100 floats)", backend,
             lambda i: ctx.get_variables(small100), echo_key, 0.5,
             "≤ 1.5× echo" if acceptance else "–", ratio_at_most(1.5) if acceptance else None),
        Case(f"get_variables(1000 floats){_calls(1000)}", backend,
             lambda i: get_many(ctx, names["small"][1000]), echo_key, 0.2,
             "≤ 2.5 ms (notes)" if acceptance else "–", p50_at_most(2.5e-3) if acceptance else None),
    ]
    if names.get("emb"):
        cases += [
            Case("get_variable(768-dim embedding), uncached", backend,
                 lambda i: ctx.get_variable("e", bypass_cache=True), echo_emb_key, 1.0),
            Case("set_variable(768-dim embedding)", backend,
                 lambda i: ctx.set_variable("e", vecs[i % len(vecs)]), echo_emb_key, write_scale),
            Case(f"get_variables(1000 × 768-dim embeddings){_calls(EMB_N)}", backend,
                 lambda i: get_many(ctx, names["emb"]), echo_big_key, 0.2,
                 "≤ 20 ms" if acceptance else "–", p50_at_most(20e-3) if acceptance else None),
        ]
    return cases


# ----------------------------------------------------------------------------------------------
# running


async def run_rounds(cases: list[Case], rounds: int, iterations: int, warmup: int,
                     label: str, chunks: int = 10) -> None:
    """Each round runs every case once. A case with an echo baseline is timed in ``chunks``
    blocks that alternate with equally many baseline calls, so the ratio compares calls made
    within the same second or so (load from other processes on a 2-core box moves the absolute
    numbers by 20-50 % between seconds)."""
    by_key = {c.key: c for c in cases}
    for r in range(rounds):
        t0 = time.perf_counter()
        for case in cases:
            gc.collect()
            base = by_key.get(case.baseline) if case.baseline else None
            if case.batched is not None:
                samples = await time_async_batched(case.batched, max(50, iterations), 100, warmup)
                case.stats.add_round(samples)
                continue
            n = max(20, int(iterations * case.scale))
            w = max(5, int(warmup * case.scale))
            if base is None or base.fn is None:
                case.stats.add_round(await time_async(case.fn, n, w))
                continue
            k = max(1, min(chunks, n // 20))
            per = n // k
            await time_async(base.fn, 0, w)
            await time_async(case.fn, 0, w)
            mine: list[float] = []
            theirs: list[float] = []
            for _ in range(k):
                theirs += await time_async(base.fn, per, 0)
                mine += await time_async(case.fn, per, 0)
            case.stats.add_round(mine)
            case.paired.add_round(theirs)
        print(f"  {label} round {r + 1}/{rounds}: {time.perf_counter() - t0:.1f} s",
              file=sys.stderr, flush=True)


def table(cases: list[Case]) -> str:
    by_key = {c.key: c for c in cases}
    rows = []
    for c in cases:
        base = by_key.get(c.baseline) if c.baseline else None
        if c.baseline is None:
            ratio, ratio_s, base_s = 1.0, "1.00×", "(itself)"
        elif base is None:
            ratio, ratio_s, base_s = math.nan, "–", "–"
        else:
            paired = bool(c.paired.p50s)
            ratio = c.ratio if paired else c.stats.p50 / base.stats.p50
            ratio_s = f"{ratio:.2f}×" if ratio >= 0.01 else f"{ratio:.4f}×"
            base_s = base.op if base.backend == "echo process" else f"{base.op} ({base.backend})"
            if paired:
                base_s += f", paired: {fmt_time(c.paired.p50)}"
        verdict = "–" if c.check is None else ("PASS" if c.check(c.stats.p50, ratio) else "FAIL")
        rows.append([c.op, c.backend, fmt_time(c.stats.p50), fmt_time(c.stats.p99), ratio_s,
                     base_s, c.target, verdict])
    return markdown_table(
        ["operation", "backend", "p50", "p99", "ratio p50 / echo p50", "echo baseline", "target",
         "pass/fail"], rows)


def spread(cases: list[Case]) -> str:
    rows = []
    for c in cases:
        ratios = " ".join(f"{a / b:.2f}" for a, b in zip(c.stats.p50s, c.paired.p50s, strict=False)) or "–"
        rows.append([c.op, c.backend, " ".join(fmt_time(x) for x in c.stats.p50s), ratios,
                     c.stats.samples])
    return markdown_table(["operation", "backend", "per-round p50s", "per-round paired ratios",
                           "samples"], rows)


async def phase_processes(args: argparse.Namespace, tmp: str, sizes: dict[str, int]) -> list[Case]:
    from dspex_notebook._session import SessionContext
    from dspex_notebook._wire.client import insecure_channel

    token = secrets.token_urlsafe(24)
    token_file = os.path.join(tmp, "token")
    with open(token_file, "w") as fh:
        fh.write(token)
    runtime_dir = os.path.join(tmp, "runtime")
    procs: list[ServerProcess] = []
    contexts: list[Any] = []
    echo = echo_md = None
    floors: list[FloorClient] = []
    try:
        procs.append(echo_proc := start_echo_process())
        procs.append(mem_proc := start_dspex(["--memory"], token_file, runtime_dir))
        backends = [("memory", mem_proc)]
        if not args.no_sqlite:
            db = os.path.join(tmp, "store.sqlite3")
            procs.append(sql_proc := start_dspex(["--db", db], token_file, runtime_dir))
            backends.append(("sqlite", sql_proc))
        if not args.no_malloc_row:
            procs.append(tuned := start_dspex(["--memory"], token_file, runtime_dir, MALLOC_TUNED))
            backends.append(("memory, malloc-tuned", tuned))
        print(f"servers: echo pid {echo_proc.pid} {echo_proc.address}; "
              + "; ".join(f"dspex {b} pid {p.pid} {p.address}" for b, p in backends),
              file=sys.stderr, flush=True)

        echo = EchoClient(echo_proc.address)
        echo_md = EchoClient(echo_proc.address,
                             metadata=[("dspex-codec", "raw"), ("authorization", f"Bearer {token}")],
                             timeout=30.0)
        where = "echo process"
        cases = echo_cases(echo, echo_md, sizes, where)
        echo_key = cases[0].key
        echo_emb_key, echo_big_key = cases[2].key, cases[3].key
        if not args.no_floor:
            procs.append(floor_proc := start_floor_process(token_file))
            procs.append(beside_proc := start_floor_process(token_file, with_servicer=True))
            floors += [FloorClient(floor_proc.address, token),
                       FloorClient(beside_proc.address, token)]
            cases += floor_cases(*floors, echo_key)

        for name, proc in backends:
            sid = f"bench-{name.split(',')[0]}"
            ctx = SessionContext(sid, insecure_channel(proc.address), token=token, cache_ttl=0)
            ctx._owns_channel = True
            await ctx.initialize()
            contexts.append(ctx)
            t0 = time.perf_counter()
            names = await populate(ctx, emb=name.startswith("memory"))
            print(f"  populated {name} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            hit_ctx = None
            if name == "memory":
                # no watch stream: a coherent cache would receive every write measured below as
                # an event in this very process (benchmarks/watch.py measures coherent hits)
                hit_ctx = SessionContext(sid, insecure_channel(proc.address), token=token,
                                         cache_ttl=3600.0, coherent_cache=False)
                hit_ctx._owns_channel = True
                await hit_ctx.initialize()
                contexts.append(hit_ctx)
                await hit_ctx.get_variable("x")  # warm the cache
            if name == "memory, malloc-tuned":  # only the large batch reads, as a diagnostic
                cases += [
                    Case(f"get_variables(1000 floats){_calls(1000)}", f"{name} (process)",
                         lambda i, c=ctx, n=names: get_many(c, n["small"][1000]), echo_key, 0.2),
                    Case(f"get_variables(1000 × 768-dim embeddings){_calls(EMB_N)}",
                         f"{name} (process)",
                         lambda i, c=ctx, n=names: get_many(c, n["emb"]), echo_big_key, 0.2),
                ]
                continue
            cases += session_cases(
                ctx, hit_ctx, names, f"{name} (process)", echo_key, echo_emb_key, echo_big_key,
                full=True, acceptance=(name == "memory"),
                write_scale=1.0 if name == "memory" else args.sqlite_write_scale,
            )
        await run_rounds(cases, args.rounds, args.iterations, args.warmup, "processes")
        return cases
    finally:
        for ctx in contexts:
            await ctx.close()
        for client in (echo, echo_md, *floors):
            if client is not None:
                await client.close()
        for proc in procs:
            proc.stop()


async def phase_embedded(args: argparse.Namespace, sizes: dict[str, int]) -> list[Case]:
    from dspex_notebook.testing import running_server, session_for

    with echo_in_thread() as echo_addr, running_server() as srv:
        echo = EchoClient(echo_addr)
        try:
            async with session_for(srv, "bench-embedded", cache_ttl=0) as ctx:
                await ctx.register_variable("x", "float", 0.5)
                where = "echo in-thread"
                cases = echo_cases(echo, None, sizes, where)
                cases += session_cases(ctx, None, {}, "in-process (running_server)",
                                       cases[0].key, None, None, full=False, acceptance=False,
                                       write_scale=1.0)
                await run_rounds(cases, args.rounds, args.iterations, args.warmup, "embedded")
                return cases
        finally:
            await echo.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds × 200 iterations (smoke)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 5; quick 3)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="timed calls per tiny case per round (default 1000; quick 200); "
                             "batch and durable-write cases run a fraction of this")
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls per case per round")
    parser.add_argument("--sqlite-write-scale", type=float, default=0.5,
                        help="iterations multiplier for SQLite writes (each is an fsync)")
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite server")
    parser.add_argument("--no-embedded", action="store_true", help="skip the in-process phase")
    parser.add_argument("--no-floor", action="store_true",
                        help="skip the floor rows (_floor.py: the protobuf calls without the "
                             "spec's work)")
    parser.add_argument("--no-malloc-row", action="store_true",
                        help="skip the diagnostic server started with glibc malloc thresholds raised")
    parser.add_argument("--tmpdir", default=None,
                        help="where the SQLite store goes (default: system temp dir; the "
                             "filesystem decides what an fsync costs)")
    parser.add_argument("--output", default=None, help="also write the markdown report here")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (3 if args.quick else 5)
    args.iterations = args.iterations or (200 if args.quick else 1000)
    args.warmup = args.warmup if args.warmup is not None else (20 if args.quick else 50)
    if not (1 <= args.rounds <= 50 and 10 <= args.iterations <= 100_000):
        parser.error("--rounds must be 1..50 and --iterations 10..100000")

    started = time.perf_counter()
    env = environment()
    sizes = wire_sizes()
    tmp = tempfile.mkdtemp(prefix="dspex-bench-", dir=args.tmpdir)
    try:
        cases = asyncio.run(phase_processes(args, tmp, sizes))
        if not args.no_embedded:
            cases += asyncio.run(phase_embedded(args, sizes))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.perf_counter() - started

    cmd = "python benchmarks/foundation.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out = [
        "## Foundation benchmark",
        "",
        f"Command: `{cmd.strip()}` — {args.rounds} rounds × {args.iterations} iterations "
        f"(scaled per case), warm-up {args.warmup}; wall time {elapsed:.0f} s.",
        "p50/p99: per-round nearest-rank percentiles, median across rounds. Ratio: this p50 / "
        "the echo baseline's p50 measured in the same rounds.",
        "",
        table(cases),
        "",
        "Environment:",
        "",
        *[f"- {k}: {v}" for k, v in env.items()],
        f"- load average (end): {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"- SQLite store dir: {os.path.dirname(tmp) or tmp}",
        "",
        "Wire sizes of the measured messages (bytes): "
        + ", ".join(f"{k} {v}" for k, v in sizes.items()) + ".",
        "",
        "<details><summary>per-round p50s</summary>",
        "",
        spread(cases),
        "",
        "</details>",
    ]
    report = "\n".join(out)
    emit(report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
