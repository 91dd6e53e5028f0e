"""The backends the server-level suites run against: memory, SQLite and etcd (a real etcd
process, ``etcd_cluster`` in conftest.py; each server gets a key prefix of its own)."""

from __future__ import annotations

import uuid

from dspex_notebook.testing import running_server

KINDS = ["memory", "sqlite", "etcd"]


def server_options(kind: str, request, tmp_path, name: str = "store.sqlite3") -> dict:
    """``running_server`` keyword arguments for a fresh store of ``kind``."""
    if kind == "memory":
        return {"db": ":memory:"}
    if kind == "sqlite":
        return {"db": tmp_path / name}
    etcd = request.getfixturevalue("etcd_cluster")
    return {"etcd": etcd.endpoints, "etcd_prefix": f"/t-{uuid.uuid4().hex[:12]}/"}


def server_of(kind: str, request, tmp_path, **options):
    """A running server (context manager) over a fresh store of ``kind``."""
    return running_server(**server_options(kind, request, tmp_path), **options)


def backend_of(kind: str, request, tmp_path, name: str = "store.sqlite3"):
    """A fresh :class:`Backend` of ``kind`` (for tests that drive a :class:`Store` directly)."""
    from dspex_notebook.server.backends import MemoryBackend, SQLiteBackend

    if kind == "memory":
        return MemoryBackend()
    if kind == "sqlite":
        return SQLiteBackend(tmp_path / name)
    from dspex_notebook.server.backends.etcd import EtcdBackend

    opts = server_options(kind, request, tmp_path)
    return EtcdBackend(opts["etcd"], opts["etcd_prefix"])
