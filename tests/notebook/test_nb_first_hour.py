"""Issue 10 in a real InteractiveShell: ``%load_ext`` says which server, store and session it
uses and fails in one line; the session survives its server going away; magic errors are one
line; ``%%var`` reads text by type; completion, help and confirmations; features not built yet.
"""

from __future__ import annotations

import os

import pytest
from IPython.core.completer import provisionalcompleter
from IPython.utils.capture import capture_output
from nb_helpers import EXT, nb_session

from dspex_notebook import _runtime
from dspex_notebook.notebook.magics import DspexMagicError
from dspex_notebook.testing import running_server


def var(ip, line: str):
    return ip.run_line_magic("var", line)


def shown(ip, cell: str) -> tuple[object, str]:
    """Run ``cell`` as a user would; return its error and everything it printed."""
    with capture_output() as out:
        result = ip.run_cell(cell)
    return result.error_in_exec, out.stdout + out.stderr


def fresh(ip, name: str):
    s = nb_session(ip)
    return s.portal.run(s.context.get_variable(name, bypass_cache=True))


# ----------------------------------------------------------------------------------------------
# 1. / 7. %load_ext: one line saying where, and one line when it fails


def test_load_ext_says_which_session_server_and_store(ip):
    error, out = shown(ip, "%load_ext dspex_notebook")
    assert error is None
    [info] = _runtime.list_servers()
    assert out == (f"dspex_notebook: session 'default' on {info['address']} (embedded in this "
                   f"process, default store {os.environ['DSPEX_DB']})\n")
    ip.run_line_magic("unload_ext", EXT)
    ip.run_line_magic("config", "DspexMagics.quiet = True")
    error, out = shown(ip, "%load_ext dspex_notebook")
    assert (error, out) == (None, "")


def test_load_ext_ignores_a_server_of_another_store(ip, tmp_path):
    with running_server(tmp_path / "other.sqlite3", write_runtime_file=True) as other:
        ip.run_line_magic("config", "DspexMagics.start_server = False")
        error, out = shown(ip, "%load_ext dspex_notebook")
        assert isinstance(error, DspexMagicError)
        assert out.count("\n") == 1 and "Traceback" not in out
        assert out.startswith("%load_ext dspex_notebook: BridgeUnavailable: no dspex-notebook "
                              "server found for default store")
        assert f"{other.address} (store {tmp_path / 'other.sqlite3'})" in out
        assert "%config DspexMagics.db = 'PATH'" in out


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1:1", "BridgeUnavailable"), ("no-such-host.invalid:50051", "BridgeUnavailable"),
    ("::::", "InvalidArgument"),  # not HOST:PORT: refused before any call, naming it
])
def test_failed_load_ext_is_one_line(ip, address, kind):
    ip.run_line_magic("config", f"DspexMagics.address = {address!r}")
    ip.run_line_magic("config", "DspexMagics.timeout = 5")
    error, out = shown(ip, "%load_ext dspex_notebook")
    assert isinstance(error, DspexMagicError)
    assert out.count("\n") == 1, out
    assert out.startswith(f"%load_ext dspex_notebook: {kind}: ")
    assert EXT not in ip.extension_manager.loaded


def test_failed_load_ext_with_a_missing_token_file_is_one_line(ip, tmp_path):
    ip.run_line_magic("config", "DspexMagics.address = '127.0.0.1:1'")
    ip.run_line_magic("config", f"DspexMagics.token_file = {str(tmp_path / 'nope')!r}")
    error, out = shown(ip, "%load_ext dspex_notebook")
    assert isinstance(error, DspexMagicError) and out.count("\n") == 1
    assert "DspexMagics.token_file" in out and "does not exist; create one with" in out


# ----------------------------------------------------------------------------------------------
# 5. the server goes away: the next call starts one for the same store and carries on


def test_session_carries_on_when_its_server_goes_away(ip):
    server = running_server(os.environ["DSPEX_DB"], write_runtime_file=True)
    srv = server.__enter__()  # another process's server of the default store (like kernel 1's)
    try:
        with capture_output():
            ip.run_line_magic("load_ext", EXT)
        var(ip, "register lr float 0.1")
    finally:
        server.__exit__(None, None, None)  # that kernel shuts down
    assert not srv.running
    error, out = shown(ip, "%var lr = 0.25")
    assert error is None, out
    [info] = _runtime.list_servers()  # a new embedded server, in this process, same store
    assert info["pid"] == os.getpid() and info["address"] != srv.address
    assert out == (f"dspex_notebook: the server at {srv.address} went away; started an embedded "
                   f"server at {info['address']} (default store {os.environ['DSPEX_DB']}) and "
                   "reconnected\nlr = 0.25 (version 1)\n")
    assert fresh(ip, "lr") == 0.25
    # unloading stops the server it started (the ip fixture checks nothing is left behind)


# ----------------------------------------------------------------------------------------------
# 7. magic errors are one line


@pytest.fixture
def typed(ext):
    var(ext, "register mode choice low --choices low,medium,high")
    var(ext, "register prompt string hello")
    var(ext, "register x float 0.5")
    var(ext, "register lst list [0]")
    return ext


def test_bare_words_for_text_variables(typed):
    with capture_output():
        var(typed, "mode = medium")
        var(typed, "prompt = Be concise.")
    assert fresh(typed, "mode") == "medium" and fresh(typed, "prompt") == "Be concise."


