"""SQLite backend: the durable default store of the embedded and standalone server.

Durability settings (asserted by tests): ``journal_mode=WAL`` and ``synchronous=FULL``, so a
commit that returned survives a process crash *and* a power loss. Each :class:`Commit` is one
``BEGIN IMMEDIATE … COMMIT`` transaction that writes the variable rows, the history rows and the
store-wide revision together.

One server owns a store file at a time: the backend takes an exclusive ``flock`` on
``<db>.lock`` and refuses to open a file another live server holds (two servers each keeping
their own in-memory state over one file would silently lose writes).
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import uuid

from ..._errors import DspexError
from .base import Backend, Commit, HistoryRow, SessionRow, Snapshot, VariableRow

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY, principal TEXT NOT NULL, metadata_json TEXT NOT NULL,
    created_at REAL NOT NULL, last_access REAL NOT NULL);
CREATE TABLE IF NOT EXISTS variables (
    id TEXT PRIMARY KEY, session_id TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL,
    type_url TEXT NOT NULL, data BLOB NOT NULL, binary BLOB NOT NULL,
    constraints_json TEXT NOT NULL, metadata_json TEXT NOT NULL, source TEXT NOT NULL,
    version INTEGER NOT NULL, mod_revision INTEGER NOT NULL, create_revision INTEGER NOT NULL,
    updated_at REAL NOT NULL, UNIQUE (session_id, name));
CREATE TABLE IF NOT EXISTS history (
    var_id TEXT NOT NULL, session_id TEXT NOT NULL, version INTEGER NOT NULL,
    revision INTEGER NOT NULL, op TEXT NOT NULL, type_url TEXT NOT NULL, data BLOB NOT NULL,
    binary BLOB NOT NULL, ts REAL NOT NULL, changed_by TEXT NOT NULL, metadata_json TEXT NOT NULL,
    PRIMARY KEY (var_id, version, revision));
CREATE INDEX IF NOT EXISTS history_session ON history (session_id);
"""


class StoreLocked(DspexError, RuntimeError):
    """Another running server already owns this store file."""

    kind = "StoreLocked"


class SQLiteBackend(Backend):
    """A single-file durable store (WAL, synchronous=FULL, one transaction per write)."""

    name = "sqlite"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.path.abspath(os.fspath(path))  # runtime files compare absolute paths
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise StoreLocked(
                f"store {self.path!r} is in use by another dspex-notebook server; "
                "connect to that server (see `dspex-notebook list`) or use another --db"
            ) from None
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=OFF")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key='store_id'").fetchone()
        if row is None:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [("store_id", uuid.uuid4().hex), ("revision", "0"),
                 ("schema_version", str(SCHEMA_VERSION))],
            )
            self._db.execute("COMMIT")

    def pragma(self, name: str) -> str:
        """Current value of a PRAGMA (used by tests to assert the durability settings)."""
        return str(self._db.execute(f"PRAGMA {name}").fetchone()[0])

    def load(self) -> Snapshot:
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        sessions = [
            SessionRow(sid, principal, json.loads(md), created, last)
            for sid, principal, md, created, last in self._db.execute(
                "SELECT session_id, principal, metadata_json, created_at, last_access FROM sessions"
            )
        ]
        variables = [
            VariableRow(
                r[0], r[1], r[2], r[3], r[4], bytes(r[5]), bytes(r[6]), r[7], json.loads(r[8]),
                r[9], r[10], r[11], r[12], r[13],
            )
            for r in self._db.execute(
                "SELECT id, session_id, name, type, type_url, data, binary, constraints_json,"
                " metadata_json, source, version, mod_revision, create_revision, updated_at"
                " FROM variables ORDER BY create_revision, rowid"
            )
        ]
        return Snapshot(meta["store_id"], int(meta["revision"]), sessions, variables)

    def commit(self, commit: Commit) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for sid in commit.session_deletes:
                db.execute("DELETE FROM sessions WHERE session_id=?", (sid,))
                db.execute("DELETE FROM variables WHERE session_id=?", (sid,))
                db.execute("DELETE FROM history WHERE session_id=?", (sid,))
            db.executemany(
                "INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?, ?)",
                [(s.session_id, s.principal, json.dumps(s.metadata), s.created_at, s.last_access)
                 for s in commit.session_upserts],
            )
            db.executemany("DELETE FROM variables WHERE id=?", [(v,) for v in commit.variable_deletes])
            # An upsert keeps the row (and its rowid: the registration order within a batch);
            # INSERT OR REPLACE would re-insert it, and silently drop any other row that
            # clashes with UNIQUE(session_id, name) instead of failing the transaction.
            db.executemany(
                "INSERT INTO variables VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE"
                " SET session_id=excluded.session_id, name=excluded.name, type=excluded.type,"
                " type_url=excluded.type_url, data=excluded.data, binary=excluded.binary,"
                " constraints_json=excluded.constraints_json,"
                " metadata_json=excluded.metadata_json, source=excluded.source,"
                " version=excluded.version, mod_revision=excluded.mod_revision,"
                " create_revision=excluded.create_revision, updated_at=excluded.updated_at",
                [(v.id, v.session_id, v.name, v.type, v.type_url, v.data, v.binary,
                  v.constraints_json, json.dumps(v.metadata), v.source, v.version,
                  v.mod_revision, v.create_revision, v.updated_at)
                 for v in commit.variable_upserts],
            )
            db.executemany(
                "INSERT INTO history VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [(h.var_id, h.session_id, h.version, h.revision, h.op, h.type_url, h.data,
                  h.binary, h.ts, h.changed_by, json.dumps(h.metadata))
                 for h in commit.history],
            )
            db.execute("UPDATE meta SET value=? WHERE key='revision'", (str(commit.revision),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def history(self, var_id: str, limit: int = 100, offset: int = 0) -> list[HistoryRow]:
        rows = self._db.execute(
            "SELECT var_id, session_id, version, revision, op, type_url, data, binary, ts,"
            " changed_by, metadata_json FROM history WHERE var_id=?"
            " ORDER BY revision DESC LIMIT ? OFFSET ?",
            (var_id, limit, offset),
        ).fetchall()
        return [
            HistoryRow(r[0], r[1], r[2], r[3], r[4], r[5], bytes(r[6]), bytes(r[7]), r[8], r[9],
                       json.loads(r[10]))
            for r in rows
        ]

    def touch_sessions(self, last_access: dict[str, float]) -> None:
        self._db.executemany(
            "UPDATE sessions SET last_access=? WHERE session_id=?",
            [(ts, sid) for sid, ts in last_access.items()],
        )

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None  # type: ignore[assignment]
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
