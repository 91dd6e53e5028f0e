"""Several server addresses: the first that answers is used, and a context moves along the
list when its server goes away (docs/server.md, "Several server addresses").

Real servers on loopback: ``dspex-notebook serve`` processes over one SQLite file (only one
process may hold it, so B starts once A is SIGKILLed: the same store, the same store id, as
servers over one shared store are), two live ``serve --backend etcd`` processes over one real
etcd (the case the list is for), and embedded servers. Every loop is bounded.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import signal
import socket
import sys
import uuid

import pytest

import dspex_notebook as dn
from dspex_notebook import cli
from dspex_notebook._addresses import parse_addresses
from dspex_notebook._errors import InvalidArgument
from dspex_notebook.testing import running_server

TIMEOUT = 30.0
TOKEN = "failover-test-token-0123"
ADDRESS_RE = re.compile(r"serving .* on (\S+:\d+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dead_address() -> str:
    """An address where nothing listens (a port that was free a moment ago)."""
    return f"127.0.0.1:{free_port()}"


async def until(predicate, timeout: float = TIMEOUT) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


class Serve:
    """``dspex-notebook serve STORE-OPTIONS --port PORT`` as a child process, with its own
    random token (clients take it from its runtime file, in this test's runtime dir)."""

    def __init__(self, store: list[str], port: int, log) -> None:
        self.store, self.port, self.log = store, port, log
        self.address = ""
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> Serve:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dspex_notebook", "serve", *self.store,
            "--port", str(self.port), stdout=asyncio.subprocess.PIPE, stderr=self.log,
            env=dict(os.environ))
        async with asyncio.timeout(60):
            for _ in range(20):  # a few banner lines at most
                line = (await self.proc.stdout.readline()).decode()
                if not line:
                    raise AssertionError(f"serve exited early ({await self.proc.wait()})")
                match = ADDRESS_RE.search(line)
                if match:
                    self.address = match.group(1)
                    return self
        raise AssertionError("serve never printed its address")

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(self.proc.wait(), TIMEOUT)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), TIMEOUT)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "dspex_notebook"]


# ----------------------------------------------------------------------------------------------
# a server SIGKILLed: calls and the watch move to the next address


@pytest.mark.slow
async def test_sigkilled_server_calls_and_watch_move_to_the_next_address(tmp_path, caplog):
    store = ["--db", str(tmp_path / "shared.sqlite3")]
    log = open(tmp_path / "serve.log", "ab")
    a = await Serve(store, 0, log).start()
    b = Serve(store, free_port(), log)
    addresses = [a.address, f"127.0.0.1:{b.port}"]
    n_before, n = 10, 20
    writer = watcher = None
    try:
        # the writer has no watch stream: its own call must find B and be retried there
        writer = await dn.SessionContext.connect("fo", address=addresses, coherent_cache=False,
                                                 timeout=10)
        watcher = await dn.SessionContext.connect("fo", address=",".join(addresses), timeout=10)
        store_id = (await writer.ping())["store_id"]
        await writer.register_variable("counter", "integer", 0)
        seen: list[tuple[str, int, int]] = []

        async def collect() -> None:
            async with watcher.watch_variable("counter") as watch:
                async for u in watch:
                    seen.append((u.kind, u.value, u.revision))
                    if u.value == n:
                        return

        collector = asyncio.create_task(collect())
        await until(lambda: len(seen) == 1)  # the snapshot (value 0)
        for i in range(1, n_before + 1):
            await writer.set_variable("counter", i)
        await a.kill()  # maybe before the watch got the last writes: B replays them
        await until(lambda: watcher.watch_status != "live")
        with caplog.at_level(logging.WARNING, "dspex_notebook"):
            await b.start()  # the same file, so the same store id, on the list's 2nd address
            for i in range(n_before + 1, n + 1):
                await writer.set_variable("counter", i)  # the first one is retried on B
            await asyncio.wait_for(collector, TIMEOUT)

        kinds = [k for k, _v, _r in seen]
        values = [v for _k, v, _r in seen]
        revisions = [r for _k, _v, r in seen]
        assert kinds[0] == "initial" and set(kinds[1:]) == {"set"}
        assert values == list(range(n + 1))  # nothing lost, nothing twice, in order
        assert revisions == sorted(set(revisions))
        assert watcher._hub.resumes >= 1
        for ctx in (writer, watcher):
            assert ctx._bridge.recovery.endpoint.address == b.address
            assert (await ctx.ping())["store_id"] == store_id
        moved = (f"dspex_notebook: the server at {a.address} went away; moved to {b.address} "
                 "(the same store) and reconnected")
        assert moved in messages(caplog)
        assert f"one of {a.address},{b.address}" in dn._connect.describe(writer)
        print(f"\nfailover: {n} writes, {n_before} on A, {n - n_before} on B after SIGKILL; "
              f"watch lost 0, duplicates 0, resumes {watcher._hub.resumes}")
    finally:
        for ctx in (writer, watcher):
            if ctx is not None:
                await ctx.close()
        await a.stop()
        await b.stop()
        log.close()


