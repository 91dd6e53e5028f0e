"""Real-browser fixtures: one JupyterLab server per module (127.0.0.1, temporary config, no
token), Debian's chromium driven by Playwright (``executable_path``; never ``playwright
install``), and a dspex server in this process that the notebooks' kernels connect to
(``DSPEX_ADDRESS``/``DSPEX_TOKEN`` in their environment), so the test is "another client".

A missing chromium or playwright fails in CI and skips locally (``require``). On failure each
page's screenshot goes to ``build/browser/<test name>/``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from br_helpers import Other

from dspex_notebook.testing import running_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
ROOT = Path(__file__).resolve().parents[2]


def _require_browser() -> None:
    require = _tests_conftest().require

    try:
        import playwright.sync_api  # noqa: F401
        have_playwright = True
    except ImportError:
        have_playwright = False
    require(have_playwright, "playwright (the dev extra)")
    require(os.path.exists(CHROMIUM), f"{CHROMIUM} (apt-get install chromium)")
    require(shutil.which("jupyter-lab", path=os.path.dirname(sys.executable)) is not None
            or _has_module("jupyterlab"), "jupyterlab (the dev extra)")


def _tests_conftest() -> Any:
    """tests/conftest.py by path (every conftest is a module named ``conftest``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("dspex_tests_root_conftest",
                                                  ROOT / "tests" / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dspex_server() -> Iterator[Any]:
    with running_server() as srv:
        yield srv


class Lab:
    """A running ``jupyter lab`` and the folder it serves."""

    def __init__(self, base: str, root: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.base, self.root, self.proc, self.log = base, root, proc, log

    def write_notebook(self, name: str, cells: list[str]) -> str:
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
        nbformat.write(nb, self.root / name)
        return name

    def api(self, method: str, path: str) -> Any:
        req = urllib.request.Request(f"{self.base}{path}", method=method)
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        for sess in self.api("GET", "/api/sessions") or []:
            try:
                self.api("DELETE", f"/api/sessions/{sess['id']}")
            except Exception:
                pass


@pytest.fixture(scope="module")
def lab(tmp_path_factory: Any, dspex_server: Any) -> Iterator[Lab]:
    _require_browser()
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "root"
    root.mkdir()
    port = _free_port()
    settings = tmp / "cfg" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"checkForUpdates": False, "fetchNews": "false"}))
    env = dict(os.environ, JUPYTER_PLATFORM_DIRS="1", JUPYTER_CONFIG_DIR=str(tmp / "cfg"),
               JUPYTER_DATA_DIR=str(tmp / "data"), JUPYTER_RUNTIME_DIR=str(tmp / "rt"),
               IPYTHONDIR=str(tmp / "ipy"), DSPEX_ADDRESS=dspex_server.address,
               DSPEX_TOKEN=dspex_server.token, PYTHONUNBUFFERED="1")
    env.pop("DSPEX_TOKEN_FILE", None)
    log = tmp / "lab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}",
             "--port-retries=0", "--ServerApp.ip=127.0.0.1", "--IdentityProvider.token=",
             "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
             f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
             "--allow-root", "--LabApp.news_url=None",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=root)
    base = f"http://127.0.0.1:{port}"
    server = Lab(base, root, proc, log)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                server.api("GET", "/api/status")
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"jupyter lab did not start:\n{log.read_text()[-3000:]}") from None
                time.sleep(0.25)
        yield server
    finally:
        try:
            server.shutdown_kernels()
        except Exception:
            pass
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def browser(lab: Lab) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def pages(browser: Any, lab: Lab, request: Any) -> Iterator[Any]:
    """``open(notebook) -> page`` (a fresh context each, so two pages are two users); on
    failure, screenshots go to build/browser/<test>/."""
    opened: list[Any] = []

    def open_notebook(name: str) -> Any:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.goto(f"{lab.base}/lab/tree/{name}?reset")
        page.wait_for_function(
            "() => window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel"
            "?.status === 'idle'", timeout=60_000)
        opened.append(page)
        return page

    yield open_notebook
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        out = ROOT / "build" / "browser" / request.node.name
        out.mkdir(parents=True, exist_ok=True)
        for i, page in enumerate(opened):
            try:
                page.screenshot(path=str(out / f"page{i}.png"), full_page=True)
            except Exception:
                pass
        print(f"screenshots: {out}")
    for page in opened:
        try:
            page.context.close()
        except Exception:
            pass
    lab.shutdown_kernels()


@pytest.fixture
def other(dspex_server: Any, request: Any) -> Iterator[Other]:
    client = Other(dspex_server, f"b-{request.node.name}"[:100])
    yield client
    client.close()
