"""``%var watch`` / ``unwatch`` / ``stats`` / ``cache`` in a real InteractiveShell, and the
``dspex-notebook watch`` / ``stats`` commands (in-process, and ``watch`` as a subprocess that
resumes across a server kill -9 + restart)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from IPython.core.error import UsageError
from nb_helpers import nb_session

from dspex_notebook import SessionContext, cli
from dspex_notebook._display import StatsTable
from dspex_notebook.notebook.live import LiveView
from dspex_notebook.testing import running_server, session_for


def var(ip, line: str):
    return ip.run_line_magic("var", line)


def other_client_sets(ip, name: str, value) -> None:
    """Another client (its own channel and loop) writes ``name``."""
    address, token = _address(ip)

    async def write() -> None:
        ctx = await SessionContext.connect("default", address=address, token=token,
                                           coherent_cache=False)
        try:
            await ctx.set_variable(name, value)
        finally:
            await ctx.close()

    asyncio.run(write())


def _address(ip) -> tuple[str, str]:
    from dspex_notebook._runtime import list_servers

    info = list_servers()[0]
    return info["address"], info["token"]


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_watch_shows_and_follows_another_clients_writes(ext):
    var(ext, "register temperature float 0.7 --min 0 --max 2")
    view = var(ext, "watch temperature")
    assert isinstance(view, LiveView)
    assert wait_until(lambda: "temperature" in view.rows)
    assert view.rows["temperature"].value == 0.7 and "0.7" in view.widget.value
    other_client_sets(ext, "temperature", 1.25)
    assert wait_until(lambda: view.rows["temperature"].value == 1.25)
    assert "1.25" in view.widget.value and "watch: live" in view.widget.value
    assert "temperature = 1.25" in repr(view)
    var(ext, "unwatch temperature")
    assert wait_until(lambda: view.status == "closed")
    assert "stopped" in view.widget.value
    other_client_sets(ext, "temperature", 1.5)
    time.sleep(0.2)
    assert view.rows["temperature"].value == 1.25  # no longer updated


def test_watch_several_and_delete(ext):
    var(ext, "register a integer 1")
    var(ext, "register b integer 2")
    view = var(ext, "watch a b")
    assert wait_until(lambda: set(view.rows) == {"a", "b"})
    var(ext, "del b")
    assert wait_until(lambda: view.rows["b"].kind == "delete")
    assert "(deleted)" in view.widget.value


def test_unload_stops_the_views(ext):
    var(ext, "register x integer 1")
    view = var(ext, "watch x")
    assert wait_until(lambda: "x" in view.rows)
    ext.run_line_magic("unload_ext", "dspex_notebook")
    assert view.status == "closed" or "stopped" in view.widget.value


def test_watch_and_unwatch_usage(ext, capsys):
    with pytest.raises(UsageError, match="usage: %var watch"):
        var(ext, "watch")
    with pytest.raises(UsageError, match="not variable names"):
        var(ext, "watch 1abc")
    var(ext, "unwatch nothing")
    assert "no live display of nothing" in capsys.readouterr().out


def test_stats_and_cache_magics(ext):
    var(ext, "register t float 0.5")
    var(ext, "t = 0.6")
    table = var(ext, "stats t")
    assert isinstance(table, StatsTable)
    assert table.stats["write_count"] == 2 and table.stats["version"] == 1
    assert "write_count" in repr(table) and "<table" in table._repr_html_()
    overall = var(ext, "stats")
    assert "t" in overall.stats["variables"] and "(all)" in repr(overall)
    info = var(ext, "cache --ttl 5 --max-size 50 --policy lfu")
    assert (info["ttl"], info["max_size"], info["eviction_policy"]) == (5.0, 50, "lfu")
    assert info["coherent"] is True  # the extension's session keeps its cache coherent
    with pytest.raises(UsageError):
        var(ext, "cache --policy mru")
    with pytest.raises(UsageError, match="usage: %var stats"):
        var(ext, "stats a b")
    assert nb_session(ext).get_cache_info()["eviction_policy"] == "lfu"


# ---------------------------------------------------------------------------------------------
# the CLI


def test_cli_stats(capsys):
    with running_server(os.environ["DSPEX_DB"], write_runtime_file=True) as srv:
        async def fill() -> None:
            async with session_for(srv, "default") as ctx:
                await ctx.register_variable("x", "integer", 1)
                await ctx.set_variable("x", 2)

        asyncio.run(fill())
        assert cli.main(["stats", "x", "--json"]) == 0
        stats = json.loads(capsys.readouterr().out)
        assert stats["write_count"] == 2 and stats["version"] == 1
        assert cli.main(["stats"]) == 0
        out = capsys.readouterr().out
        assert out.splitlines()[0].split()[:3] == ["name", "read_count", "write_count"]
        assert cli.main(["stats", "nope"]) == 1
        assert "not found" in capsys.readouterr().err


def _serve(port: int, db, token_file, env) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "dspex_notebook", "serve", "--port", str(port), "--db", str(db),
         "--token-file", str(token_file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()  # "dspex-notebook ... serving ... on 127.0.0.1:PORT"
    assert "serving" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_cli_watch_streams_until_interrupted_and_resumes_across_a_restart(tmp_path):
    env = dict(os.environ, DSPEX_RUNTIME_DIR=str(tmp_path / "rt"), PYTHONUNBUFFERED="1")
    token_file = tmp_path / "token"
    token_file.write_text("cli-watch-token\n")
    port, db = _free_port(), tmp_path / "store.sqlite3"
    address = f"127.0.0.1:{port}"
    server = _serve(port, db, token_file, env)
    watcher = None
    try:
        async def write(value: int, register: bool = False) -> None:
            ctx = await SessionContext.connect("w", address=address, token="cli-watch-token",
                                               coherent_cache=False)
            try:
                if register:
                    await ctx.register_variable("n", "integer", value)
                else:
                    await ctx.set_variable("n", value)
            finally:
                await ctx.close()

        asyncio.run(write(0, register=True))
        watcher = subprocess.Popen(
            [sys.executable, "-m", "dspex_notebook", "watch", "n", "--json", "--session", "w",
             "--address", address, "--token-file", str(token_file)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        first = json.loads(watcher.stdout.readline())
        assert (first["kind"], first["value"]) == ("initial", 0)
        for i in (1, 2):
            asyncio.run(write(i))
        seen = [json.loads(watcher.stdout.readline())["value"] for _ in range(2)]
        _end(server, signal.SIGKILL)
        server = _serve(port, db, token_file, env)  # same file, same port, same token
        for i in (3, 4):
            asyncio.run(write(i))
        seen += [json.loads(watcher.stdout.readline())["value"] for _ in range(2)]
        assert seen == [1, 2, 3, 4]  # nothing lost, nothing twice, across the kill
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(10) == 0  # Ctrl-C: a clean exit ...
        assert "Traceback" not in watcher.stderr.read()  # ... without a traceback
    finally:
        for proc in (watcher, server):
            if proc is not None:
                _end(proc, signal.SIGKILL)


def _end(proc: subprocess.Popen, sig: int) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        proc.wait(10)
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
