"""Create and bind the grpc.aio server around a :class:`Store` (must run on the serving loop)."""

from __future__ import annotations

from collections.abc import Mapping

import grpc

from .._proto import snakepit_bridge_pb2_grpc as pb_grpc
from ..server.limits import Limits
from ..server.store import Store
from .servicer import BridgeServicer


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
    pb_grpc.add_BridgeServiceServicer_to_server(BridgeServicer(store, tokens, version), server)
    bound = server.add_insecure_port(f"{_bracket(host)}:{port}")
    if bound == 0:
        raise OSError(f"could not bind {host}:{port}")
    await server.start()
    return server, bound


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