@pytest.mark.slow
async def test_two_live_servers_over_etcd_the_survivor_takes_over(tmp_path, caplog, etcd_cluster):
    """What the list is for: A and B both serving one etcd store; A SIGKILLed mid-session."""
    store = ["--backend", "etcd", "--etcd", ",".join(etcd_cluster.endpoints),
             "--etcd-prefix", f"/failover-{uuid.uuid4().hex[:12]}/"]
    log = open(tmp_path / "serve.log", "ab")
    a = await Serve(store, 0, log).start()
    b = await Serve(store, 0, log).start()
    n_before, n = 15, 30
    writer = watcher = None
    try:
        writer = await dn.SessionContext.connect("etcd-fo", address=[a.address, b.address],
                                                 coherent_cache=False, timeout=10)
        watcher = await dn.SessionContext.connect("etcd-fo", address=[a.address, b.address],
                                                  timeout=10)
        store_id = (await writer.ping())["store_id"]
        await writer.register_variable("counter", "integer", 0)
        seen: list[tuple[int, int]] = []

        async def collect() -> None:
            async with watcher.watch_variable("counter") as watch:
                async for u in watch:
                    seen.append((u.value, u.revision))
                    if u.value == n:
                        return

        collector = asyncio.create_task(collect())
        await until(lambda: len(seen) == 1)
        for i in range(1, n_before + 1):
            await writer.set_variable("counter", i)
        with caplog.at_level(logging.WARNING, "dspex_notebook"):
            await a.kill()
            for i in range(n_before + 1, n + 1):
                await writer.set_variable("counter", i)  # the first one is retried on B
            await asyncio.wait_for(collector, TIMEOUT)
        values = [v for v, _r in seen]
        revisions = [r for _v, r in seen]
        assert values == list(range(n + 1))  # nothing lost, nothing twice, in order
        assert revisions == sorted(set(revisions))
        for ctx in (writer, watcher):
            assert ctx._bridge.recovery.endpoint.address == b.address
            assert (await ctx.ping())["store_id"] == store_id
        assert messages(caplog).count(
            f"dspex_notebook: the server at {a.address} went away; moved to {b.address} "
            "(the same store) and reconnected") == 2  # the writer's call and the watch stream
    finally:
        for ctx in (writer, watcher):
            if ctx is not None:
                await ctx.close()
        await a.stop()
        await b.stop()
        log.close()


# ----------------------------------------------------------------------------------------------
# connecting


async def test_a_dead_first_address_connects_to_the_second(caplog):
    dead = dead_address()
    with running_server(token=TOKEN) as srv:
        with caplog.at_level(logging.WARNING, "dspex_notebook"):
            ctx = await dn.SessionContext.connect("first-dead", address=f"{dead},{srv.address}",
                                                  token=TOKEN)
        try:
            assert ctx._bridge.recovery.endpoint.address == srv.address
            await ctx.register_variable("x", "integer", 1)
            assert await ctx.get_variable("x", bypass_cache=True) == 1
        finally:
            await ctx.close()
    assert messages(caplog) == [
        f"dspex_notebook: {dead} did not answer; moved to {srv.address} and reconnected"]


async def test_every_address_dead_is_one_error_naming_each(caplog):
    dead = [dead_address(), dead_address()]
    with caplog.at_level(logging.WARNING, "dspex_notebook"):
        with pytest.raises(dn.BridgeUnavailable) as info:
            await dn.SessionContext.connect("all-dead", address=dead, token=TOKEN)
    text = str(info.value)
    assert text.startswith("no server answered at any of the 2 addresses (3 rounds): "
                           f"{dead[0]}: connection refused; {dead[1]}: connection refused"), text
    # bounded: three rounds over both addresses, each attempt said, two pauses between rounds
    lines = messages(caplog)
    assert sum("did not answer (connection refused)" in line for line in lines) == 6
    assert [line for line in lines if "trying again" in line] == [
        f"dspex_notebook: no server of {dead[0]},{dead[1]} answered; trying again in 0.1 s "
        "(round 2 of 3)",
        f"dspex_notebook: no server of {dead[0]},{dead[1]} answered; trying again in 0.2 s "
        "(round 3 of 3)"]


async def test_the_list_from_dspex_address(monkeypatch):
    with running_server(token=TOKEN) as srv:
        monkeypatch.setenv("DSPEX_ADDRESS", f" {dead_address()} , {srv.address} ")
        monkeypatch.setenv("DSPEX_TOKEN", TOKEN)
        async with await dn.SessionContext.connect("env-list") as ctx:
            assert ctx._bridge.recovery.endpoint.address == srv.address
        monkeypatch.setenv("DSPEX_ADDRESS", f"{srv.address},")
        with pytest.raises(InvalidArgument, match=r"^DSPEX_ADDRESS entry 2 of 2 is empty"):
            await dn.SessionContext.connect("env-list")


