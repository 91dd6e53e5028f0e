"""Real kernels: jupyter_client starts ipykernel (this venv's python) with the test's store and
runtime dir; cells load the extension, run magics and await the session; the kernel restarts;
a second process (the CLI) reaches the kernel's embedded server; the quickstart notebook runs.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from typing import Any

import pytest

from dspex_notebook import _runtime
from dspex_notebook.notebook import kernel_config

REPO = pathlib.Path(__file__).resolve().parents[2]
TIMEOUT = 60


class Kernel:
    """A started kernel and a blocking client; ``run`` executes a cell and returns its outputs."""

    def __init__(self, env: dict[str, str]) -> None:
        from jupyter_client.manager import start_new_kernel

        self.km, self.kc = start_new_kernel(kernel_name="python3", env=env, startup_timeout=TIMEOUT)

    def execute(self, code: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        outputs: list[dict[str, Any]] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] in ("stream", "execute_result", "display_data", "error"):
                outputs.append({"type": msg["msg_type"], **msg["content"]})

        reply = self.kc.execute_interactive(code, timeout=TIMEOUT, output_hook=hook)
        return reply["content"], outputs

    def run(self, code: str) -> list[dict[str, Any]]:
        """Execute ``code``; fail with the kernel's traceback if it raised."""
        content, outputs = self.execute(code)
        if content["status"] != "ok":
            tb = "\n".join(content.get("traceback", []))
            pytest.fail(f"cell failed: {code!r}\n{content.get('ename')}: {content.get('evalue')}\n{tb}")
        return outputs

    def value(self, code: str) -> Any:
        """Evaluate an expression in the kernel; its ``repr`` parsed back with ``eval``."""
        [result] = [o for o in self.run(code) if o["type"] == "execute_result"]
        return eval(result["data"]["text/plain"])  # noqa: S307 - our own test kernel's reprs

    def restart(self) -> None:
        self.km.restart_kernel(now=False)
        self.kc.wait_for_ready(timeout=TIMEOUT)

    def shutdown(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=False)


@pytest.fixture
def kernel(kernel_env):
    k = Kernel(kernel_env)
    try:
        yield k
    finally:
        k.shutdown()
    assert server_files() == []  # a clean kernel shutdown stops its embedded server


def server_files() -> list[str]:
    folder = _runtime.runtime_dir()
    return sorted(p.name for p in folder.glob("server-*.json")) if folder.is_dir() else []


def test_kernel_magics_await_restart_and_no_orphans(kernel, kernel_env):
    assert kernel.value("import sys; sys.executable") == sys.executable
    assert kernel.value("import dspex_notebook; dspex_notebook.__file__").startswith(str(REPO))

    kernel.run("%load_ext dspex_notebook")
    kernel.run("%var register lr float 0.1 --min 0 --max 1")
    kernel.run("%var lr = 0.5")
    assert kernel.value("%var lr") == 0.5
    kernel.run("%%var\nmax_tokens: {type: integer, value: 256, constraints: {min: 1}}\nlr: 0.25\n")
    [table] = [o for o in kernel.run("%var") if o["type"] == "execute_result"]
    assert "max_tokens" in table["data"]["text/plain"] and "<table" in table["data"]["text/html"]

    # SessionContext methods awaited in cells (top-level await on the kernel's loop)
    assert kernel.value("await session.get_variable('lr', bypass_cache=True)") == 0.25
    assert kernel.value("[v.name for v in await session.list_variables()]") == ["lr", "max_tokens"]
    assert kernel.value("(await session.get_variable_info('lr')).version") == 2
    assert kernel.value("await session.update_variables({'lr': 0.75, 'max_tokens': 512})") == {
        "lr": True, "max_tokens": True}

    # a domain error in a kernel is one line, not a traceback
    content, _ = kernel.execute("%var nosuch")
    assert content["status"] == "error" and content["ename"] == "DspexMagicError"
    assert content["traceback"] == [
        "VariableNotFoundError: Variable not found: 'nosuch' in session 'default'"]

    # the embedded server published a runtime file for the kernel's process
    kernel_pid = kernel.value("import os; os.getpid()")
    old_file = f"server-{kernel_pid}-"
    assert [f for f in server_files() if f.startswith(old_file)]

    # make new kernels load the extension by themselves (what `dspex-notebook enable` does)
    config = pathlib.Path(kernel_env["IPYTHONDIR"]) / "profile_default" / "ipython_kernel_config.json"
    assert kernel_config.set_enabled(config, True)

    kernel.restart()
    assert not [f for f in server_files() if f.startswith(old_file)]  # listed before any cleanup
    new_pid = kernel.value("import os; os.getpid()")
    assert new_pid != kernel_pid and not _runtime._alive(kernel_pid)  # the old kernel is gone
    [info] = _runtime.list_servers(_runtime.runtime_dir())
    assert info["pid"] == new_pid  # only the new kernel's server is running

    # the new kernel loaded the extension at startup and reads what was written before
    assert kernel.value("type(session).__name__") == "NotebookSession"
    assert kernel.value("await session.get_variables(['lr', 'max_tokens'])") == {
        "lr": 0.75, "max_tokens": 512}
    assert kernel.value("%var lr") == 0.75

    kernel.run("%unload_ext dspex_notebook")
    assert kernel.value("import threading; [t.name for t in threading.enumerate() "
                        "if t.name.startswith('dspex')]") == []
    assert server_files() == []
    assert kernel.value("'session' in globals()") is False


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dspex_notebook", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=TIMEOUT)


