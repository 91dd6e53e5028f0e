"""``serve --backend etcd``: wrong arguments, an unreachable etcd, an etcd member dying."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from cluster import TOKEN, Servers

import dspex_notebook as dn


def _serve(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dspex_notebook", "serve", "--port", "0", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(("args", "message"), [
    (("--backend", "etcd"), "--backend etcd needs --etcd HOST:PORT"),
    (("--etcd", "127.0.0.1:2379"), "--etcd is for --backend etcd"),
    (("--backend", "etcd", "--etcd", "nohost"), "etcd endpoint 'nohost' is not host:port"),
    (("--backend", "etcd", "--etcd", "127.0.0.1:2379,"), "etcd endpoint '' is not host:port"),
    (("--backend", "etcd", "--etcd", "localhost:1,localhost:2"), "must be IPv4 addresses"),
    (("--backend", "etcd", "--etcd", "127.0.0.1:2379", "--etcd-prefix", "dspex"),
     "--etcd-prefix must start and end with '/'"),
    (("--backend", "etcd", "--etcd", "127.0.0.1:2379", "--db", "x.sqlite3"),
     "with --backend etcd the store is in etcd"),
])
def test_wrong_etcd_arguments_are_refused_with_the_reason(args, message):
    done = _serve(*args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "serving" not in done.stdout


def test_an_unreachable_etcd_fails_startup_naming_it(tmp_path):
    import socket

    with socket.socket() as s:  # a free port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = _serve("--backend", "etcd", "--etcd", f"127.0.0.1:{port}", timeout=90)
    assert done.returncode == 1
    assert f"etcd at 127.0.0.1:{port} did not complete" in done.stderr
    assert "serving" not in done.stdout


@pytest.mark.slow
async def test_writes_go_on_when_an_etcd_member_dies(tmp_path, requires):
    from dspex_notebook.server.etcd_local import LocalEtcd, etcd_binary

    requires(etcd_binary() is not None, "etcd (Debian package etcd-server)")
    with LocalEtcd(members=3, in_memory=True) as etcd:
        servers = Servers(etcd.endpoints, tmp_path, n=2)
        try:
            a = await dn.SessionContext.connect("m", address=servers.addresses[0], token=TOKEN,
                                                cache_ttl=0, coherent_cache=False)
            b = await dn.SessionContext.connect("m", address=servers.addresses[1], token=TOKEN,
                                                cache_ttl=0, coherent_cache=False)
            await a.register_variable("x", "integer", 0)
            etcd.kill(0)  # the member every server's channel picked first
            for i in range(1, 11):  # bounded: a quorum of 2 of 3 remains
                await asyncio.wait_for(a.set_variable("x", i), 30)
                assert await asyncio.wait_for(b.get_variable("x"), 30) == i
            await a.close()
            await b.close()
        finally:
            servers.close()


@pytest.mark.slow
async def test_a_server_rides_out_etcd_going_away_and_coming_back(tmp_path, requires):
    """While etcd is down writes fail with UNAVAILABLE (nothing committed); the server stays up,
    its watch resumes when etcd is back, and nothing is lost or repeated."""
    from dspex_notebook.server.etcd_local import LocalEtcd, etcd_binary

    requires(etcd_binary() is not None, "etcd (Debian package etcd-server)")
    with LocalEtcd(members=1, in_memory=True) as etcd:
        servers = Servers(etcd.endpoints, tmp_path, n=1)
        try:
            ctx = await dn.SessionContext.connect("down", address=servers.addresses[0],
                                                  token=TOKEN, cache_ttl=0, timeout=30)
            await ctx.register_variable("x", "integer", 0)
            seen: list[int] = []

            async def watch() -> None:
                async with ctx.watch_variable("x", include_initial=False) as w:
                    async for u in w:
                        seen.append(u.value)
                        if u.value == 2:
                            return

            task = asyncio.create_task(watch())
            await asyncio.sleep(0.3)
            await ctx.set_variable("x", 1)
            etcd.kill(0)
            with pytest.raises(dn.DspexError, match="UNAVAILABLE|etcd"):
                await ctx.set_variable("x", 99)
            etcd.restart(0)
            for _ in range(100):  # bounded: the server's etcd channel reconnects
                try:
                    await ctx.set_variable("x", 2)
                    break
                except dn.DspexError:
                    await asyncio.sleep(0.2)
            await asyncio.wait_for(task, 30)
            assert seen == [1, 2]  # the refused write never happened; none lost or repeated
            assert await ctx.get_variable("x") == 2
            assert servers.procs[0] is not None and servers.procs[0].poll() is None  # still up
            await ctx.close()
        finally:
            servers.close()
