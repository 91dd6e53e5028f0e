"""A newcomer's first hour: the examples of README.md and docs/ run **as written**.

The code blocks are read from the Markdown files themselves, so a doc that drifts from the code
fails here. Python blocks run with top-level ``await`` (as in a notebook cell); notebook blocks
run in a real InteractiveShell; shell blocks run through ``cli.main`` (``watch`` and ``serve``,
which run until stopped, as processes). Everything uses the test's own default store and
runtime dir (see ``conftest.py``). The only changes made to what is written: the spec-style
``localhost:50051`` gets the port of the test's server, and ``serve`` lines that need the fixed
port 50051 are not started (another program may hold it) — they are checked to parse.
"""

from __future__ import annotations

import ast
import atexit
import contextlib
import inspect
import io
import os
import pathlib
import re
import shlex
import subprocess
import sys
from typing import Any

import pytest

from dspex_notebook import cli
from dspex_notebook.server.runner import embedded_servers, stop_embedded
from dspex_notebook.testing import running_server, session_for

REPO = pathlib.Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks(doc: str, lang: str) -> list[str]:
    """The fenced code blocks of ``lang`` in ``doc`` (a path under the repository)."""
    text = (REPO / doc).read_text()
    return [body for kind, body in FENCE.findall(text) if kind == lang]


def block(doc: str, lang: str, containing: str) -> str:
    [found] = [b for b in blocks(doc, lang) if containing in b]
    return found


async def run_python(source: str, namespace: dict[str, Any]) -> str:
    """Run a block with top-level await; return what it printed."""
    code = compile(source, "<doc>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = eval(code, namespace)  # noqa: S307 - our own documentation
        if inspect.iscoroutine(result):
            await result
    return out.getvalue()


def commands(source: str) -> list[list[str]]:
    """``dspex-notebook ...`` lines of a shell block, comments dropped, as argv lists."""
    argvs = []
    for line in source.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            assert words[0] == "dspex-notebook", line
            argvs.append(words[1:])
    return argvs


@pytest.fixture(autouse=True)
def _stop_embedded_servers():
    yield
    for srv in embedded_servers():
        stop_embedded(srv)


# ----------------------------------------------------------------------------------------------
# README.md


async def test_readme_example(capsys):
    printed = await run_python(block("README.md", "python", "SessionContext.connect("), {})
    value, revision = printed.split()
    assert float(value) == 1.0 and int(revision) > 0  # the watch's current value, atomic update


async def test_readme_spec_constructor_example():
    source = block("README.md", "python", "grpc.aio.insecure_channel")
    with running_server(write_runtime_file=True) as srv:  # a local server, as `serve` runs one
        port = srv.address.rsplit(":", 1)[1]
        namespace: dict[str, Any] = {}
        await run_python(source.replace("localhost:50051", f"localhost:{port}"), namespace)
        await namespace["channel"].close()
        async with session_for(srv, "session_123") as again:  # it is on the server
            assert await again.get_variable("temperature") == 0.5


# ----------------------------------------------------------------------------------------------
# docs/notebook.md: the notebook, then the shell against the kernel's server


@pytest.fixture
def shell(tmp_path, monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    saved = (sys.modules.get("__main__"), sys.displayhook, sys.excepthook)
    config = Config()
    config.HistoryAccessor.enabled = False
    config.InteractiveShell.colors = "nocolor"
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    InteractiveShell.clear_instance()
    ip = InteractiveShell.instance(config=config)
    try:
        yield ip
    finally:
        if "dspex_notebook" in ip.extension_manager.loaded:
            ip.extension_manager.unload_extension("dspex_notebook")
        atexit.unregister(ip.atexit_operations)
        InteractiveShell.clear_instance()
        sys.modules["__main__"], sys.displayhook, sys.excepthook = saved
        from IPython.core import async_helpers  # its loop for top-level await: never closed

        loop = getattr(async_helpers, "_asyncio_event_loop", None)
        if loop is not None and not loop.is_closed() and not loop.is_running():
            loop.close()


def test_notebook_docs_then_the_shell(shell, capsys):
    from IPython.utils.capture import capture_output

    with capture_output() as out:
        result = shell.run_cell(block("docs/notebook.md", "python", "%load_ext dspex_notebook"))
    assert result.error_in_exec is None, out.stdout + out.stderr
    assert out.stdout.startswith("dspex_notebook: session 'default' on 127.0.0.1:")
    assert f"default store {os.environ['DSPEX_DB']}" in out.stdout
    assert "temperature" in repr(result.result)  # the %var table

    capsys.readouterr()
    for argv in commands(block("docs/notebook.md", "bash", "dspex-notebook list")):
        if argv[0] == "watch":  # runs until Ctrl-C: read its first line, then stop it
            proc = subprocess.Popen([sys.executable, "-m", "dspex_notebook", *argv],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                first = proc.stdout.readline()
            finally:
                proc.terminate()
                proc.communicate(timeout=60)
            assert first.startswith("temperature = 0.8 (version 1"), first
            continue
        code = cli.main(argv)
        out, err = capsys.readouterr()
        assert code == 0, (argv, err)
        if argv[0] != "list":
            assert err.startswith("dspex-notebook: session 'default' on 127.0.0.1:"), err
        if argv[:2] == ["get", "temperature"]:
            assert out == '{"temperature": 0.7}\n'
    assert shell.run_line_magic("var", "temperature") == 0.8  # the shell's write reached it


# ----------------------------------------------------------------------------------------------
# docs/server.md and docs/api.md


async def test_server_docs_examples(tmp_path, capsys, monkeypatch):
    printed = await run_python(block("docs/server.md", "python", "EmbeddedServer"), {})
    address, token = printed.split()
    assert address.startswith("127.0.0.1:") and len(token) >= 32

    monkeypatch.chdir(tmp_path)
    lines = commands(block("docs/server.md", "bash", "dspex-notebook serve"))
    for argv in lines:  # every line parses (argparse exits on a bad one)
        assert cli.build_parser().parse_args(argv).command in ("serve", "list")
    [quick] = [a for a in lines if a[0] == "serve" and "--port" in a and a[a.index("--port") + 1] == "0"]
    proc = subprocess.Popen([sys.executable, "-m", "dspex_notebook", *quick],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = [proc.stdout.readline() for _ in range(3)]
        assert "serving :memory: on 127.0.0.1:" in banner[0], banner
        address = banner[0].split()[-1]
        assert banner[2].startswith(f"connect: dspex-notebook vars --address {address}")
        assert cli.main(["list"]) == 0
        assert f"{address:<22} pid {proc.pid:<8} in memory" in capsys.readouterr().out
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    assert proc.returncode == 0


async def test_api_docs_batch_example(session):
    await run_python(block("docs/api.md", "python", "batch_num"), {"session": session})
    info = await session.get_variable_info("processed")
    assert info.value == 100 and info.version == 4
