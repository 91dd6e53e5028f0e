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
from .base import (
    Backend,
    Commit,
    CompareFailed,
    DocRow,
    HistoryRow,
    RunRow,
    SessionRow,
    Snapshot,
    StoredVariable,
    TrialRow,
    compacted_error,
    doc_compare_failed,
)

SCHEMA_VERSION = 3

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
    name TEXT NOT NULL DEFAULT '', type TEXT NOT NULL DEFAULT '',
    constraints_json TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (var_id, version, revision));
CREATE INDEX IF NOT EXISTS history_session ON history (session_id);
CREATE INDEX IF NOT EXISTS history_revision ON history (revision);
CREATE TABLE IF NOT EXISTS optimizations (
    id TEXT PRIMARY KEY, session_id TEXT NOT NULL, var_id TEXT NOT NULL, doc_json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    run_id TEXT NOT NULL, iteration INTEGER NOT NULL, doc_json TEXT NOT NULL,
    PRIMARY KEY (run_id, iteration));
CREATE TABLE IF NOT EXISTS docs (
    kind TEXT NOT NULL, key TEXT NOT NULL, session_id TEXT NOT NULL, doc_json TEXT NOT NULL,
    mod_revision INTEGER NOT NULL, PRIMARY KEY (kind, key));
CREATE INDEX IF NOT EXISTS docs_session ON docs (session_id);
"""

# Schema 1 -> 2: the change log also records name, type and constraints (watch resume and
# history reads rebuild events from it alone). Old rows get them from the variable or its id.
_MIGRATE_1_2 = """
ALTER TABLE history ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE history ADD COLUMN type TEXT NOT NULL DEFAULT '';
ALTER TABLE history ADD COLUMN constraints_json TEXT NOT NULL DEFAULT '{}';
UPDATE history SET
    name = COALESCE((SELECT v.name FROM variables v WHERE v.id = history.var_id),
                    substr(var_id, 5, instr(var_id, '#') - 5)),
    type = COALESCE((SELECT v.type FROM variables v WHERE v.id = history.var_id),
                    substr(type_url, length('type.googleapis.com/snakepit.') + 1)),
    constraints_json = COALESCE((SELECT v.constraints_json FROM variables v
                                 WHERE v.id = history.var_id), '{}');
