"""Fixtures for the notebook layer: one real IPython shell per module, the extension loaded
against the test's own store, and a check that nothing (threads, runtime files) outlives a test.

The autouse ``_isolated_paths`` fixture of ``tests/conftest.py`` points DSPEX_DB and
DSPEX_RUNTIME_DIR at per-test temporary paths, so the embedded server that ``%load_ext`` starts
uses a fresh SQLite file and publishes its runtime file where only this test looks.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from nb_helpers import EXT, close_ipython_loop, dspex_threads, runtime_files


@pytest.fixture(scope="module")
def ipshell(tmp_path_factory) -> Iterator[Any]:
    """A real ``InteractiveShell`` (no terminal, no history file, IPYTHONDIR in tmp)."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    saved = (sys.modules.get("__main__"), sys.displayhook, sys.excepthook)
    config = Config()
    config.HistoryAccessor.enabled = False  # no sqlite history file, no saving thread
    config.InteractiveShell.colors = "nocolor"
    config.IPCompleter.use_jedi = False  # the %var hook is what is tested; jedi is slow
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IPYTHONDIR", str(tmp_path_factory.mktemp("ipythondir")))
        InteractiveShell.clear_instance()
        shell = InteractiveShell.instance(config=config)
        try:
            yield shell
        finally:
            if EXT in shell.extension_manager.loaded:
                shell.extension_manager.unload_extension(EXT)
            atexit.unregister(shell.atexit_operations)
            InteractiveShell.clear_instance()
            sys.modules["__main__"], sys.displayhook, sys.excepthook = saved
            close_ipython_loop()


@pytest.fixture
def ip(ipshell) -> Iterator[Any]:
    """The module's shell, extension *not* loaded; afterwards: unloaded, config reset, and no
    dspex thread or runtime file left behind by the test."""
    from dspex_notebook.notebook import extension

    before = set(threading.enumerate())
    assert EXT not in ipshell.extension_manager.loaded
    try:
        yield ipshell
    finally:
        if EXT in ipshell.extension_manager.loaded:
            ipshell.extension_manager.unload_extension(EXT)
        extension._shutdown()  # a load that failed half-way (idempotent)
        ipshell.config.pop("DspexMagics", None)
        for name in ("session", "dx"):
            ipshell.user_ns.pop(name, None)
        leaked = dspex_threads(before)
        files = runtime_files()
    assert not leaked, f"threads left running: {leaked}"
    assert not files, f"runtime files left behind: {files}"


@pytest.fixture
def ext(ip) -> Any:
    """The shell with ``%load_ext dspex_notebook`` done (embedded server on the test's store)."""
    ip.run_line_magic("load_ext", EXT)
    return ip


@pytest.fixture
def kernel_env(tmp_path, monkeypatch) -> dict[str, str]:
    """The environment for kernels and CLI processes: the test's DSPEX_DB / DSPEX_RUNTIME_DIR
    (from the autouse fixture), a private IPYTHONDIR, and Jupyter's own files in tmp."""
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter-runtime"))  # connection files
    env = dict(os.environ)
    env.update(IPYTHONDIR=str(tmp_path / "ipython"), JUPYTER_PLATFORM_DIRS="1",
               JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
               JUPYTER_DATA_DIR=str(tmp_path / "jupyter-data"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"))
    return env
