"""Hostile-input benchmark: how long the worst *accepted* (and refused) request of each kind
holds the server's event loop, measured on a ``dspex-notebook serve --memory`` subprocess.

For every case the script sends the request (prepared as raw bytes beforehand, so the client's
own work does not count) while a watchdog on a second channel pings the server back to back.
It reports, per case (median of ``--repeat`` runs):

* **loop CPU**: CPU time of the server's main thread (the asyncio loop that runs every handler,
  from ``/proc/<pid>/task/<pid>/schedstat``) during the call;
* **max Ping**: the slowest watchdog Ping that overlapped the call (what any other caller waits);
* **wall**: the call's own round trip, and its status code.

The inputs are sized from the server's default :class:`~dspex_notebook.server.Limits` (largest
value, largest batch, longest pattern, fullest session), so the table follows the limits.

    python benchmarks/hostile.py                 # ≈ 1-2 min on 2 cores
    python benchmarks/hostile.py --repeat 5 --output /tmp/hostile.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import grpc  # noqa: E402
import numpy as np  # noqa: E402
from _common import (  # noqa: E402
    CHANNEL_OPTIONS,
    ServerProcess,
    emit,
    environment,
    markdown_table,
)

from dspex_notebook._proto import snakepit_bridge_pb2 as pb  # noqa: E402
from dspex_notebook.server import Limits  # noqa: E402

SERVICE = "/snakepit.bridge.BridgeService/"
URL = "type.googleapis.com/snakepit."
SESSION = "hostile"


@dataclass
class Case:
    label: str
    method: str
    body: bytes
    samples: list[tuple[float, float, float, str]] = field(default_factory=list)  # cpu, ping, wall


def _loop_cpu_ns(pid: int) -> int:
    with open(f"/proc/{pid}/task/{pid}/schedstat") as fh:
        return int(fh.read().split()[0])


def _any(msg: Any, type_name: str, data: bytes) -> None:
    msg.type_url, msg.value = URL + type_name, data


def _name(i: int, width: int) -> str:
    stem = f"v{i:06d}_"
    return stem + "x" * (width - len(stem))


def build_cases(limits: Limits) -> tuple[list[Case], list[Case]]:
    """``(setup, cases)``: setup fills the session to its limit; cases are what is measured."""
    json_limit = getattr(limits, "max_json_value_bytes", limits.max_value_bytes)
    batch = limits.max_batch
    per_session = limits.max_variables_per_session
    width = limits.max_name_length
    setup: list[Case] = [Case("init", "InitializeSession",
                              pb.InitializeSessionRequest(session_id=SESSION).SerializeToString())]
    for start in range(0, per_session - 8, batch):
        req = pb.BatchRegisterVariablesRequest(session_id=SESSION)
        for i in range(start, min(start + batch, per_session - 8)):
            v = req.variables.add(name=_name(i, width), type="float")
            _any(v.initial_value, "float", b"0.5")
        setup.append(Case(f"fill {start}", "RegisterVariables", req.SerializeToString()))
    for name, type_name, data, cons in (
        ("s", "string", b'"a"', ""), ("l", "list", b"[]", ""), ("d", "dict", b"{}", ""),
        ("e", "embedding", b"[0.5]", ""), ("t", "tensor", b'{"shape":[1],"data":[0]}', ""),
        ("p", "string", b'"' + b"a" * 902 + b'x"', json.dumps({"pattern": "(a|b)*a[ab]{900}x"})),
        ("q", "string", b'"ab"', json.dumps({"pattern": "^[a-z]+$"})),
    ):
        req = pb.RegisterVariableRequest(session_id=SESSION, name=name, type=type_name,
                                         constraints_json=cons)
        _any(req.initial_value, type_name, data)
        setup.append(Case(f"register {name}", "RegisterVariable", req.SerializeToString()))

    cases: list[Case] = []

    def set_value(label: str, ident: str, type_name: str, data: bytes, binary: bytes = b"") -> None:
        req = pb.SetVariableRequest(session_id=SESSION, variable_identifier=ident,
                                    binary_value=binary)
        _any(req.value, type_name, data)
        cases.append(Case(label, "SetVariable", req.SerializeToString()))

    room = json_limit - 64
    set_value("set string (JSON limit)", "s", "string", json.dumps("x" * (room - 2)).encode())
    set_value("set list of ints (JSON limit)", "l", "list", b"[" + b"0," * (room // 2 - 1) + b"0]")
    n_keys = room // 12
    set_value("set dict (JSON limit)", "d", "dict",
              b"{" + b",".join(b'"k%06d":0' % i for i in range(n_keys)) + b"}")
    set_value("set embedding as JSON list (JSON limit)", "e", "embedding",
              b"[" + b"0.5," * (room // 4 - 1) + b"0.5]")
    n = (limits.max_value_bytes - 256) // 4
    set_value("set raw embedding (value limit)", "e", "embedding.binary",
              json.dumps({"shape": [n], "dtype": "float32", "binary_format": "raw"}).encode(),
              np.zeros(n, dtype=np.float32).tobytes())
    side = int((n) ** 0.5)
    set_value("set raw tensor (value limit)", "t", "tensor.binary",
              json.dumps({"shape": [side, side], "dtype": "float32", "binary_format": "raw"}).encode(),
              np.zeros((side, side), dtype=np.float32).tobytes())
    budget = getattr(sys.modules.get("dspex_notebook._patterns"), "MAX_MATCH_WORK", 0)
    for ident, label in (("p", "pathological pattern"), ("q", "simple pattern")):
        set_value(f"set string, {label} (longest accepted)", ident, "string",
                  json.dumps("ab" * (max(budget, 2_000_000) // 4000)).encode())

    req = pb.BatchSetVariablesRequest(session_id=SESSION, atomic=True)
    for i in range(min(batch, per_session - 8)):
        _any(req.updates[_name(i, width)], "float", b"0.25")
    cases.append(Case(f"set {batch} floats (batch limit)", "SetVariables", req.SerializeToString()))
    req = pb.BatchRegisterVariablesRequest(session_id=SESSION)
    for i in range(batch):
        v = req.variables.add(name=_name(i, width), type="float", replace=True)
        _any(v.initial_value, "float", b"0.75")
    cases.append(Case(f"re-register {batch} floats (batch limit)", "RegisterVariables",
                      req.SerializeToString()))
    ids = [_name(i, width) for i in range(min(batch, per_session - 8))]
    cases.append(Case(f"get {batch} variables (batch limit)", "GetVariables",
                      pb.BatchGetVariablesRequest(session_id=SESSION,
                                                  variable_identifiers=ids).SerializeToString()))
    missing = ["m" * width + str(i) for i in range(batch)]
    cases.append(Case(f"get {batch} missing names", "GetVariables",
                      pb.BatchGetVariablesRequest(session_id=SESSION,
                                                  variable_identifiers=missing).SerializeToString()))
    plen = getattr(sys.modules.get("dspex_notebook._patterns"), "MAX_PATTERN_LENGTH", 1024)
    for label, pattern in (
        (f"list '*' ({per_session} variables)", "*"),
        ("list 'v00*'", "v00*"),
        ("list '*x?x?x?...' (longest glob)", ("*x?" * plen)[:plen]),
        ("list '*a' + '?' * n (longest glob)", ("*a" + "?" * plen)[:plen]),
    ):
        cases.append(Case(label, "ListVariables", pb.ListVariablesRequest(
            session_id=SESSION, pattern=pattern).SerializeToString()))
    # refused before any work: oversize message, garbage
    cases.append(Case("refused: random 8 MiB body", "SetVariable", os.urandom(8 << 20)))
    cases.append(Case("refused: 1 M '*a' glob", "ListVariables", pb.ListVariablesRequest(
        session_id=SESSION, pattern="*a" * 1_000_000).SerializeToString()))
    req = pb.BatchGetVariablesRequest(session_id=SESSION,
                                      variable_identifiers=[f"n{i}" for i in range(1_000_000)])
    cases.append(Case("refused: get 1 M identifiers", "GetVariables", req.SerializeToString()))
    return setup, cases


async def _watchdog(channel: grpc.aio.Channel, md: Any, stop: asyncio.Event,
                    pings: list[tuple[float, float]]) -> None:
    ping = channel.unary_unary(SERVICE + "Ping")
    body = pb.PingRequest(message="wd").SerializeToString()
    while not stop.is_set():
        start = time.perf_counter()
        await ping(body, metadata=md, timeout=60)
        pings.append((start, time.perf_counter()))
        await asyncio.sleep(0.001)


async def run(args: argparse.Namespace) -> str:
    limits = Limits()
    setup, cases = build_cases(limits)
    cases = [c for c in cases if not any(s in c.label for s in args.skip)]
    with tempfile.TemporaryDirectory() as tmp:
        token = secrets.token_urlsafe(16)
        token_file = os.path.join(tmp, "token")
        with open(token_file, "w") as fh:
            fh.write(token)
        env = dict(os.environ, DSPEX_RUNTIME_DIR=os.path.join(tmp, "rt"))
        proc = ServerProcess(
            [sys.executable, "-m", "dspex_notebook", "serve", "--port", "0", "--memory",
             "--token-file", token_file],
            lambda line: line.rsplit(" on ", 1)[1].strip() if " serving " in line else None, env=env)
        md = (("authorization", f"Bearer {token}"), ("dspex-codec", "raw"))
        work = grpc.aio.insecure_channel(proc.address, options=CHANNEL_OPTIONS)
        dog = grpc.aio.insecure_channel(proc.address, options=CHANNEL_OPTIONS)
        try:
            for case in setup:
                await work.unary_unary(SERVICE + case.method)(case.body, metadata=md, timeout=300)
            stop = asyncio.Event()
            pings: list[tuple[float, float]] = []
            dog_task = asyncio.create_task(_watchdog(dog, md, stop, pings))
            await asyncio.sleep(0.2)
            for _ in range(args.repeat):
                for case in cases:
                    await asyncio.sleep(0.05)
                    cpu0, t0 = _loop_cpu_ns(proc.pid), time.perf_counter()
                    try:
                        await work.unary_unary(SERVICE + case.method)(case.body, metadata=md,
                                                                      timeout=120)
                        code = "OK"
                    except grpc.aio.AioRpcError as err:
                        code = err.code().name
                    t1 = time.perf_counter()
                    cpu = (_loop_cpu_ns(proc.pid) - cpu0) / 1e9
                    await asyncio.sleep(0.05)  # let the overlapping ping finish
                    worst = max((b - a for a, b in pings if b >= t0 and a <= t1), default=0.0)
                    case.samples.append((cpu, worst, t1 - t0, code))
            stop.set()
            await dog_task
            lat = sorted(b - a for a, b in pings)
        finally:
            await work.close()
            await dog.close()
            proc.stop()
    rows = []
    for case in cases:
        cpu = statistics.median(s[0] for s in case.samples)
        ping = statistics.median(s[1] for s in case.samples)
        wall = statistics.median(s[2] for s in case.samples)
        rows.append([case.label, f"{len(case.body) / 1024:,.0f} KiB", f"{cpu * 1e3:.1f} ms",
                     f"{ping * 1e3:.1f} ms", f"{wall * 1e3:.1f} ms", case.samples[-1][3]])
    p99 = lat[int(0.99 * (len(lat) - 1))] if lat else float("nan")
    env = environment()
    out = [f"{env['date']}, {env['cpu']}, {env['python']}, grpcio {env['grpcio']}, "
           f"{env.get('package source', '')}; limits: {limits}", "",
           markdown_table(["request", "size", "loop CPU", "max Ping", "wall", "status"], rows), "",
           f"watchdog: {len(lat)} pings, p50 {lat[len(lat) // 2] * 1e3:.2f} ms, "
           f"p99 {p99 * 1e3:.2f} ms, max {lat[-1] * 1e3:.1f} ms"]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of every case (median kept)")
    parser.add_argument("--output", help="also write the markdown report here")
    parser.add_argument("--skip", action="append", default=[],
                        help="skip the cases whose label contains this text (repeatable)")
    args = parser.parse_args(argv)
    report = asyncio.run(run(args))
    emit(report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
