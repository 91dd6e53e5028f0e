"""Three server processes over one etcd: coherence, compare-and-set, failover, runs, leases.

Real parts only: `dspex-notebook serve --backend etcd` subprocesses, a real etcd process
(``etcd_cluster``), clients over loopback gRPC. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest
from cluster import TOKEN, Servers

import dspex_notebook as dn

pytestmark = pytest.mark.slow


@pytest.fixture
def servers(etcd_cluster, tmp_path):
    cluster = Servers(etcd_cluster.endpoints, tmp_path, n=3)
    yield cluster
    cluster.close()


async def _on(address: str, session_id: str = "shared") -> dn.SessionContext:
    """A client of one server; no client cache, so every read asks that server."""
    return await dn.SessionContext.connect(session_id, address=address, token=TOKEN,
                                           coherent_cache=False, cache_ttl=0)


async def test_writes_on_every_server_are_read_on_every_server_and_one_watch_sees_all(servers):
    a, b, c = [await _on(addr) for addr in servers.addresses]
    try:
        for name in ("x0", "x1", "x2"):
            await a.register_variable(name, "integer", 0)
        seen: list[tuple[int, str, int]] = []
        ready = asyncio.Event()

        async def watch() -> None:
            async with a.watch_variables(["x0", "x1", "x2"], include_initial=False) as w:
                ready.set()
                async for u in w:
                    seen.append((u.revision, u.name, u.value))
                    if len(seen) == 3 * 20:
                        return

        task = asyncio.create_task(watch())
        await asyncio.wait_for(ready.wait(), 10)
        await asyncio.sleep(0.2)

        async def writer(ctx: dn.SessionContext, name: str) -> None:
            for i in range(1, 21):
                await ctx.set_variable(name, i)

        await asyncio.gather(writer(a, "x0"), writer(b, "x1"), writer(c, "x2"))
        await asyncio.wait_for(task, 30)
        revisions = [r for r, _, _ in seen]
        assert revisions == sorted(set(revisions))  # in order, no duplicate
        for name in ("x0", "x1", "x2"):
            assert [v for _, n, v in seen if n == name] == list(range(1, 21))  # none lost
        # read-your-writes across servers: acknowledged on one, read at once on the others
        for i in range(10):
            writer_ctx, reader_ctx = (a, b) if i % 2 else (c, a)
            await writer_ctx.set_variable("x0", 100 + i)
            assert await reader_ctx.get_variable("x0") == 100 + i
    finally:
        for ctx in (a, b, c):
            await ctx.close()


async def test_compare_and_set_increments_across_servers_lose_no_update(servers):
    ctxs = [await _on(addr) for addr in servers.addresses]
    try:
        await ctxs[0].register_variable("counter", "integer", 0)

        async def increment(ctx: dn.SessionContext, times: int) -> int:
            conflicts = 0
            for _ in range(times):
                for _attempt in range(200):  # bounded retry loop
                    info = await ctx.get_variable_info("counter")
                    try:
                        await ctx.set_variable("counter", info.value + 1,
                                               expected_version=info.version)
                        break
                    except dn.VersionConflict:
                        conflicts += 1
                else:
                    raise AssertionError("an increment never got through")
            return conflicts

        conflicts = await asyncio.gather(*(increment(ctx, 15) for ctx in ctxs))
        assert await ctxs[1].get_variable("counter") == 45
        assert (await ctxs[2].get_variable_info("counter")).version == 45
        assert sum(conflicts) >= 0  # conflicts happen (how many depends on timing)
    finally:
        for ctx in ctxs:
            await ctx.close()


async def test_watch_resumes_on_another_server_after_sigkill(servers):
    writer = await _on(servers.addresses[2])
    # the watcher is given every address: it talks to A and moves on when A dies
    watcher = await dn.SessionContext.connect("shared", address=",".join(servers.addresses),
                                              token=TOKEN, coherent_cache=False, cache_ttl=0)
    try:
        await writer.register_variable("n", "integer", 0)
        got: list[tuple[int, int]] = []
        total = 60

        async def watch() -> None:
            async with watcher.watch_variable("n", include_initial=False) as w:
                async for u in w:
                    if u.kind == "resync":
                        raise AssertionError("resumed by a resync: events were lost")
                    got.append((u.revision, u.value))
                    if u.value == total:
                        return

        task = asyncio.create_task(watch())
        await asyncio.sleep(0.3)
        for i in range(1, total + 1):
            await writer.set_variable("n", i)
            if i == total // 3:
                servers.kill(0)  # the watcher's server, mid-stream
            await asyncio.sleep(0.01)
        await asyncio.wait_for(task, 60)
        assert [v for _, v in got] == list(range(1, total + 1))  # no loss, no duplicate
        assert [r for r, _ in got] == sorted({r for r, _ in got})
    finally:
        await writer.close()
        await watcher.close()


async def test_a_run_started_on_one_server_is_seen_and_stopped_on_another(servers):
    a = await _on(servers.addresses[0])
    b = await _on(servers.addresses[1])
    try:
        await a.register_variable("lr", "float", 0.5, constraints={"min": 0.0, "max": 1.0})
        await a.start_optimization("lr", "grid_search", {"n_points": 5, "direction": "minimize"},
                                   max_iterations=5)
        trial = await a.next_trial("lr")
        assert trial is not None
        status = await b.get_optimization_status("lr")
        assert status["is_optimizing"] and status["optimizer"] == "grid_search"
        with pytest.raises(dn.OptimizationConflict):  # the lock holds on every server
            await b.set_variable("lr", 0.9)
        await b.report_trial("lr", trial.id, 1.0)  # a worker on B reports A's trial
        assert len(await a.get_optimization_history("lr")) == 1
        await b.stop_optimization("lr")
        status = await a.get_optimization_status("lr")
        assert not status["is_optimizing"] and status["stop_reason"] == "stopped"
        await a.set_variable("lr", 0.25)  # the lock is released everywhere
        assert await b.get_variable("lr") == 0.25
    finally:
        await a.close()
        await b.close()


async def test_killing_the_driving_client_releases_the_lock_on_every_server(servers):
    ctxs = [await _on(addr) for addr in servers.addresses]
    try:
        await ctxs[0].register_variable("x", "float", 0.5, constraints={"min": 0.0, "max": 1.0})
        driver = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
            import asyncio, time
            import dspex_notebook as dn
            async def main():
                s = await dn.SessionContext.connect("shared", address={servers.addresses[0]!r},
                                                    token={TOKEN!r})
                def slow(x):
                    time.sleep(120)
                    return x
                await s.start_optimization("x", "bayesian", lease_seconds=2.0, objective=slow)
                print("started", flush=True)
                await asyncio.sleep(120)
            asyncio.run(main())
        """)], stdout=subprocess.PIPE, text=True, env=servers.env)
        try:
            assert driver.stdout is not None and driver.stdout.readline().strip() == "started"
            for ctx in ctxs:
                assert (await ctx.get_optimization_status("x"))["is_optimizing"]
            driver.kill()
            driver.wait(10)
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait(10)
            if driver.stdout is not None:
                driver.stdout.close()
        for ctx in ctxs:
            for _ in range(150):  # bounded: a 2 s lease, etcd checks expiry twice a second
                status = await ctx.get_optimization_status("x")
                if not status["is_optimizing"]:
                    break
                await asyncio.sleep(0.1)
            assert status["stop_reason"] == "abandoned"
        for i, ctx in enumerate(ctxs):
            await ctx.set_variable("x", 0.1 * (i + 1))  # released on every server
    finally:
        for ctx in ctxs:
            await ctx.close()
