"""Data survives a server restart on the same SQLite file: embedded and ``dspex-notebook serve``."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

import grpc
import numpy as np
import pytest

import dspex_notebook as dn
from dspex_notebook.server import EmbeddedServer

VALUES = {
    "f": ("float", 0.125, None),
    "nan": ("float", float("nan"), {"allow_nonfinite": True}),
    "i": ("integer", -(2**65), {"min": -(2**70)}),
    "s": ("string", "grüße \u2603", {"max_length": 20}),
    "b": ("boolean", False, None),
    "c": ("choice", "claude-3", {"choices": ["gpt-4", "claude-3"]}),
    "m": ("module", "ReAct", {"allowed_modules": ["Predict", "ReAct"]}),
    "e16": ("embedding", np.array([0.5, -1.0, 2.0], dtype=np.float16), None),
    "e64": ("embedding", np.linspace(0, 1, 1536), {"dimensions": 1536}),
    "t": ("tensor", np.arange(24, dtype=np.int64).reshape(2, 3, 4) - 12, {"shape": [2, None, 4]}),
    "tb": ("tensor", np.array([[True, False]]), None),
    "t0": ("tensor", np.array(7, dtype=np.uint64), None),
    "l": ("list", [1, "two", [3.0], {"four": None}], {"max_length": 4}),
    "d": ("dict", {"a": {"b": [1, 2]}, "7": True}, {"required_keys": ["a"]}),
}


def same(got, want) -> bool:
    if isinstance(want, np.ndarray):
        return (isinstance(got, np.ndarray) and got.dtype == want.dtype
                and got.shape == want.shape and np.array_equal(got, want))
    if isinstance(want, float) and want != want:
        return isinstance(got, float) and got != got
    return type(got) is type(want) and got == want


async def _write_everything(ctx) -> None:
    await ctx.register_variables([
        {"name": n, "type": t, "initial_value": v, "constraints": c, "metadata": {"n": n}}
        for n, (t, v, c) in VALUES.items()
    ])
    await ctx.set_variable("f", 0.25)
    await ctx.set_variable("f", 0.5)
    await ctx.update_variables({"i": 3, "l": ["x"]})


async def _read_everything(ctx) -> dict:
    return {v.name: v for v in await ctx.list_variables()}


async def test_embedded_restart_keeps_everything(tmp_path):
    db = tmp_path / "store.sqlite3"
    srv = EmbeddedServer(db, write_runtime_file=False).start()
    try:
        async with await dn.SessionContext.connect("restart", address=srv.address,
                                                   token=srv.token) as ctx:
            await _write_everything(ctx)
            before = await _read_everything(ctx)
            ping = await ctx.ping()
    finally:
        srv.stop()
    assert not srv.running

    srv2 = EmbeddedServer(db, write_runtime_file=False).start()
    try:
        assert srv2.store_id == ping["store_id"]
        async with await dn.SessionContext.connect("restart", address=srv2.address,
                                                   token=srv2.token) as ctx:
            ping2 = await ctx.ping()
            assert (ping2["store_id"], ping2["revision"]) == (ping["store_id"], ping["revision"])
            after = await _read_everything(ctx)
            assert list(after) == list(before)  # registration order too
            for name, var in before.items():
                again = after[name]
                assert same(again.value, var.value), name
                assert (again.id, again.type, again.version, again.mod_revision,
                        again.create_revision, again.constraints, again.metadata) == (
                    var.id, var.type, var.version, var.mod_revision, var.create_revision,
                    var.constraints, var.metadata), name
            assert after["f"].version == 2 and after["f"].value == 0.5
            assert after["i"].value == 3 and after["l"].value == ["x"]
            assert same(after["e16"].value, VALUES["e16"][1])
            # and it keeps working: revision continues from where it was
            await ctx.set_variable("f", 0.75)
            assert (await ctx.ping())["revision"] == ping["revision"] + 1
            with pytest.raises(dn.ConstraintViolation):  # constraints survived too
                await ctx.set_variable("c", "gemini")
    finally:
        srv2.stop()


def test_embedded_server_refuses_a_store_file_in_use(tmp_path):
    db = tmp_path / "store.sqlite3"
    with EmbeddedServer(db, write_runtime_file=False):
        with pytest.raises(dn.DspexError, match="in use"):
            EmbeddedServer(db, write_runtime_file=False).start()
    with EmbeddedServer(db, write_runtime_file=False) as again:  # free once stopped
        assert again.running


# ----------------------------------------------------------------------------------------------
# the standalone server as a real process

ADDRESS_RE = re.compile(r"serving .* on (\S+:\d+)")


async def _start_serve(*args: str, env: dict) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dspex_notebook", "serve", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )
    for _ in range(20):  # a few banner lines at most
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        if not line:
            err = (await proc.stderr.read()).decode()
            raise AssertionError(f"serve exited early ({proc.returncode}): {err}")
        match = ADDRESS_RE.search(line)
        if match:
            return proc, match.group(1)
    raise AssertionError("serve never printed its address")


async def _stop(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(proc.wait(), 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise


@pytest.mark.slow
async def test_cli_serve_restart(tmp_path):
    db = tmp_path / "cli.sqlite3"
    token_file = tmp_path / "token"
    token_file.write_text("  s3cret-token-for-tests \n")
    env = {**os.environ, "DSPEX_RUNTIME_DIR": str(tmp_path / "rt"), "PYTHONWARNINGS": "error"}
    args = ("--port", "0", "--db", str(db), "--token-file", str(token_file))

    proc, address = await _start_serve(*args, env=env)
    try:
        assert address.startswith("127.0.0.1:")
        runtime_files = list((tmp_path / "rt").glob("server-*.json"))
        assert len(runtime_files) == 1
        channel = grpc.aio.insecure_channel(address)
        try:
            wrong = dn.SessionContext("cli", channel, token="nope")
            with pytest.raises(dn.AuthenticationError):
                await wrong.initialize()
            ctx = await dn.SessionContext("cli", channel, token="s3cret-token-for-tests").initialize()
            await ctx.register_variable("x", "integer", 41)
            await ctx.set_variable("x", 42)
            await ctx.register_variable("emb", "embedding", np.arange(3, dtype=np.float32))
            ping = await ctx.ping()
        finally:
            await channel.close()
    finally:
        code = await _stop(proc)
    assert code == 0, (await proc.stderr.read()).decode()
    assert list((tmp_path / "rt").glob("server-*.json")) == []  # removed on a clean stop

    proc, address = await _start_serve(*args, env=env)
    try:
        async with await dn.SessionContext.connect("cli", address=address,
                                                   token="s3cret-token-for-tests") as ctx:
            assert await ctx.get_variable("x") == 42
            assert (await ctx.get_variable_info("x")).version == 1
            emb = await ctx.get_variable("emb")
            assert emb.dtype == np.float32 and emb.tolist() == [0.0, 1.0, 2.0]
            again = await ctx.ping()
            assert (again["store_id"], again["revision"]) == (ping["store_id"], ping["revision"])
    finally:
        assert await _stop(proc) == 0


async def test_cli_serve_refuses_public_bind_without_token(tmp_path):
    env = {**os.environ, "DSPEX_RUNTIME_DIR": str(tmp_path / "rt")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dspex_notebook", "serve", "--host", "0.0.0.0", "--port", "0",
        "--memory", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode not in (0, None)
    message = err.decode()
    assert "0.0.0.0" in message and "--token-file" in message and "not loopback" in message
    assert b"serving" not in out
    assert not (tmp_path / "rt").exists() or list((tmp_path / "rt").iterdir()) == []


async def test_cli_serve_reports_a_locked_store(tmp_path):
    db = tmp_path / "busy.sqlite3"
    with EmbeddedServer(db, write_runtime_file=False):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dspex_notebook", "serve", "--port", "0", "--db", str(db),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "DSPEX_RUNTIME_DIR": str(tmp_path / "rt")},
        )
        _out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert "in use" in err.decode()
