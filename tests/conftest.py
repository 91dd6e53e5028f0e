"""Shared fixtures: real servers on 127.0.0.1:0, isolated runtime dir and default store."""

from __future__ import annotations

import os

import pytest

from dspex_notebook.testing import running_server, session_for

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(available: bool, what: str) -> None:
    """Skip locally when a service is missing; in CI (CI=true) fail instead."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but is not available")
    pytest.skip(f"{what} is not available")


@pytest.fixture(autouse=True)
def _isolated_paths(tmp_path_factory, monkeypatch):
    """Never touch the user's real store or runtime files."""
    base = tmp_path_factory.mktemp("dspex-home")
    monkeypatch.setenv("DSPEX_RUNTIME_DIR", str(base / "runtime"))
    monkeypatch.setenv("DSPEX_DB", str(base / "store.sqlite3"))
    for var in ("DSPEX_ADDRESS", "DSPEX_TOKEN", "DSPEX_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="session")
def server():
    """One in-memory server shared by the tests that only need a fresh session."""
    with running_server() as srv:
        yield srv


@pytest.fixture
async def session(server, request):
    """A fresh SessionContext (its own session id) on the shared server."""
    async with session_for(server, f"t-{request.node.name}"[:200]) as ctx:
        yield ctx
        await ctx.cleanup()


@pytest.fixture
def requires():
    """:func:`require` as a fixture, for test modules that cannot import this conftest by
    name (a ``tests/notebook/conftest.py`` may shadow it in a mixed run)."""
    return require


@pytest.fixture(scope="session")
def etcd_cluster():
    """One real etcd process (tmpfs data) for the whole run; each test takes a key prefix of
    its own. Skips locally without the ``etcd`` binary; in CI that fails."""
    from dspex_notebook.server.etcd_local import LocalEtcd, etcd_binary

    require(etcd_binary() is not None, "etcd (Debian package etcd-server)")
    with LocalEtcd(in_memory=True) as etcd:
        yield etcd