UPDATE history SET type = substr(type, 1, length(type) - 7) WHERE type LIKE '%.binary';
CREATE INDEX IF NOT EXISTS history_revision ON history (revision);
"""


def _name_of_id(var_id: str) -> str:
    """The variable name inside an id: ``var_<name>#<rev>``, or ``var_<name>_<rev>`` as the
    first schema-1 stores (before ids got their ``#``) wrote them."""
    body = var_id.removeprefix("var_")
    if "#" in body:
        return body.split("#", 1)[0]
    name, sep, rev = body.rpartition("_")
    return name if sep and rev.isdigit() else body

_HIST_COLS = ("var_id, session_id, name, type, version, revision, op, type_url, data, binary,"
              " constraints_json, ts, changed_by, metadata_json")


def _hist(r: tuple) -> HistoryRow:
    return HistoryRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], bytes(r[8]), bytes(r[9]),
                      r[10], r[11], r[12], json.loads(r[13]))


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
        self._open_schema()
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        self._revision = int(meta["revision"])
        self._compact = int(meta.get("compact_revision", "0"))

    def _open_schema(self) -> None:
        db = self._db
        has_meta = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        version = None
        if has_meta:
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(row[0]) if row else None
        if version is not None and version > SCHEMA_VERSION:
            raise DspexError(
                f"store {self.path!r} has schema {version}, newer than this dspex-notebook "
                f"understands ({SCHEMA_VERSION}); upgrade dspex-notebook"
            )
        if version == 1:
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _MIGRATE_1_2.split(";"):
                    if statement.strip():
                        db.execute(statement)
                # rows of variables that are gone take the name from the id; SQL alone cannot
                # parse the older ``var_<name>_<rev>`` form
                orphans = db.execute("SELECT DISTINCT var_id FROM history WHERE var_id NOT IN"
                                     " (SELECT id FROM variables)").fetchall()
                db.executemany("UPDATE history SET name=? WHERE var_id=?",
                               [(_name_of_id(vid), vid) for (vid,) in orphans])
                db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        db.executescript(_SCHEMA)  # schema 2 -> 3 only adds the docs table (created here)
        if version == 2:
            db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
        row = db.execute("SELECT value FROM meta WHERE key='store_id'").fetchone()
        if row is None:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [("store_id", uuid.uuid4().hex), ("revision", "0"), ("compact_revision", "0"),
                 ("schema_version", str(SCHEMA_VERSION))],
            )
            db.execute("COMMIT")

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
            StoredVariable(
                r[0], r[1], r[2], r[3], r[4], bytes(r[5]), bytes(r[6]), r[7], json.loads(r[8]),
                r[9], r[10], r[11], r[12], r[13],
            )
            for r in self._db.execute(
                "SELECT id, session_id, name, type, type_url, data, binary, constraints_json,"
                " metadata_json, source, version, mod_revision, create_revision, updated_at"
                " FROM variables ORDER BY create_revision, rowid"
            )
        ]
        runs = [RunRow(r[0], r[1], r[2], json.loads(r[3])) for r in self._db.execute(
            "SELECT id, session_id, var_id, doc_json FROM optimizations")]
        trials = [TrialRow(r[0], r[1], json.loads(r[2])) for r in self._db.execute(
            "SELECT run_id, iteration, doc_json FROM trials ORDER BY run_id, iteration")]
        docs = [DocRow(r[0], r[1], r[2], json.loads(r[3]), r[4]) for r in self._db.execute(
            "SELECT kind, key, session_id, doc_json, mod_revision FROM docs")]
        return Snapshot(meta["store_id"], int(meta["revision"]),
                        int(meta.get("compact_revision", "0")), sessions, variables, runs, trials,
                        docs)

    def _check(self, commit: Commit) -> None:
        db = self._db
        for c in commit.compares:
            if c.var_id:
                row = db.execute("SELECT version FROM variables WHERE id=?", (c.var_id,)).fetchone()
                if row is None or row[0] != c.version:
                    raise CompareFailed(
                        f"variable {c.name!r} changed concurrently (expected version {c.version})"
                    )
            elif db.execute("SELECT 1 FROM variables WHERE session_id=? AND name=?",
                            (c.session_id, c.name)).fetchone():
                raise CompareFailed(f"variable {c.name!r} was registered concurrently")
        for dc in commit.doc_compares:
            row = db.execute("SELECT mod_revision FROM docs WHERE kind=? AND key=?",
                             (dc.kind, dc.key)).fetchone()
            found = row[0] if row else 0
            if found != dc.mod_revision:
                raise doc_compare_failed(dc, found)

    def commit(self, commit: Commit) -> int:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            self._check(commit)
            revision = self._revision + 1
            commit.stamp(revision)
            for sid in commit.session_deletes:
                db.execute("DELETE FROM sessions WHERE session_id=?", (sid,))
                db.execute("DELETE FROM variables WHERE session_id=?", (sid,))
                db.execute("DELETE FROM trials WHERE run_id IN"
                           " (SELECT id FROM optimizations WHERE session_id=?)", (sid,))
                db.execute("DELETE FROM optimizations WHERE session_id=?", (sid,))
                db.execute("DELETE FROM docs WHERE session_id=?", (sid,))
            db.executemany("INSERT OR REPLACE INTO optimizations VALUES (?, ?, ?, ?)",
                           [(r.id, r.session_id, r.var_id, json.dumps(r.doc)) for r in commit.runs])
            db.executemany("INSERT OR REPLACE INTO trials VALUES (?, ?, ?)",
                           [(t.run_id, t.iteration, json.dumps(t.doc)) for t in commit.trials])
            db.executemany("DELETE FROM docs WHERE kind=? AND key=?",
                           [(d.kind, d.key) for d in commit.docs if d.doc is None])
            db.executemany("INSERT OR REPLACE INTO docs VALUES (?, ?, ?, ?, ?)",
                           [(d.kind, d.key, d.session_id, json.dumps(d.doc), d.mod_revision)
                            for d in commit.docs if d.doc is not None])
            db.executemany(
                "INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?, ?)",
                [(s.session_id, s.principal, json.dumps(s.metadata), s.created_at, s.last_access)
                 for s in commit.session_upserts],
            )
            db.executemany("DELETE FROM variables WHERE id=?", [(d.var.id,) for d in commit.deletes])
            # An upsert keeps the row (and its rowid: the registration order within a batch);
            # INSERT OR REPLACE would re-insert it, and silently drop any other row that
            # clashes with UNIQUE(session_id, name) instead of failing the transaction.
            db.executemany(
                "INSERT INTO variables VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE"
                " SET type_url=excluded.type_url, data=excluded.data, binary=excluded.binary,"
                " constraints_json=excluded.constraints_json,"
                " metadata_json=excluded.metadata_json, source=excluded.source,"
                " version=excluded.version, mod_revision=excluded.mod_revision,"
                " updated_at=excluded.updated_at",
                [(v.id, v.session_id, v.name, v.type, v.type_url, v.data, v.binary,
                  v.constraints_json, json.dumps(v.metadata), v.source, v.version,
                  v.mod_revision, v.create_revision, v.updated_at)
                 for v in (p.var for p in commit.puts)],
            )
            db.executemany(
                f"INSERT INTO history ({_HIST_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [(h.var_id, h.session_id, h.name, h.type, h.version, h.revision, h.op, h.type_url,
                  h.data, h.binary, h.constraints_json, h.ts, h.changed_by, json.dumps(h.metadata))
                 for h in commit.history(revision)],
            )
            db.execute("UPDATE meta SET value=? WHERE key='revision'", (str(revision),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._revision = revision
        return revision

    def changes(self, after: int, limit: int = 1000) -> list[HistoryRow]:
        if after < self._compact:
            raise compacted_error(after, self._compact)
        limit = max(limit, 1)
        rows = self._db.execute(
            f"SELECT {_HIST_COLS} FROM history WHERE revision > ? ORDER BY revision, rowid LIMIT ?",
            (after, limit),
        ).fetchall()
        if len(rows) == limit:  # finish the last revision
            last = rows[-1][5]
            seen = sum(1 for r in rows if r[5] == last)
            rest = self._db.execute(
                f"SELECT {_HIST_COLS} FROM history WHERE revision = ? ORDER BY rowid LIMIT -1 OFFSET ?",
                (last, seen),
            ).fetchall()
            rows += rest
        return [_hist(r) for r in rows]

    def history(self, var_id: str, limit: int = 100, offset: int = 0) -> list[HistoryRow]:
        rows = self._db.execute(
            f"SELECT {_HIST_COLS} FROM history WHERE var_id=?"
            " ORDER BY revision DESC, rowid DESC LIMIT ? OFFSET ?",
            (var_id, limit, offset),
        ).fetchall()
        return [_hist(r) for r in rows]

    def history_length(self, var_id: str) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM history WHERE var_id=?",
                                    (var_id,)).fetchone()[0])

    @property
    def compact_revision(self) -> int:
        return self._compact

    def revision_before(self, ts: float) -> int:
        row = self._db.execute("SELECT MAX(revision) FROM history WHERE ts <= ?", (ts,)).fetchone()
        return int(row[0] or 0)

    def compact(self, revision: int) -> int:
        revision = min(revision, self._revision)
        if revision <= self._compact:
            return self._compact
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            # keep each variable's newest row at or below the watermark unless it is a delete
            db.execute(
                "DELETE FROM history WHERE revision <= ?1 AND (op = 'delete' OR revision <"
                " (SELECT MAX(h.revision) FROM history h WHERE h.var_id = history.var_id"
                "  AND h.revision <= ?1))",
                (revision,),
            )
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('compact_revision', ?)",
                       (str(revision),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._compact = revision
        return revision

    def read_at(self, session_id: str, revision: int) -> list[HistoryRow]:
        if revision < self._compact:
            raise compacted_error(revision - 1, self._compact)
        rows = self._db.execute(
            f"SELECT {_HIST_COLS} FROM history h WHERE session_id = ?1 AND revision = "
            " (SELECT MAX(revision) FROM history x WHERE x.var_id = h.var_id AND x.revision <= ?2)"
            " ORDER BY revision, rowid",
            (session_id, revision),
        ).fetchall()
        # one revision may hold several rows of a variable (an import replaying its history):
        # the last one (highest rowid) is its state at that revision
        newest = {r[0]: r for r in rows}
        return [_hist(r) for r in newest.values() if r[6] != "delete"]

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
