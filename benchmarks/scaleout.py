"""Scale-out benchmark: 1, 2 and 3 ``serve --backend etcd`` servers over one etcd, in one run.

Everything runs on this machine, measured in the same run:

* one real etcd (``dspex_notebook/server/etcd_local.py``; data on disk in a temp dir, so etcd
  fsyncs as in production; ``--tmpfs`` puts it on /dev/shm instead);
* **the ceiling**: etcd itself, driven by the same load processes with the transaction a
  ``set`` commits (two puts and a compare), straight over etcd's gRPC API;
* for k = 1, 2, 3: k server processes over one store (a fresh etcd key prefix); load
  processes (``load`` sub-command, each ``--concurrency`` tasks, one variable per task so the
  writes do not contend) spread round-robin over the k servers: aggregate ``set`` and ``get``
  operations per second;
* the same load against one SQLite-backed server (the embedded default);
* one client's sequential set/get latency (p50/p99) on SQLite, on etcd with linearizable reads
  (the default) and with ``--etcd-reads local``;
* **watch fan-out across servers**: W watchers spread over the k servers, a writer on server 0;
  latency from the set call to the last watcher's delivery (p50/p99), k = 1 and k = 3.

Medians over ``--rounds`` rounds, with the spread (min-max of the round values).

    python benchmarks/scaleout.py [--rounds 3] [--seconds 2] [--output docs/perf-scaleout.md]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Stats, emit, environment, fmt_time, markdown_table  # noqa: E402
from foundation import start_dspex  # noqa: E402

TOKEN = "scaleout-benchmark-token"


# ----------------------------------------------------------------------------------------------
# the load process


async def _load(args: argparse.Namespace) -> dict[str, Any]:
    """``--concurrency`` tasks doing ``--op`` for ``--seconds`` against ``--targets``."""
    import dspex_notebook as dn

    targets = args.targets.split(",")
    deadline_start = time.perf_counter() + 0.3  # connect first, then all start together
    latencies: list[float] = []
    counts = [0] * args.concurrency

    if args.op == "etcd":
        import grpc

        from dspex_notebook._proto import etcd_rpc_pb2 as pb
        from dspex_notebook._proto import etcd_rpc_pb2_grpc as pbg

        channel = grpc.aio.insecure_channel(targets[0])
        kv = pbg.KVStub(channel)

        async def worker(i: int) -> None:
            key = f"/bench-raw/{args.tag}/{i}".encode()
            value = b"x" * 200
            rev = 0
            await asyncio.sleep(max(0.0, deadline_start - time.perf_counter()))
            end = time.perf_counter() + args.seconds
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                req = pb.TxnRequest(
                    compare=[pb.Compare(key=key, target=pb.Compare.MOD, mod_revision=rev)],
                    success=[pb.RequestOp(request_put=pb.PutRequest(key=key, value=value)),
                             pb.RequestOp(request_put=pb.PutRequest(key=key + b"/log",
                                                                     value=value))])
                resp = await kv.Txn(req)
                rev = resp.header.revision
                latencies.append(time.perf_counter() - t0)
                counts[i] += 1

        await asyncio.gather(*(worker(i) for i in range(args.concurrency)))
        await channel.close()
        return {"ops": sum(counts), "latencies": sorted(latencies)}

    ctxs = [await dn.SessionContext.connect("bench", address=targets[i % len(targets)],
                                            token=TOKEN, coherent_cache=False, cache_ttl=0)
            for i in range(args.concurrency)]

    async def client(i: int) -> None:
        ctx, name = ctxs[i], f"v_{args.tag}_{i}"
        if args.op == "set":
            await ctx.register_variable(name, "integer", 0, replace=True)
        await asyncio.sleep(max(0.0, deadline_start - time.perf_counter()))
        end = time.perf_counter() + args.seconds
        n = 0
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            if args.op == "set":
                await ctx.set_variable(name, n)
            else:
                await ctx.get_variable(f"v_{args.tag}_{i}" if args.read_own else "shared")
            latencies.append(time.perf_counter() - t0)
            n += 1
        counts[i] = n

    try:
        await asyncio.gather(*(client(i) for i in range(args.concurrency)))
    finally:
        for ctx in ctxs:
            await ctx.close()
    return {"ops": sum(counts), "latencies": sorted(latencies)}


def load_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--op", choices=("set", "get", "etcd"), required=True)
    p.add_argument("--targets", required=True)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--tag", default="0")
    p.add_argument("--read-own", action="store_true")
    args = p.parse_args(argv)
    out = asyncio.run(_load(args))
    lat = out["latencies"]
    print(json.dumps({"ops": out["ops"], "p50": lat[len(lat) // 2] if lat else 0.0,
                      "p99": lat[int(len(lat) * 0.99)] if lat else 0.0}), flush=True)
    return 0


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used so far (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def run_load(op: str, targets: list[str], seconds: float, procs: int, concurrency: int,
             tag: str, watch: dict[str, list[int]] | None = None,
             cpu: dict[str, float] | None = None) -> tuple[float, float]:
    """Aggregate ops/s and the median p50 latency of ``procs`` load processes; with
    ``watch`` ({group: pids}), also each group's CPU seconds per operation into ``cpu``."""
    before = {g: cpu_seconds(p) for g, p in (watch or {}).items()}
    cmds = [[sys.executable, os.path.abspath(__file__), "load", "--op", op,
             "--targets", ",".join(targets[j:] + targets[:j]), "--seconds", str(seconds),
             "--concurrency", str(concurrency), "--tag", f"{tag}{j}", "--read-own"]
            for j in range(procs)]
    running = [subprocess.Popen(c, stdout=subprocess.PIPE, text=True) for c in cmds]
    results = []
    for proc in running:
        out, _ = proc.communicate(timeout=seconds + 120)
        if proc.returncode != 0:
            raise RuntimeError(f"load process failed ({proc.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    ops = sum(r["ops"] for r in results)
    if cpu is not None:
        for g, pids in (watch or {}).items():
            cpu[g] = (cpu_seconds(pids) - before[g]) / max(ops, 1)
    return ops / seconds, statistics.median(r["p50"] for r in results)


# ----------------------------------------------------------------------------------------------
# the main process


def _servers(k: int, etcd: list[str], tmp: str, extra: list[str] | None = None) -> list[Any]:
    prefix = f"/bench-{uuid.uuid4().hex[:8]}/"
    token_file = os.path.join(tmp, "token")
    return [start_dspex(["--backend", "etcd", "--etcd", ",".join(etcd), "--etcd-prefix", prefix,
                         *(extra or [])], token_file, os.path.join(tmp, "rt"))
            for _ in range(k)]


async def _sequential(address: str, n: int) -> tuple[list[float], list[float]]:
    import dspex_notebook as dn

    ctx = await dn.SessionContext.connect("seq", address=address, token=TOKEN,
                                          coherent_cache=False, cache_ttl=0)
    try:
        await ctx.register_variable("s", "integer", 0, replace=True)
        sets, gets = [], []
        for i in range(n):
            t0 = time.perf_counter()
            await ctx.set_variable("s", i)
            t1 = time.perf_counter()
            await ctx.get_variable("s")
            t2 = time.perf_counter()
            sets.append(t1 - t0)
            gets.append(t2 - t1)
        return sets, gets
    finally:
        await ctx.close()


async def _fanout(addresses: list[str], watchers: int, writes: int) -> list[float]:
    """Set on addresses[0] → the last of ``watchers`` (spread over ``addresses``) got it."""
    import dspex_notebook as dn

    writer = await dn.SessionContext.connect("fan", address=addresses[0], token=TOKEN,
                                             coherent_cache=False, cache_ttl=0)
    await writer.register_variable("f", "integer", -1, replace=True)
    ctxs = [await dn.SessionContext.connect("fan", address=addresses[i % len(addresses)],
                                            token=TOKEN, coherent_cache=False, cache_ttl=0)
            for i in range(watchers)]
    got: dict[int, list[float]] = {}
    done: dict[int, asyncio.Event] = {}

    async def watch(ctx: Any, ready: asyncio.Event) -> None:
        async with ctx.watch_variable("f", include_initial=False) as w:
            ready.set()
            async for u in w:
                stamps = got.setdefault(u.value, [])
                stamps.append(time.perf_counter())
                if len(stamps) == watchers:
                    done.setdefault(u.value, asyncio.Event()).set()
                if u.value == writes - 1:
                    return

    readies = [asyncio.Event() for _ in ctxs]
    tasks = [asyncio.create_task(watch(c, r)) for c, r in zip(ctxs, readies, strict=True)]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 30)
    await asyncio.sleep(0.3)
    out = []
    try:
        for i in range(writes):
            ev = done.setdefault(i, asyncio.Event())
            t0 = time.perf_counter()
            await writer.set_variable("f", i)
            await asyncio.wait_for(ev.wait(), 30)
            out.append(max(got[i]) - t0)
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    finally:
        for c in [writer, *ctxs]:
            await c.close()
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["load"]:
        return load_main(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--procs", type=int, default=2, help="load processes")
    p.add_argument("--concurrency", type=int, default=16, help="tasks per load process")
    p.add_argument("--watchers", type=int, default=60)
    p.add_argument("--tmpfs", action="store_true", help="etcd data on /dev/shm (no disk fsync)")
    p.add_argument("--output", default=None)
    args = p.parse_args(argv)

    from dspex_notebook.server.etcd_local import LocalEtcd

    env = environment()
    tmp = tempfile.mkdtemp(prefix="dspex-bench-scaleout-")
    with open(os.path.join(tmp, "token"), "w") as fh:
        fh.write(TOKEN)
    thr: dict[str, list[float]] = {}
    lat50: dict[str, list[float]] = {}
    seq: dict[str, tuple[Stats, Stats]] = {}
    fan: dict[int, Stats] = {}

    def note(key: str, ops: float, p50: float) -> None:
        thr.setdefault(key, []).append(ops)
        lat50.setdefault(key, []).append(p50)

    cpu_per_op: dict[tuple[str, str], list[float]] = {}
    with LocalEtcd(in_memory=args.tmpfs) as etcd:
        etcd_pids = [p.pid for p in etcd.procs if p is not None]
        for rnd in range(args.rounds):
            print(f"round {rnd + 1}/{args.rounds}", file=sys.stderr, flush=True)
            ops, p50 = run_load("etcd", etcd.endpoints, args.seconds, args.procs,
                                args.concurrency, f"r{rnd}")
            note("etcd txn (ceiling)", ops, p50)
            sqlite = start_dspex(["--db", os.path.join(tmp, f"s{rnd}.sqlite3")],
                                 os.path.join(tmp, "token"), os.path.join(tmp, "rt"))
            try:
                for op in ("set", "get"):
                    ops, p50 = run_load(op, [sqlite.address], args.seconds, args.procs,
                                        args.concurrency, f"q{rnd}")
                    note(f"{op}, SQLite, 1 server", ops, p50)
                s, g = asyncio.run(_sequential(sqlite.address, 300))
                seq.setdefault("SQLite", (Stats(), Stats()))
                seq["SQLite"][0].add_round(s)
                seq["SQLite"][1].add_round(g)
            finally:
                sqlite.stop()
            for k in (1, 2, 3):
                servers = _servers(k, etcd.endpoints, tmp)
                try:
                    addrs = [s.address for s in servers]
                    for op in ("set", "get"):
                        used: dict[str, float] = {}
                        ops, p50 = run_load(op, addrs, args.seconds, args.procs,
                                            args.concurrency, f"e{rnd}k{k}",
                                            {"servers": [s.pid for s in servers],
                                             "etcd": etcd_pids}, used)
                        key = f"{op}, etcd, {k} server{'s' if k > 1 else ''}"
                        note(key, ops, p50)
                        for g, v in used.items():
                            cpu_per_op.setdefault((key, g), []).append(v)
                    if k == 1:
                        s, g = asyncio.run(_sequential(addrs[0], 300))
                        seq.setdefault("etcd, linearizable reads", (Stats(), Stats()))
                        seq["etcd, linearizable reads"][0].add_round(s)
                        seq["etcd, linearizable reads"][1].add_round(g)
                    if k in (1, 3):
                        fan.setdefault(k, Stats()).add_round(
                            asyncio.run(_fanout(addrs, args.watchers, 40)))
                finally:
                    for s in servers:
                        s.stop()
            local = _servers(1, etcd.endpoints, tmp, ["--etcd-reads", "local"])
            try:
                s, g = asyncio.run(_sequential(local[0].address, 300))
                seq.setdefault("etcd, local reads", (Stats(), Stats()))
                seq["etcd, local reads"][0].add_round(s)
                seq["etcd, local reads"][1].add_round(g)
            finally:
                local[0].stop()

    def spread(values: list[float], fmt: Any = lambda v: f"{v:,.0f}") -> str:
        return f"{fmt(min(values))}–{fmt(max(values))}"

    ceiling = statistics.median(thr["etcd txn (ceiling)"])
    one = {op: statistics.median(thr[f"{op}, etcd, 1 server"]) for op in ("set", "get")}
    rows = []
    for key, values in thr.items():
        med = statistics.median(values)
        op = key.split(",")[0]
        vs_one = f"{med / one[op]:.2f}×" if "etcd," in key else ""
        srv = cpu_per_op.get((key, "servers"))
        etc = cpu_per_op.get((key, "etcd"))
        rows.append([key, f"{med:,.0f}", spread(values), vs_one, f"{med / ceiling:.2f}",
                     fmt_time(statistics.median(lat50[key])),
                     fmt_time(statistics.median(srv)) if srv else "",
                     fmt_time(statistics.median(etc)) if etc else ""])
    parts = [
        "## Scale-out over etcd (`benchmarks/scaleout.py`)", "",
        f"{args.procs} load processes × {args.concurrency} clients, {args.seconds:g} s per case, "
        f"{args.rounds} rounds; etcd data on {'tmpfs' if args.tmpfs else 'disk'}; "
        "medians, spread = min–max over rounds.", "",
        markdown_table(["case", "ops/s", "spread", "vs 1 etcd server", "of etcd ceiling",
                        "client p50", "servers' CPU/op", "etcd CPU/op"], rows), "",
        f"Cores on this machine: {os.cpu_count()}, shared by etcd, the servers and the load "
        "processes. Servers' CPU/op is the CPU all server processes spent per operation (every "
        "server applies every commit, so it grows with the number of servers for writes).", "",
        "Sequential latency (one client, set then get of one integer):", "",
        markdown_table(["backend", "set p50", "set p99", "get p50", "get p99"], [
            [k, fmt_time(a.p50), fmt_time(a.p99), fmt_time(b.p50), fmt_time(b.p99)]
            for k, (a, b) in seq.items()]), "",
        f"Watch fan-out across servers ({args.watchers} watchers spread over the servers, "
        "writer on the first; set call → last watcher got it):", "",
        markdown_table(["servers", "p50", "p99", "p50 spread"], [
            [k, fmt_time(st.p50), fmt_time(st.p99),
             f"{fmt_time(st.p50_spread[0])}–{fmt_time(st.p50_spread[1])}"]
            for k, st in fan.items()]), "",
        "Environment: " + "; ".join(f"{k}: {v}" for k, v in env.items()),
    ]
    emit("\n".join(parts), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
