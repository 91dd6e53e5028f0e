"""``%load_ext`` / ``%reload_ext`` / ``%unload_ext dspex_notebook`` and the ``%config
DspexMagics.*`` options, in a real ``InteractiveShell`` with real servers."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from nb_helpers import EXT, dspex_threads, nb_session, runtime_files

from dspex_notebook import _runtime
from dspex_notebook._errors import AccessDenied
from dspex_notebook._loop import PortalClosed
from dspex_notebook._wire.status import BridgeUnavailable
from dspex_notebook.notebook import NotebookSession, current_session
from dspex_notebook.notebook.magics import DspexMagicError, DspexMagics
from dspex_notebook.testing import running_server, session_for


def config(ip, line: str) -> None:
    ip.run_line_magic("config", f"DspexMagics.{line}")


async def _read(server, session_id: str, name: str):
    async with session_for(server, session_id) as ctx:
        return await ctx.get_variable(name)


def read_directly(server, session_id: str, name: str):
    """Read with an independent SessionContext on a plain asyncio loop."""
    return asyncio.run(_read(server, session_id, name))


def test_load_publishes_session_and_starts_an_embedded_server_on_the_test_store(ip):
    before = set(threading.enumerate())
    ip.run_line_magic("load_ext", EXT)
    session = ip.user_ns["session"]
    assert isinstance(session, NotebookSession) and current_session() is session
    assert session.session_id == "default"
    assert EXT in ip.extension_manager.loaded
    assert dspex_threads(before) == ["dspex-io", "dspex-server"]
    [info] = _runtime.list_servers()
    assert info["db"] == os.environ["DSPEX_DB"] and info["pid"] == os.getpid()
    assert os.stat(info["runtime_file"]).st_mode & 0o777 == 0o600

    r = ip.run_cell("await session.register_variable('lr', 'float', 0.1)\n"
                    "lr = await session.get_variable('lr')")
    assert r.error_in_exec is None and ip.user_ns["lr"] == 0.1
    with capture_output() as out:
        ip.run_line_magic("load_ext", EXT)  # a second %load_ext: IPython says so, nothing changes
    assert "already loaded" in out.stdout
    assert ip.user_ns["session"] is session and dspex_threads(before) == ["dspex-io", "dspex-server"]


def test_namespace_name_is_configurable(ip):
    config(ip, "namespace_name = 'dx'")
    ip.run_line_magic("load_ext", EXT)
    assert "session" not in ip.user_ns
    assert isinstance(ip.user_ns["dx"], NotebookSession)
    r = ip.run_cell("await dx.ping()")
    assert r.error_in_exec is None
    ip.run_line_magic("unload_ext", EXT)
    assert "dx" not in ip.user_ns


def test_reload_is_idempotent_and_data_persists(ip):
    before = set(threading.enumerate())
    ip.run_line_magic("load_ext", EXT)
    ip.run_line_magic("var", "register lr float 0.1")
    ip.run_line_magic("var", "lr = 0.25")
    old = ip.user_ns["session"]
    for _ in range(3):
        ip.run_line_magic("reload_ext", EXT)
        assert dspex_threads(before) == ["dspex-io", "dspex-server"]  # exactly one of each
        assert len(_runtime.list_servers()) == 1
    session = ip.user_ns["session"]
    assert session is not old and current_session() is session
    assert ip.run_line_magic("var", "lr") == 0.25  # from the SQLite store, new server
    r = ip.run_cell("v = await session.get_variable('lr', bypass_cache=True)")
    assert r.error_in_exec is None and ip.user_ns["v"] == 0.25
    # one DspexMagics instance is configurable, not one per load
    assert sum(isinstance(c, DspexMagics) for c in ip.configurables) == 1


def test_unload_leaves_nothing_running(ip):
    before = set(threading.enumerate())
    ip.run_line_magic("load_ext", EXT)
    ip.run_line_magic("var", "register lr float 0.1")
    assert runtime_files()
    old = ip.user_ns["session"]
    ip.run_line_magic("unload_ext", EXT)

    assert dspex_threads(before) == []  # grpc's own `_poll_wrapper` thread may stay: it is grpc's
    assert runtime_files() == []
    assert "session" not in ip.user_ns and current_session() is None
    assert EXT not in ip.extension_manager.loaded
    assert not any(isinstance(c, DspexMagics) for c in ip.configurables)
    with pytest.raises(UsageError, match="Line magic function `%var` not found"):
        ip.run_line_magic("var", "lr")

    # a `session` kept in another name fails clearly and does not restart the IO thread
    ip.user_ns["kept"] = old
    r = ip.run_cell("await kept.get_variable('lr', bypass_cache=True)")
    assert isinstance(r.error_in_exec, PortalClosed)
    assert dspex_threads(before) == []
    del ip.user_ns["kept"]

    # and loading again works (same store)
    ip.run_line_magic("load_ext", EXT)
    assert ip.run_line_magic("var", "lr") == 0.1


@pytest.mark.parametrize("how", ["token", "token_file"])
def test_connects_to_a_configured_server(ip, server, tmp_path, how):
    before = set(threading.enumerate())
    session_id = f"configured-{how}"
    config(ip, f"address = {server.address!r}")
    if how == "token":
        config(ip, f"token = {server.token!r}")
    else:
        token_file = tmp_path / "token"
        token_file.write_text(f"  {server.token}\n")
        config(ip, f"token_file = {str(token_file)!r}")
    config(ip, f"session_id = {session_id!r}")
    ip.run_line_magic("load_ext", EXT)
    assert ip.user_ns["session"].session_id == session_id
    assert dspex_threads(before) == ["dspex-io"]  # no embedded server started
    assert runtime_files() == []

    ip.run_line_magic("var", "register lr float 0.5")
    assert read_directly(server, session_id, "lr") == 0.5  # the magic wrote to that server

    ip.run_line_magic("unload_ext", EXT)
    assert server.running  # not ours to stop
    assert read_directly(server, session_id, "lr") == 0.5
    asyncio.run(_cleanup(server, session_id))


async def _cleanup(server, session_id: str) -> None:
    async with session_for(server, session_id) as ctx:
        await ctx.cleanup()


def test_wrong_token_fails_cleanly(ip, server):
    before = set(threading.enumerate())
    config(ip, f"address = {server.address!r}")
    config(ip, "token = 'not-the-token'")
    with pytest.raises(DspexMagicError, match="^%load_ext dspex_notebook: AuthenticationError: ") as info:
        ip.run_line_magic("load_ext", EXT)
    assert isinstance(info.value.__cause__, AccessDenied)
    assert EXT not in ip.extension_manager.loaded and "session" not in ip.user_ns
    assert dspex_threads(before) == []


def test_start_server_false_without_a_server_is_a_clear_error(ip):
    before = set(threading.enumerate())
    config(ip, "start_server = False")
    with pytest.raises(DspexMagicError, match="no dspex-notebook server found .* start_server=False") as info:
        ip.run_line_magic("load_ext", EXT)
    assert isinstance(info.value.__cause__, BridgeUnavailable)
    assert "%config DspexMagics.db" in str(info.value)  # hints in the notebook's own words
    assert EXT not in ip.extension_manager.loaded and "session" not in ip.user_ns
    assert current_session() is None
    assert dspex_threads(before) == []
    assert not any(isinstance(c, DspexMagics) for c in ip.configurables)


def test_finds_a_running_server_through_its_runtime_file(ip, tmp_path):
    """Another process's (here: thread's) server of the default store, published in the
    runtime dir, is used instead of starting one; unloading leaves it running."""
    with running_server(os.environ["DSPEX_DB"], write_runtime_file=True) as other:
        before = set(threading.enumerate())
        config(ip, "start_server = False")
        ip.run_line_magic("load_ext", EXT)
        assert dspex_threads(before) == ["dspex-io"]
        ip.run_line_magic("var", "register found float 1.5")
        assert read_directly(other, "default", "found") == 1.5
        ip.run_line_magic("unload_ext", EXT)
        assert other.running and len(_runtime.list_servers()) == 1


def test_session_id_and_db_options(ip, tmp_path):
    db = tmp_path / "elsewhere.sqlite3"
    config(ip, f"db = {str(db)!r}")
    config(ip, "session_id = 'one'")
    ip.run_line_magic("load_ext", EXT)
    [info] = _runtime.list_servers()
    assert info["db"] == str(db)
    ip.run_line_magic("var", "register x integer 1")
    ip.run_line_magic("unload_ext", EXT)

    config(ip, "session_id = 'two'")  # same store, another session: its own variables
    ip.run_line_magic("load_ext", EXT)
    assert len(ip.run_line_magic("var", "")) == 0
    r = ip.run_cell("await session.get_variable('x', default='absent')")
    assert r.error_in_exec is None and r.result == "absent"


def test_timeout_option_applies_to_magics(ip):
    config(ip, "timeout = 2.5")
    ip.run_line_magic("load_ext", EXT)
    magics = ip.magics_manager.registry["DspexMagics"]
    assert magics.timeout == 2.5
    config(ip, "timeout = 4")  # %config after loading reaches the live instance
    assert magics.timeout == 4.0
    assert nb_session(ip).session_id == "default"
