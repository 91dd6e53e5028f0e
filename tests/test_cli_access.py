"""``dspex-notebook serve --principals FILE`` and ``dspex-notebook permissions`` (real server
processes and in-process CLI runs, loopback only)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

import dspex_notebook as dn
from dspex_notebook import cli
from dspex_notebook._wire.client import insecure_channel

ALICE, BOB = "alice-token-0123456789", "bob-token-0123456789ab"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def write_principals(tmp_path):
    (tmp_path / "alice.token").write_text(ALICE)
    (tmp_path / "bob.token").write_text(BOB)
    path = tmp_path / "principals.yaml"
    path.write_text("principals:\n"
                    "  - {name: alice, token_file: alice.token, sessions: ['alice_*']}\n"
                    "  - {name: bob, token_file: bob.token, sessions: ['bob_*']}\n")
    return path


async def setup_sessions(address: str) -> str:
    a = dn.SessionContext("alice_1", insecure_channel(address), token=ALICE, close_channel=True,
                          coherent_cache=False)
    b = dn.SessionContext("bob_1", insecure_channel(address), token=BOB, close_channel=True,
                          coherent_cache=False)
    try:
        await a.initialize()
        await b.initialize()
        with pytest.raises(dn.AccessDenied):  # bob may not create alice's kind of session
            await dn.SessionContext("alice_2", insecure_channel(address), token=BOB,
                                    close_channel=True).initialize()
        return await a.register_variable("temperature", "float", 0.7)
    finally:
        await a.close()
        await b.close()


def test_serve_with_principals_and_the_permissions_command(tmp_path, capsys):
    path = write_principals(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "dspex_notebook", "serve", "--port", "0",
                             "--memory", "--principals", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(4)]
        assert "serving" in lines[0], lines
        assert lines[3].startswith("principals: alice, bob (the runtime file holds alice's"), lines
        address = lines[0].split(" on ")[1].strip()
        var_id = asyncio.run(setup_sessions(address))
        alice = ["--address", address, "--token-file", str(tmp_path / "alice.token"),
                 "--session", "alice_1", "-q"]
        bob = ["--address", address, "--token-file", str(tmp_path / "bob.token"),
               "--session", "bob_1", "-q"]

        code, out, err = run(capsys, "get", var_id, *bob)
        assert code == 1 and "no 'read' permission" in err and err.count("\n") == 1
        code, out, _ = run(capsys, "permissions", "temperature", *alice)
        assert code == 0 and out.startswith("temperature: no rules")
        code, out, err = run(capsys, "permissions", "temperature", "--set",
                             "[{session_pattern: 'bob_*', permissions: [read, observe]}]", *alice)
        assert code == 0, err
        assert "bob_*" in out and "read, observe" in out
        code, out, _ = run(capsys, "permissions", "temperature", "--json", *alice)
        assert json.loads(out) == [{"session_pattern": "bob_*", "permissions": ["read", "observe"],
                                    "conditions": {}}]
        assert run(capsys, "get", var_id, *bob)[:2] == (0, "0.7\n")
        code, out, _ = run(capsys, "permissions", var_id, "--check", "read", *bob)
        assert code == 0 and out.startswith(f"{var_id}: read allowed (rule 0")
        code, out, _ = run(capsys, "permissions", var_id, "--check", "write", *bob)
        assert code == 3 and "write denied" in out
        code, out, err = run(capsys, "set", var_id, "0.1", *bob)
        assert code == 1 and "no 'read' permission" not in err and "permission" in err
        code, out, err = run(capsys, "permissions", var_id, "--set", "[]", *bob)
        assert code == 1 and "only the owning session" in err and err.count("\n") == 1
        code, out, err = run(capsys, "permissions", "temperature", "--set", "[{a: [}", *alice)
        assert code == 1 and "not valid YAML" in err and err.count("\n") == 1
    finally:
        proc.terminate()
        proc.communicate(timeout=60)


@pytest.mark.parametrize("text, expected", [
    ("principals: []", "non-empty list"),
    ("principals:\n  - {name: a, token: short, sessions: ['*']}", "a token needs 16-4096"),
    ("principals:\n  - {name: a, token: aaaaaaaaaaaaaaaaaaaa}", "sessions must be a non-empty"),
    ("principals:\n  - {name: a, token: aaaaaaaaaaaaaaaaaaaa, sessions: ['*'], admin: true}",
     "unknown key 'admin'"),
    ("principals:\n  - {name: a, token: aaaaaaaaaaaaaaaaaaaa, sessions: ['*']}\n"
     "  - {name: b, token: aaaaaaaaaaaaaaaaaaaa, sessions: ['*']}", "tokens must differ"),
    ("principals:\n  - {name: 'a b', token: aaaaaaaaaaaaaaaaaaaa, sessions: ['*']}",
     "name must be"),
    ("principals:\n  - {name: a, token_file: missing.token, sessions: ['*']}", "does not exist"),
    ("!!python/object/apply:os.system ['echo hi']", "not valid YAML"),
    ("principals: [", "not valid YAML"),
])
def test_bad_principals_files_are_one_line(tmp_path, capsys, text, expected):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    code, out, err = run(capsys, "serve", "--memory", "--port", "0", "--principals", str(path))
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith("dspex-notebook serve: ") and expected in err, err


def test_principals_and_token_file_exclude_each_other(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["serve", "--memory", "--principals", "p.yaml", "--token-file", "t"])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