async def test_a_server_of_another_store_resyncs_the_watch():
    """Moving to a server whose store id differs is today's "store changed": the watch
    relists (the variable it had is not there: a delete) and goes on on the new store."""
    with running_server(token=TOKEN) as a, running_server(token=TOKEN) as b:
        assert a.store_id != b.store_id
        ctx = await dn.SessionContext.connect("other-store", address=[a.address, b.address],
                                              token=TOKEN)
        seen: list[tuple[str, object]] = []
        try:
            await ctx.register_variable("x", "integer", 0)
            watch = ctx.watch_variable("x")

            async def collect() -> None:
                async for u in watch:
                    seen.append((u.kind, u.value))

            collector = asyncio.create_task(collect())
            await until(lambda: len(seen) == 1)
            await ctx.set_variable("x", 1)
            await until(lambda: len(seen) == 2)
            a.stop()
            await until(lambda: ctx._bridge.recovery.endpoint.address == b.address
                        and ctx.watch_status == "live")
            await until(lambda: len(seen) == 3)
            await ctx.register_variable("x", "integer", 5)  # the session was set up on B
            await until(lambda: len(seen) == 4)
            assert seen == [("initial", 0), ("set", 1), ("delete", None), ("register", 5)]
            assert ctx._hub.store_id == b.store_id
            await watch.aclose()
            await asyncio.wait_for(collector, TIMEOUT)
        finally:
            await ctx.close()


# ----------------------------------------------------------------------------------------------
# bad input names the entry


@pytest.mark.parametrize(("value", "message"), [
    ("a:1,,b:2", "address entry 2 of 3 is empty ('a:1,,b:2': a stray comma?)"),
    ("127.0.0.1:5001,", "address entry 2 of 2 is empty"),
    ("", "address is empty"),
    ([], "address is empty"),
    ("localhost", "address 'localhost' has no port (HOST:PORT, e.g. 127.0.0.1:50051)"),
    ("127.0.0.1:5001,example", "address entry 2 of 2, 'example', has no port"),
    ("db.internal:http", "has no port number after the last ':' (got 'http')"),
    ("h:0", "port 0 is not a TCP port (1-65535)"),
    ("h:70000", "port 70000 is not a TCP port"),
    (":5001", "address ':5001' has no host"),
    ("my host:5001", "host 'my host' is not a host name or IP address"),
    ("http://h:5001", "is not HOST:PORT (no scheme or path"),
    ("::1:5001", "an IPv6 address without brackets"),
    ("[::1:5001", "an unclosed '['"),
    ("[::zz]:5001", "[::zz] is not an IPv6 address"),
    ("localhost:5001,127.0.0.1:5001", "entry 2 of 2, '127.0.0.1:5001', names the same server "
                                      "as entry 1 ('localhost:5001')"),
    (["a:1", 5], "address: 5 is not a string"),
])
def test_bad_addresses_name_the_entry(value, message):
    with pytest.raises(InvalidArgument) as info:
        parse_addresses(value)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_good_addresses_are_kept_in_order():
    assert parse_addresses(" b:2 ,a:1") == ["b:2", "a:1"]
    assert parse_addresses(["a:1,b:2", "[::1]:3"]) == ["a:1", "b:2", "[::1]:3"]
    assert parse_addresses("unix:/tmp/dspex.sock") == ["unix:/tmp/dspex.sock"]


async def test_connect_refuses_a_bad_list_before_calling_anything():
    with pytest.raises(InvalidArgument, match=r"^address entry 2 of 2, 'oops', has no port"):
        await dn.SessionContext.connect("bad", address="127.0.0.1:1,oops")


# ----------------------------------------------------------------------------------------------
# the command line


def run(capsys, *argv: str) -> tuple[int, str, str]:
    gc.collect()  # what earlier tests left for the collector goes now, not into this stderr
    capsys.readouterr()
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_address_list(capsys, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    dead = dead_address()
    with running_server(token=TOKEN) as srv:
        asyncio.run(_register(srv, "cli-list"))
        code, out, err = run(capsys, "get", "lr", "--session", "cli-list", "--address",
                             f"{dead},{srv.address}", "--token-file", str(token_file))
        assert (code, out) == (0, "0.1\n")
        assert err.splitlines() == [
            f"dspex_notebook: {dead} did not answer; moved to {srv.address} and reconnected",
            f"dspex-notebook: session 'cli-list' on {srv.address} (store unknown; one of "
            f"{dead},{srv.address})"]


async def _register(srv, session_id: str) -> None:
    async with await dn.SessionContext.connect(session_id, address=srv.address,
                                               token=TOKEN) as ctx:
        await ctx.register_variable("lr", "float", 0.1)


@pytest.mark.parametrize(("value", "message"), [
    ("127.0.0.1:1,,127.0.0.1:2", "argument --address: entry 2 of 3 is empty"),
    ("nohost", "argument --address: 'nohost' has no port"),
])
def test_cli_bad_address_list_names_the_entry(capsys, value, message):
    with pytest.raises(SystemExit) as info:
        cli.main(["vars", "--address", value])
    assert info.value.code == 2
    assert message in capsys.readouterr().err
