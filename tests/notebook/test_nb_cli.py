"""``dspex-notebook`` client commands (vars/get/set/list) and enable/disable, called in-process
through ``cli.main`` against a real server that publishes a runtime file in the test's runtime
dir. (The real-kernel tests run the same commands as a separate process.)"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import numpy as np
import pytest

from dspex_notebook import cli
from dspex_notebook.notebook import kernel_config
from dspex_notebook.testing import running_server, session_for


@pytest.fixture
def published():
    """A server of the default store (the test's DSPEX_DB) with variables in session
    ``default``, found through its runtime file."""
    with running_server(os.environ["DSPEX_DB"], write_runtime_file=True) as srv:
        async def fill() -> None:
            async with session_for(srv, "default") as ctx:
                await ctx.register_variable("temperature", "float", 0.7, {"min": 0.0, "max": 2.0})
                await ctx.register_variable("emb", "embedding",
                                            np.arange(4, dtype=np.float32) / 10, {"dimensions": 4})
                await ctx.register_variable("model", "choice", "gpt-4", {"choices": ["gpt-4", "o1"]})

        asyncio.run(fill())
        yield srv


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_get_json_of_an_embedding_is_a_json_list(published, capsys):
    code, out, _ = run(capsys, "get", "emb", "--json")
    assert code == 0
    emb = json.loads(out)["emb"]
    assert isinstance(emb, list) and emb == pytest.approx([0.0, 0.1, 0.2, 0.3], abs=1e-6)

    code, out, _ = run(capsys, "get", "temperature", "model", "--json")
    assert code == 0 and json.loads(out) == {"temperature": 0.7, "model": "gpt-4"}


def test_get_text_output(published, capsys):
    assert run(capsys, "get", "temperature", "--quiet") == (0, "0.7\n", "")
    code, out, _ = run(capsys, "get", "temperature", "model")
    assert code == 0 and out.splitlines() == ["temperature = 0.7", "model = 'gpt-4'"]


def test_vars_lists_the_session(published, capsys):
    code, out, _ = run(capsys, "vars")
    assert code == 0
    rows = [line.split()[0] for line in out.splitlines()[2:]]
    assert rows == ["temperature", "emb", "model"]
    code, out, _ = run(capsys, "vars", "temp*")
    assert code == 0 and [line.split()[0] for line in out.splitlines()[2:]] == ["temperature"]


def test_set_then_get(published, capsys):
    code, out, _ = run(capsys, "set", "temperature", "1.25")
    assert code == 0 and out.startswith("temperature = 1.25 (version 1)")
    assert run(capsys, "get", "temperature")[:2] == (0, "1.25\n")
    code, _, err = run(capsys, "set", "temperature", "5")
    assert code == 1 and "ConstraintViolation" in err and "temperature" in err
    code, _, err = run(capsys, "get", "nosuch")
    assert code == 1 and "VariableNotFoundError" in err and "nosuch" in err


def test_set_with_bad_yaml_exits_2(published, capsys):
    code, out, err = run(capsys, "set", "temperature", "[1, 2")
    assert code == 2 and out == ""
    assert err.splitlines()[-1].startswith("dspex-notebook set: VALUE is not valid YAML (line 1")
    assert run(capsys, "get", "temperature")[:2] == (0, "0.7\n")


def test_explicit_address_and_token_file(published, capsys, tmp_path, monkeypatch):
    token = tmp_path / "token"
    token.write_text(published.token + "\n")
    monkeypatch.setenv("DSPEX_RUNTIME_DIR", str(tmp_path / "empty"))  # no runtime file to find
    code, out, _ = run(capsys, "get", "temperature", "--address", published.address,
                       "--token-file", str(token))
    assert (code, out) == (0, "0.7\n")


def test_list_shows_servers_without_tokens(published, capsys):
    code, out, _ = run(capsys, "list", "--json")
    assert code == 0
    [info] = json.loads(out)
    assert info["address"] == published.address and "token" not in info
    code, out, _ = run(capsys, "list")
    assert code == 0 and out.startswith(published.address)


def test_get_without_a_server_exits_1_with_a_clear_message(capsys):
    code, out, err = run(capsys, "get", "temperature")
    assert code == 1 and out == ""
    assert err.startswith("dspex-notebook get: BridgeUnavailable: no dspex-notebook server found")


def test_list_without_servers(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0 and out.startswith("no running dspex-notebook servers (runtime dir:")


def test_set_enabled_merges_into_the_kernel_config(tmp_path):
    path = tmp_path / "etc" / "ipython" / "ipython_kernel_config.json"
    assert kernel_config.set_enabled(path, False) is False and not path.exists()
    assert kernel_config.set_enabled(path, True) is True
    assert json.loads(path.read_text()) == {"IPKernelApp": {"extensions": ["dspex_notebook"]}}
    assert kernel_config.set_enabled(path, True) is False  # idempotent

    # other settings and other extensions are kept
    config = {"IPKernelApp": {"extensions": ["autoreload", "dspex_notebook"], "pylab": "inline"},
              "InteractiveShell": {"autocall": 1}}
    path.write_text(json.dumps(config))
    assert kernel_config.set_enabled(path, False) is True
    assert json.loads(path.read_text()) == {
        "IPKernelApp": {"extensions": ["autoreload"], "pylab": "inline"},
        "InteractiveShell": {"autocall": 1}}
    assert kernel_config.set_enabled(path, True) is True
    assert json.loads(path.read_text())["IPKernelApp"]["extensions"] == ["autoreload", "dspex_notebook"]
    assert not list(path.parent.glob("*.tmp"))


def test_enable_disable_commands(tmp_path, monkeypatch, capsys):
    """``--sys-prefix`` writes under sys.prefix, the default under $IPYTHONDIR (both in tmp)."""
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "prefix"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    env_file = tmp_path / "prefix" / "etc" / "ipython" / "ipython_kernel_config.json"
    user_file = tmp_path / "ipython" / "profile_default" / "ipython_kernel_config.json"
    assert kernel_config.config_path(sys_prefix=True) == env_file
    assert kernel_config.config_path() == user_file

    code, out, _ = run(capsys, "enable", "--sys-prefix")
    assert code == 0 and out == f"{env_file}: every new IPython kernel loads dspex_notebook\n"
    assert json.loads(env_file.read_text())["IPKernelApp"]["extensions"] == ["dspex_notebook"]
    assert not user_file.exists()
    code, out, _ = run(capsys, "enable", "--sys-prefix")
    assert out.endswith("(unchanged)\n")

    assert run(capsys, "enable")[0] == 0
    assert json.loads(user_file.read_text())["IPKernelApp"]["extensions"] == ["dspex_notebook"]
    code, out, _ = run(capsys, "disable")
    assert code == 0 and "no longer loads" in out
    assert json.loads(user_file.read_text())["IPKernelApp"]["extensions"] == []
    assert run(capsys, "disable", "--sys-prefix")[0] == 0
    assert json.loads(env_file.read_text())["IPKernelApp"]["extensions"] == []
