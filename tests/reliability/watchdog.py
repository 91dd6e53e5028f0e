"""Ping a server back to back until stdin closes; then print every latency (JSON, seconds).

Run as its own process by ``hostile_cases.Watchdog`` so that the attacking client's own work
(building and sending 17 MiB bodies) cannot delay the pings: what it measures is the server.

    python watchdog.py HOST:PORT TOKEN
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import grpc

PING = "/snakepit.bridge.BridgeService/Ping"
BODY = b"\n\x02wd"  # PingRequest(message="wd")
MAX_SECONDS = 300  # bounded even if nobody closes stdin


async def main(address: str, token: str) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.run_in_executor(None, sys.stdin.read)  # returns when the parent closes stdin
    latencies: list[float] = []
    failures: list[str] = []
    md = (("authorization", f"Bearer {token}"),)
    deadline = time.monotonic() + MAX_SECONDS
    async with grpc.aio.insecure_channel(address) as ch:
        ping = ch.unary_unary(PING)
        print("ready", flush=True)
        while not stop.done() and time.monotonic() < deadline:
            start = time.perf_counter()
            try:
                await ping(BODY, metadata=md, timeout=10)
                latencies.append(time.perf_counter() - start)
            except grpc.aio.AioRpcError as err:
                failures.append(f"{err.code().name}: {err.details()}")
            await asyncio.sleep(0.002)
    print(json.dumps({"latencies": latencies, "failures": failures}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
