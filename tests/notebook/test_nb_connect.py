"""Several server addresses in the notebook: ``DspexMagics.address = 'A,B'`` for ``%load_ext``
and ``%var connect A,B``, in a real ``InteractiveShell`` against real embedded servers."""

from __future__ import annotations

import socket

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from nb_helpers import EXT, nb_session

from dspex_notebook.notebook.magics import DspexMagicError
from dspex_notebook.testing import running_server

TOKEN = "nb-connect-token-0123456"


def dead_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def config(ip, line: str) -> None:
    ip.run_line_magic("config", f"DspexMagics.{line}")


def test_load_ext_with_a_list_skips_a_dead_address(ip):
    dead = dead_address()
    with running_server(token=TOKEN) as srv:
        config(ip, f"address = '{dead},{srv.address}'")
        config(ip, f"token = {TOKEN!r}")
        with capture_output() as out:
            ip.run_line_magic("load_ext", EXT)
        assert out.stdout.splitlines() == [
            f"dspex_notebook: {dead} did not answer; moved to {srv.address} and reconnected",
            f"dspex_notebook: session 'default' on {srv.address} (store unknown; one of "
            f"{dead},{srv.address})"]
        ip.run_line_magic("var", "register lr float 0.5")
        assert ip.run_line_magic("var", "lr") == 0.5
        ip.run_line_magic("unload_ext", EXT)


def test_load_ext_names_a_bad_entry(ip):
    config(ip, "address = '127.0.0.1:1,,127.0.0.1:2'")
    with pytest.raises(DspexMagicError, match=r"^%load_ext dspex_notebook: InvalidArgument: "
                                              r"DspexMagics.address entry 2 of 3 is empty"):
        ip.run_line_magic("load_ext", EXT)
    assert EXT not in ip.extension_manager.loaded


def test_var_connect_moves_the_session_and_keeps_it_when_nothing_answers(ip):
    with running_server(token=TOKEN) as first, running_server(token=TOKEN) as second:
        config(ip, f"address = {first.address!r}")
        config(ip, f"token = {TOKEN!r}")
        ip.run_line_magic("load_ext", EXT)
        session = nb_session(ip)
        ip.run_line_magic("var", "register lr float 0.1")
        with capture_output() as out:
            assert ip.run_line_magic("var", "connect") is None
        assert out.stdout == f"dspex_notebook: session 'default' on {first.address} (store unknown)\n"

        dead = dead_address()
        with capture_output() as out:
            ip.run_line_magic("var", f"connect {dead},{second.address} --session other")
        assert out.stdout.splitlines()[-1] == (
            f"dspex_notebook: session 'other' on {second.address} (store unknown; one of "
            f"{dead},{second.address})")
        assert nb_session(ip) is session and session.session_id == "other"
        ip.run_line_magic("var", "register lr float 0.7")  # on the second server
        assert ip.run_line_magic("var", "lr") == 0.7
        r = ip.run_cell("await session.get_variable('lr', bypass_cache=True)")
        assert r.error_in_exec is None and r.result == 0.7

        with pytest.raises(DspexMagicError, match=r"^%var connect entry 2 of 2 is empty"):
            ip.run_line_magic("var", f"connect {first.address},")
        with pytest.raises(DspexMagicError, match=r"^%var connect: BridgeUnavailable: no server "
                                                  r"answered at any of the 2 addresses"):
            ip.run_line_magic("var", f"connect {dead_address()},{dead_address()}")
        with pytest.raises(UsageError, match="need an address"):
            ip.run_line_magic("var", "connect --session x")
        assert session.session_id == "other"  # a failed %var connect changed nothing
        assert ip.run_line_magic("var", "lr") == 0.7
        ip.run_line_magic("unload_ext", EXT)