def test_second_process_reaches_the_kernel_server(kernel, kernel_env):
    kernel.run("import numpy as np\n%load_ext dspex_notebook")
    kernel.run("%var register lr float 0.1 --min 0 --max 1")
    kernel.run("%var register emb embedding np.linspace(0, 1, 3, dtype=np.float32)")
    kernel_pid = kernel.value("import os; os.getpid()")

    listed = cli(kernel_env, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [info] = json.loads(listed.stdout)
    assert info["pid"] == kernel_pid and "token" not in info

    got = cli(kernel_env, "get", "lr")
    assert (got.returncode, got.stdout) == (0, "0.1\n"), got.stderr
    got = cli(kernel_env, "get", "emb", "--json")
    assert got.returncode == 0 and json.loads(got.stdout) == {"emb": [0.0, 0.5, 1.0]}
    shown = cli(kernel_env, "vars")
    assert shown.returncode == 0 and [r.split()[0] for r in shown.stdout.splitlines()[2:]] == ["lr", "emb"]

    changed = cli(kernel_env, "set", "lr", "0.75")
    assert changed.returncode == 0, changed.stderr
    assert kernel.value("await session.get_variable('lr', bypass_cache=True)") == 0.75

    refused = cli(kernel_env, "set", "lr", "7")
    assert refused.returncode == 1 and "ConstraintViolation" in refused.stderr
    assert kernel.value("await session.get_variable('lr', bypass_cache=True)") == 0.75


def test_quickstart_notebook_runs_without_errors(kernel_env):
    """`make demo`: the notebook runs on a fresh store of its own, never the user's default."""
    default_store = pathlib.Path(kernel_env["DSPEX_DB"])
    done = subprocess.run(
        [sys.executable, "scripts/run_notebook.py", "notebooks/quickstart.ipynb", "--timeout", "60"],
        env=kernel_env, cwd=REPO, capture_output=True, text=True, timeout=150,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "all cells ran without errors" in done.stdout
    assert server_files() == []  # the kernel's embedded server went away with it
    assert not default_store.exists()  # the user's default store was not touched
    [line] = [ln for ln in done.stdout.splitlines() if ln.startswith("dspex_notebook: session")]
    used = line.split("store ")[-1].rstrip(")")
    assert line.startswith("dspex_notebook: session 'quickstart' on 127.0.0.1:")
    assert used != str(default_store) and not pathlib.Path(used).exists()  # fresh, then removed


def test_second_kernel_survives_the_first_kernels_shutdown(kernel_env):
    """Kernel 2 uses kernel 1's embedded server; when kernel 1 shuts down, kernel 2's next call
    starts a server for the same store, says so in one line, and carries on."""
    first, second = Kernel(kernel_env), Kernel(kernel_env)
    try:
        [loaded] = first.run("%load_ext dspex_notebook")
        first_address = loaded["text"].split(" on ")[1].split()[0]
        first.run("%var register lr float 0.1 --min 0 --max 1")
        [loaded] = second.run("%load_ext dspex_notebook")
        assert loaded["text"] == (f"dspex_notebook: session 'default' on {first_address} "
                                  f"(default store {kernel_env['DSPEX_DB']})\n")
        assert second.value("%var lr") == 0.1
    finally:
        first.shutdown()
    try:
        # one or several stream messages (the IO thread's line and the cell's may be flushed apart)
        said = "".join(o["text"] for o in second.run("%var lr = 0.5") if o["type"] == "stream")
        lines = said.splitlines()
        assert lines[0].startswith(f"dspex_notebook: the server at {first_address} went away; "
                                   "started an embedded server at 127.0.0.1:")
        assert lines[0].endswith(f"(default store {kernel_env['DSPEX_DB']}) and reconnected")
        assert lines[1:] == ["lr = 0.5 (version 1)"]
        assert second.value("await session.get_variable('lr', bypass_cache=True)") == 0.5
        [info] = _runtime.list_servers(_runtime.runtime_dir())
        assert info["pid"] == second.value("import os; os.getpid()")

        # completion in a real kernel (Jedi on): sub-commands and names, no Python keywords
        reply = second.kc.complete("%var ", 5, reply=True, timeout=TIMEOUT)["content"]
        assert {"list", "register", "help", "lr"} <= set(reply["matches"])
        assert not {"in", "is", "and", "not", "or", "if"} & set(reply["matches"])
    finally:
        second.shutdown()
    assert server_files() == []  # the server kernel 2 started went away with it