@pytest.mark.parametrize(("line", "expected"), [
    ("x = undefined_name", "%var x = undefined_name: name 'undefined_name' is not defined (EXPR "
                           "is a Python expression evaluated in the notebook; 'x' is a float "
                           "variable)"),
    ("lst = a = [1]", "%var lst = a = [1]: 'a = [1]' is not a Python expression (invalid "
                      "syntax); EXPR is evaluated in the notebook, e.g. 0.5, [1, 2] or the name "
                      "of a notebook variable"),
    ("mode = extreme", "ConstraintViolation: 'mode': value 'extreme' is not one of ['low', "
                       "'medium', 'high'] (constraint 'choices')"),
])
def test_magic_errors_are_one_line(typed, line, expected):
    error, out = shown(typed, f"%var {line}")
    assert isinstance(error, DspexMagicError)
    assert out == expected + "\n"
    assert fresh(typed, "x") == 0.5 and fresh(typed, "lst") == [0]


# ----------------------------------------------------------------------------------------------
# 9. %%var reads text by the variable's type


def test_cell_reads_values_by_type(typed):
    result = typed.run_cell_magic("var", "", "mode: high\nprompt: null\nx: 1.5\nlst: [on, 2]\n"
                                  "ver: {type: string, value: 1.10}\n"
                                  "switch: {type: choice, value: off, constraints: {choices: [on, off]}}\n"
                                  "when: {type: string, value: 2024-01-01}\n")
    assert result == {"ver": "registered", "switch": "registered", "when": "registered",
                      "mode": "updated", "prompt": "updated", "x": "updated", "lst": "updated"}
    got = {n: fresh(typed, n) for n in ("mode", "prompt", "x", "lst", "ver", "switch", "when")}
    assert got == {"mode": "high", "prompt": "null", "x": 1.5, "lst": [True, 2], "ver": "1.10",
                   "switch": "off", "when": "2024-01-01"}


def test_cell_errors_do_not_mention_python_arguments(ext):
    error, out = shown(ext, "%%var\nnewvar: null\n")
    assert isinstance(error, DspexMagicError)
    assert "type_hint" not in out and out.count("\n") == 1


# ----------------------------------------------------------------------------------------------
# 10. small ones


def test_assignment_confirms_briefly(typed):
    error, out = shown(typed, "%var x = 1.5")
    assert (error, out) == (None, "x = 1.5 (version 1)\n")


def test_duplicate_registration_hint_says_replace(typed):
    error, out = shown(typed, "%var register x float 0.7")
    assert isinstance(error, DspexMagicError)
    assert "--replace" in out and "replace=True" not in out and out.count("\n") == 1


def test_help_for_one_command(ext, capsys):
    var(ext, "help extra")
    assert capsys.readouterr().out == (
        "%var help: no command 'extra'; the commands are: list, info, register, del, watch, "
        "unwatch, stats, cache, optimize, status, stop, history, rollback, deps, export, import, "
        "restore, permissions, dspy, help, widget, connect (`%var help` shows them all)\n")
    var(ext, "help register")
    out = capsys.readouterr().out
    assert out.startswith("%var register NAME TYPE VALUE") and "--replace" in out
    assert "%var list" not in out
    var(ext, "help deps")
    assert capsys.readouterr().out.startswith("%var deps NAME")
    var(ext, "help export")
    assert capsys.readouterr().out.startswith("%var export [--format")
    var(ext, "help history")
    assert capsys.readouterr().out.startswith("%var history NAME")
    var(ext, "help permissions")
    out = capsys.readouterr().out
    assert out.startswith("%var permissions NAME [--set RULES]") and "session_pattern" in out


def test_completion_offers_subcommands_and_names_not_keywords(typed):
    completer = typed.Completer
    completer.use_jedi = True  # what a kernel uses: Jedi would add `in`, `is`, `and`, ...
    try:
        with provisionalcompleter():
            def offered(line: str) -> list[str]:
                return [c.text for c in completer.completions(line, len(line))]

            everything = offered("%var ")
            assert {"list", "info", "register", "help", "mode", "prompt", "x", "lst"} <= set(everything)
            assert not {"in", "is", "and", "if", "not", "or"} & set(everything)
            assert offered("%var i") == ["import", "info"]
            assert offered("%var in") == ["info"]
            assert offered("%var info m") == ["mode"]
    finally:
        completer.use_jedi = False


# ----------------------------------------------------------------------------------------------
# 11. features not built yet


@pytest.mark.parametrize("line", ["teleport", "teleport x"])
def test_planned_magics_say_so(ext, line, monkeypatch):
    from dspex_notebook import _planned

    # every spec command exists now: a stand-in entry exercises the mechanism
    monkeypatch.setitem(_planned.COMMANDS, "teleport", "teleportation")
    error, out = shown(ext, f"%var {line}")
    assert isinstance(error, DspexMagicError)
    word = line.split()[0]
    assert out.startswith(f"%var {word}: ") and "is not available yet" in out
    assert out.count("\n") == 1


def test_planned_session_methods_say_so(ext):
    error, out = shown(ext, "await session.sync_dspy_parameters(object())")
    assert type(error).__name__ == "Unsupported"
    assert "sync_dspy_parameters() (the DSPy bridge) is not available yet" in str(error)
