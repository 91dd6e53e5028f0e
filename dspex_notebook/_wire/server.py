"""Create and bind the grpc.aio server around a :class:`Store` (must run on the serving loop)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc

from .._proto import snakepit_bridge_pb2 as pb
from ..server.limits import Limits
from ..server.store import Store
from .admission import request_bound
from .servicer import BridgeServicer, lenient_deserializer


async def start_grpc_server(
    store: Store, host: str, port: int, tokens: Mapping[str, str], version: str,
    limits: Limits | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Start serving ``store`` on ``host:port`` (0 = any free port); return ``(server, port)``."""
    limits = limits or store.limits
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limits.max_message_bytes),
            ("grpc.max_send_message_length", limits.max_message_bytes),
            ("grpc.so_reuseport", 0),  # a second server must not silently share the port
        ]
    )
    add_servicer(BridgeServicer(store, tokens, version), server, limits)
    bound = server.add_insecure_port(f"{_bracket(host)}:{port}")
    if bound == 0:
        raise OSError(f"could not bind {host}:{port}")
    await server.start()
    return server, bound


def _serializer(message: Any) -> bytes:
    """Handlers may return a message or its already-serialized bytes (the batch read path)."""
    return message if message.__class__ is bytes else message.SerializeToString()


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def add_servicer(servicer: BridgeServicer, server: grpc.aio.Server, limits: Limits) -> None:
    """Like the generated ``add_BridgeServiceServicer_to_server`` (less its registered-method
    table, see below), but with request
    deserializers that hand undecodable bodies to the handler (INVALID_ARGUMENT, not UNKNOWN)
    and refuse bodies over what ``limits`` admit for their type unparsed."""
    service = pb.DESCRIPTOR.services_by_name["BridgeService"]
    handlers = {}
    for method in service.methods:
        if method.client_streaming:  # none today; fail loudly rather than register it wrong
            raise NotImplementedError(f"client-streaming {method.name} needs a handler type")
        make = (grpc.unary_stream_rpc_method_handler if method.server_streaming
                else grpc.unary_unary_rpc_method_handler)
        handlers[method.name] = make(
            getattr(servicer, method.name),
            request_deserializer=lenient_deserializer(getattr(pb, method.input_type.name),
                                                      request_bound(method.input_type, limits)),
            response_serializer=_serializer,
        )
    # Generic handlers only. grpc also offers ``add_registered_method_handlers`` (the core
    # matches the method before Python sees the call); with grpcio 1.85's aio server it made
    # *every* call on the server slower: get 1.27× → 1.20×, set 1.38× → 1.31×,
    # get_variables(100) 1.80× → 1.65× of a bare echo without it (9 alternating rounds, two
    # servers in one run; docs/performance.md, "Foundation").
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name,
                                                                          handlers),))
