"""The floor of a protobuf RPC: what a get, a set and a 100-variable read cost with *none* of
the variables semantics, so that the foundation benchmark can say how much of our ratio to the
bare echo is the protobuf call itself and how much is our work.

A floor handler authenticates the caller (the same metadata loop and bearer compare our
servicer does), lets grpc parse the request with the generated message class, and answers from
a dict: a cached, pre-serialized ``GetVariableResponse``; a float parsed from the request and
stored with a version and revision bump; the packed JSON values of 100 floats (the
``values_only`` reply our ``get_variables`` uses). No admission limits, constraints, history,
statistics, watch events, access rules or error mapping: a real server must do all of those on
top, so no implementation of the spec can be faster than this on the same machine.

The client side is equally bare: ``channel.unary_unary`` with the generated serializers, the
Bridge's metadata (codec + bearer token) and 30 s deadline, and the minimum decoding of the
reply (the float; the JSON array zipped with the names).

Run the floor server on its own (what ``foundation.py`` does, as a subprocess)::

    python benchmarks/_floor.py serve [--with-servicer]

It also answers ``/bench.Echo/Echo``. ``--with-servicer`` puts our ``BridgeServicer`` (memory
store) on the same grpc server, so the floor handler can be measured in a process that holds
what a ``dspex-notebook serve`` process holds. It prints ``PORT <n>`` once bound and serves
until SIGTERM or until stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import grpc  # noqa: E402
from _common import ServerProcess, _start_echo, serve_until_stopped  # noqa: E402

from dspex_notebook import _codec  # noqa: E402
from dspex_notebook._proto import snakepit_bridge_pb2 as pb  # noqa: E402

SERVICE = "bench.Floor"
FLOAT_URL = _codec.encode("float", 0.0)[0]
#: the variables of the 100-name read
NAMES = [f"s_{i:04d}" for i in range(100)]


def variable_message(name: str, type_name: str, value: Any) -> Any:
    """A ``Variable`` message as our server sends it (what the floor answers with, and what
    ``foundation.py`` sizes its echo payloads by)."""
    url, data, binary = _codec.encode(type_name, value)
    var = pb.Variable(id=f"var_{name}_12", name=name, type=type_name, constraints_json="{}",
                      version=3, mod_revision=99, create_revision=12, binary_value=binary,
                      optimization_status=pb.OptimizationStatus(optimizing=False))
    var.value.type_url, var.value.value = url, data
    var.last_updated_at.GetCurrentTime()
    return var


def floor_handlers(token: str) -> dict[str, Any]:
    """The three floor methods (see the module docstring)."""
    expected = f"Bearer {token}"
    state = {"x": 0.5, "version": 3, "revision": 99}
    get_reply = pb.GetVariableResponse(variable=variable_message("x", "float", 0.5),
                                       revision=99).SerializeToString()
    packed = {name: b'["float",' + repr(float(i)).encode() + b"]" for i, name in enumerate(NAMES)}

    def caller(context: Any) -> bool:
        ok = raw = False
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                ok = value == expected
            elif key == "dspex-codec":
                raw = value == "raw"
        if not ok:
            raise PermissionError("wrong token")
        return raw

    async def get(request: Any, context: Any) -> bytes:
        caller(context)
        return get_reply

    async def set_(request: Any, context: Any) -> Any:
        caller(context)
        state["x"] = float(request.value.value)
        state["version"] += 1
        state["revision"] += 1
        return pb.SetVariableResponse(success=True, new_version=state["version"],
                                      revision=state["revision"])

    async def get_many(request: Any, context: Any) -> Any:
        caller(context)
        body = b"[" + b",".join([packed[n] for n in request.variable_identifiers]) + b"]"
        return pb.BatchGetVariablesResponse(revision=state["revision"], packed_values=body)

    def as_bytes(reply: bytes) -> bytes:
        return reply

    return {
        "Get": grpc.unary_unary_rpc_method_handler(get, pb.GetVariableRequest.FromString,
                                                   as_bytes),
        "Set": grpc.unary_unary_rpc_method_handler(set_, pb.SetVariableRequest.FromString,
                                                   pb.SetVariableResponse.SerializeToString),
        "GetMany": grpc.unary_unary_rpc_method_handler(
            get_many, pb.BatchGetVariablesRequest.FromString,
            pb.BatchGetVariablesResponse.SerializeToString),
    }


class FloorClient:
    """The bare client side of the three floor calls (see the module docstring)."""

    def __init__(self, address: str, token: str) -> None:
        self.channel = grpc.aio.insecure_channel(address)
        self._md = (("dspex-codec", "raw"), ("authorization", f"Bearer {token}"))
        unary = self.channel.unary_unary
        self._get = unary(f"/{SERVICE}/Get", pb.GetVariableRequest.SerializeToString,
                          pb.GetVariableResponse.FromString)
        self._set = unary(f"/{SERVICE}/Set", pb.SetVariableRequest.SerializeToString,
                          pb.SetVariableResponse.FromString)
        self._get_many = unary(f"/{SERVICE}/GetMany", pb.BatchGetVariablesRequest.SerializeToString,
                               pb.BatchGetVariablesResponse.FromString)

    async def get(self) -> float:
        request = pb.GetVariableRequest(session_id="bench", variable_identifier="x",
                                        bypass_cache=True)
        reply = await self._get(request, metadata=self._md, timeout=30.0)
        return float(reply.variable.value.value)

    async def set(self, value: float) -> int:
        request = pb.SetVariableRequest(session_id="bench", variable_identifier="x")
        request.value.type_url, request.value.value = FLOAT_URL, repr(value).encode()
        return (await self._set(request, metadata=self._md, timeout=30.0)).new_version

    async def get_many(self, names: list[str]) -> dict[str, Any]:
        request = pb.BatchGetVariablesRequest(session_id="bench", variable_identifiers=names,
                                              values_only=True, bypass_cache=True)
        reply = await self._get_many(request, metadata=self._md, timeout=30.0)
        return {n: element[1] for n, element in zip(names, json.loads(reply.packed_values),
                                                     strict=True)}

    async def close(self) -> None:
        await self.channel.close()


def start_floor_process(token_file: str, with_servicer: bool = False) -> ServerProcess:
    """The floor server in its own process (``with_servicer``: beside our servicer)."""
    argv = [sys.executable, os.path.abspath(__file__), "serve", "--token-file", token_file]
    if with_servicer:
        argv.append("--with-servicer")

    def parse(line: str) -> str | None:
        return f"127.0.0.1:{line.split()[1]}" if line.startswith("PORT ") else None

    return ServerProcess(argv, parse)


async def _serve(token: str, with_servicer: bool) -> None:
    server, port = await _start_echo("127.0.0.1", 0, start=False)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        SERVICE, floor_handlers(token)),))
    if with_servicer:
        from dspex_notebook._wire.server import add_servicer
        from dspex_notebook._wire.servicer import BridgeServicer
        from dspex_notebook.server.backends.memory import MemoryBackend
        from dspex_notebook.server.store import Store

        store = Store(MemoryBackend())
        add_servicer(BridgeServicer(store, {token: "bench"}, "bench"), server, store.limits)
    await server.start()
    print(f"PORT {port}", flush=True)
    await serve_until_stopped(server)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="the floor server (see the module docstring)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("serve")
    p.add_argument("--token-file", required=True)
    p.add_argument("--with-servicer", action="store_true")
    args = parser.parse_args()
    with open(args.token_file) as fh:
        asyncio.run(_serve(fh.read().strip(), args.with_servicer))
