"""CPU per call of our servicer's hot handlers, in process, with no network.

Where ``foundation.py`` says how far a call is from a bare echo, this says how much of that is
our server's Python: each handler is awaited in a loop exactly as grpc.aio would call it (the
request decoded by our ``lenient_deserializer``, the reply passed through the server's
``_serializer``), on a memory store holding ``x`` and 100 floats. The context object answers
only what the handlers ask of it (the caller's metadata); it is a profiling harness, not a test.

The baseline, measured in the same rounds, is ``_floor.py``'s idea of a handler: an ``await`` of a
coroutine that runs the same metadata loop and returns cached bytes.

    python benchmarks/handlers.py                   # 7 rounds × 3000 calls per handler
    python benchmarks/handlers.py --rounds 3 --calls 500 --output /tmp/handlers.md
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _common import emit, environment, markdown_table  # noqa: E402

from dspex_notebook import _codec  # noqa: E402
from dspex_notebook._proto import snakepit_bridge_pb2 as pb  # noqa: E402
from dspex_notebook._wire.server import _serializer  # noqa: E402
from dspex_notebook._wire.servicer import BridgeServicer, lenient_deserializer  # noqa: E402
from dspex_notebook.server.backends.memory import MemoryBackend  # noqa: E402
from dspex_notebook.server.store import Store  # noqa: E402

TOKEN = "t" * 32
SESSION = "bench"


class CallContext:
    """What a unary handler reads from grpc's ServicerContext: the caller's metadata (and, on
    an error, the abort calls, which raise so that a failing case cannot pass silently)."""

    metadata = (("dspex-codec", "raw"), ("authorization", f"Bearer {TOKEN}"),
                ("user-agent", "grpc-python-asyncio"))

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    def set_trailing_metadata(self, metadata: Any) -> None:
        pass

    async def abort(self, code: Any, details: str) -> None:
        raise RuntimeError(f"handler aborted: {code} {details}")


async def prepared_servicer() -> tuple[BridgeServicer, CallContext]:
    servicer = BridgeServicer(Store(MemoryBackend()), {TOKEN: "bench"}, "bench")
    ctx = CallContext()
    await servicer.InitializeSession(pb.InitializeSessionRequest(session_id=SESSION), ctx)
    url, data, _ = _codec.encode("float", 0.5)
    reg = pb.RegisterVariableRequest(session_id=SESSION, name="x", type="float",
                                     constraints_json='{"min": 0, "max": 1000000000}')
    reg.initial_value.type_url, reg.initial_value.value = url, data
    await servicer.RegisterVariable(reg, ctx)
    batch = pb.BatchRegisterVariablesRequest(session_id=SESSION)
    for i in range(100):
        item = batch.variables.add(session_id=SESSION, name=f"s_{i:04d}", type="float",
                                   constraints_json="{}")
        item.initial_value.type_url, item.initial_value.value = url, repr(float(i)).encode()
    await servicer.RegisterVariables(batch, ctx)
    return servicer, ctx


def requests() -> dict[str, tuple[str, str, bytes]]:
    """case -> (handler, request type, serialized request)."""
    url = _codec.encode("float", 0.0)[0]
    set_req = pb.SetVariableRequest(session_id=SESSION, variable_identifier="x")
    set_req.value.type_url, set_req.value.value = url, b"0.25"
    names = [f"s_{i:04d}" for i in range(100)]
    return {
        "Ping": ("Ping", "PingRequest", pb.PingRequest().SerializeToString()),
        "GetVariable": ("GetVariable", "GetVariableRequest", pb.GetVariableRequest(
            session_id=SESSION, variable_identifier="x", bypass_cache=True).SerializeToString()),
        "SetVariable (float)": ("SetVariable", "SetVariableRequest",
                                set_req.SerializeToString()),
        "GetVariables (100 floats, values_only)": ("GetVariables", "BatchGetVariablesRequest",
                                                   pb.BatchGetVariablesRequest(
                                                       session_id=SESSION,
                                                       variable_identifiers=names,
                                                       values_only=True,
                                                       bypass_cache=True).SerializeToString()),
    }


async def per_call(fn: Callable[[], Awaitable[Any]], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        await fn()
    return (time.perf_counter() - started) / calls


async def run(rounds: int, calls: int) -> list[list[Any]]:
    servicer, ctx = await prepared_servicer()
    reply = b"\x0a\x00"

    async def floor(request: Any, context: CallContext) -> bytes:
        for key, value in context.invocation_metadata():
            if key == "authorization" and value != f"Bearer {TOKEN}":
                raise PermissionError("wrong token")
        return reply

    cases: dict[str, Callable[[], Awaitable[Any]]] = {
        "floor (await, metadata loop, cached bytes)": lambda: floor(None, ctx)}
    for label, (method, type_name, body) in requests().items():
        handler = getattr(servicer, method)
        decode = lenient_deserializer(getattr(pb, type_name))

        async def call(handler: Any = handler, decode: Any = decode, body: bytes = body) -> bytes:
            return _serializer(await handler(decode(body), ctx))

        cases[label] = call
    for fn in cases.values():  # warm caches (encoder, admission plans)
        await per_call(fn, 200)
    samples: dict[str, list[float]] = {label: [] for label in cases}
    for r in range(rounds):
        for label, fn in cases.items():
            samples[label].append(await per_call(fn, calls))
        print(f"  round {r + 1}/{rounds}", file=sys.stderr, flush=True)
    floor_us = statistics.median(samples[next(iter(cases))])
    rows = []
    for label, values in samples.items():
        med = statistics.median(values)
        rows.append([label, f"{med * 1e6:.2f} µs", f"{min(values) * 1e6:.2f}–{max(values) * 1e6:.2f} µs",
                     f"{med / floor_us:.1f}×"])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=3000, help="calls per handler per round")
    parser.add_argument("--output", default=None, help="also write the markdown report here")
    args = parser.parse_args(argv)
    if not (1 <= args.rounds <= 50 and 10 <= args.calls <= 100_000):
        parser.error("--rounds must be 1..50 and --calls 10..100000")
    rows = asyncio.run(run(args.rounds, args.calls))
    env = environment()
    report = "\n".join([
        "## Handler CPU per call (in process, no network)",
        "",
        f"{args.rounds} rounds × {args.calls} calls per handler; median of the rounds' means.",
        "",
        markdown_table(["handler", "per call", "spread (rounds)", "vs floor"], rows),
        "",
        *[f"- {k}: {v}" for k, v in env.items()],
    ])
    emit(report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
