"""One contract suite for every storage backend (through :class:`Store`), plus SQLite specifics."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid

import numpy as np
import pytest

import dspex_notebook as dn
from dspex_notebook import VariableSpec
from dspex_notebook._errors import InvalidArgument
from dspex_notebook.server import Limits, Store
from dspex_notebook.server.backends import (
    Backend,
    Commit,
    Compare,
    CompareFailed,
    MemoryBackend,
    Put,
    SessionRow,
    SQLiteBackend,
    StoredVariable,
    StoreLocked,
)

P = "owner"
S = "sess"


class Env:
    """A Store over one backend, with a way to reopen the same data as a fresh Store."""

    def __init__(self, kind: str, tmp_path, etcd=None) -> None:
        self.kind = kind
        self.path = tmp_path / "store.sqlite3"
        self.etcd = etcd
        self.prefix = f"/contract-{uuid.uuid4().hex[:12]}/"
        self.store = Store(self._backend())

    def _backend(self) -> Backend:
        if self.kind == "memory":
            if not hasattr(self, "_memory"):
                self._memory = MemoryBackend()
            return self._memory
        if self.kind == "etcd":
            from dspex_notebook.server.backends.etcd import EtcdBackend

            return EtcdBackend(self.etcd.endpoints, self.prefix)
        return SQLiteBackend(self.path)

    def reopen(self) -> Store:
        if self.kind != "memory":
            self.store.close()
        self.store = Store(self._backend())
        return self.store

    def close(self) -> None:
        self.store.close()


@pytest.fixture(params=["memory", "sqlite", "etcd"])
def env(request, tmp_path):
    etcd = request.getfixturevalue("etcd_cluster") if request.param == "etcd" else None
    e = Env(request.param, tmp_path, etcd)
    yield e
    e.close()


@pytest.fixture
def store(env):
    env.store.init_session(P, S, {})
    return env.store


def snapshot(store: Store):
    """Everything persisted plus the live state, to compare before/after a refused write."""
    snap = store.backend.load()
    live = [(r.id, r.name, r.version, repr(r.value)) for r in store.list(P, S)]
    hist = {v.id: store.backend.history(v.id) for v in snap.variables}
    return (snap.revision, sorted(snap.variables, key=lambda v: v.id), live, hist,
            store.revision)


# ----------------------------------------------------------------------------------------------
# revisions


def test_new_store_starts_at_revision_zero(env):
    # etcd: the store's revision is etcd's own, so a new store (key prefix) starts at the
    # revision etcd is at; it is still the revision the first commit follows
    start = 0 if env.kind != "etcd" else env.store.backend.client.range(b"\0").header.revision
    assert env.store.revision == start
    assert isinstance(env.store.store_id, str) and env.store.store_id
    assert env.store.backend.load().revision == start


def test_revision_plus_one_per_committed_write(store):
    rev = store.revision
    steps = [
        lambda: store.register(P, S, VariableSpec("a", "integer", 1, None, {})),
        lambda: store.set(P, S, "a", 2, {}),
        lambda: store.register_many(P, S, [VariableSpec("b", "float", 1.0, None, {}, False),
                                           VariableSpec("c", "string", "x", None, {}, False)]),
        lambda: store.set_many(P, S, {"a": 3, "b": 2.0}, {}, True),
        lambda: store.set_many(P, S, {"a": 4, "ghost": 1}, {}, False),
        lambda: store.delete(P, S, "c"),
        lambda: store.init_session(P, "second", {}),
        lambda: store.cleanup_session(P, "second"),
    ]
    for i, step in enumerate(steps, start=1):
        step()
        assert store.revision == rev + i
        assert store.backend.load().revision == rev + i


def test_reads_do_not_change_revision(store):
    store.register(P, S, VariableSpec("a", "integer", 1, None, {}))
    rev = store.revision
    store.resolve(P, S, "a")
    store.get_many(P, S, ["a", "zz"])
    store.list(P, S, "*")
    store.heartbeat(P, S)
    store.get_session(P, S)
    store.init_session(P, S, {})  # existing session: touch only
    store.cleanup_session(P, "never-created")
    assert store.revision == rev == store.backend.load().revision


def test_batch_is_one_revision(store):
    recs = store.register_many(P, S, [VariableSpec(n, "integer", 0, None, {}, False) for n in "abcd"])
    rev = store.revision
    assert {r.create_revision for r in recs} == {rev}
    versions, errors, batch_rev = store.set_many(P, S, {n: 1 for n in "abcd"}, {}, True)
    assert errors == {} and batch_rev == rev + 1 == store.revision
    assert versions == {n: 1 for n in "abcd"}
    assert {store.resolve(P, S, n).mod_revision for n in "abcd"} == {rev + 1}


def test_failed_writes_change_nothing(store):
    store.register(P, S, VariableSpec("a", "float", 0.5, {"min": 0.0, "max": 1.0}, {}))
    store.register(P, S, VariableSpec("b", "integer", 1, None, {}))
    before = snapshot(store)
    refused = [
        (dn.ConstraintViolation, lambda: store.set(P, S, "a", 2.0, {})),
        (dn.VariableTypeError, lambda: store.set(P, S, "b", "x", {})),
        (dn.VersionConflict, lambda: store.set(P, S, "b", 2, {}, expected_version=7)),
        (dn.VariableNotFoundError, lambda: store.set(P, S, "zz", 2, {})),
        (dn.VariableNotFoundError, lambda: store.delete(P, S, "zz")),
        (dn.VariableExistsError, lambda: store.register(P, S, VariableSpec("a", "float", 0.1, None, {}))),
        (dn.InvalidArgument, lambda: store.register(P, S, VariableSpec("c", "nope", 1, None, {}))),
        (dn.InvalidArgument, lambda: store.register(P, S, VariableSpec("c", "float", 1.0, {"bad": 1}, {}))),
        (dn.InvalidArgument, lambda: store.register(P, S, VariableSpec("1c", "float", 1.0, None, {}))),
        (dn.ConstraintViolation,
         lambda: store.register_many(P, S, [VariableSpec("c", "integer", 1, None, {}, False),
                                            VariableSpec("d", "integer", 5, {"max": 1}, {}, False)])),
        (dn.SessionNotFoundError, lambda: store.set(P, "no-session", "a", 0.1, {})),
        (dn.ResourceLimitExceeded,
         lambda: store.set(P, S, "b", 2, {f"k{i}": "v" for i in range(100)})),
    ]
    for exc_type, attempt in refused:
        with pytest.raises(exc_type):
            attempt()
        assert snapshot(store) == before
    versions, errors, rev = store.set_many(P, S, {"a": 0.7, "b": "x"}, {}, True)
    assert (versions, rev) == ({}, 0) and set(errors) == {"b"}
    assert snapshot(store) == before


# ----------------------------------------------------------------------------------------------
# versions and history


def test_versions_start_at_zero_and_count_writes(store):
    rec = store.register(P, S, VariableSpec("a", "integer", 0, None, {}))
    assert rec.version == 0
    for i in range(1, 4):
        assert store.set(P, S, "a", i, {}).version == i
    versions, _, _ = store.set_many(P, S, {"a": 10}, {}, True)
    assert versions == {"a": 4}
    assert store.resolve(P, S, rec.id).version == 4


def test_history_rows_written_with_each_change(store):
    rec = store.register(P, S, VariableSpec("a", "integer", 0, None, {"source": "notebook"}))
    r_reg = store.revision
    store.set(P, S, "a", 1, {"reason": "first"})
    r1 = store.revision
    store.set_many(P, S, {"a": 2}, {"reason": "batch"}, True)
    r2 = store.revision
    store.delete(P, S, "a")
    r_del = store.revision
    rows = store.backend.history(rec.id)
    assert [h.op for h in rows] == ["delete", "set", "set", "register"]  # newest first
    assert [h.revision for h in rows] == [r_del, r2, r1, r_reg]
    assert [h.version for h in rows] == [2, 2, 1, 0]
    assert rows[1].metadata == {"reason": "batch"} and rows[2].metadata == {"reason": "first"}
    assert rows[3].changed_by == P and rows[3].metadata == {"source": "notebook"}  # the principal
    assert rows[2].data == b"1" and rows[1].data == b"2"
    assert all(h.var_id == rec.id and h.session_id == S for h in rows)
    assert store.backend.history(rec.id, limit=2) == rows[:2]
    assert store.backend.history(rec.id, limit=2, offset=2) == rows[2:]
    assert store.backend.history("var_nope") == []


# ----------------------------------------------------------------------------------------------
# batches


def test_atomic_batch_rolls_back_everything(store):
    store.register_many(P, S, [VariableSpec("a", "integer", 1, {"max": 5}, {}, False),
                               VariableSpec("b", "integer", 1, None, {}, False)])
    before = snapshot(store)
    versions, errors, rev = store.set_many(P, S, {"a": 99, "b": 2, "zz": 1}, {}, True)
    assert versions == {} and rev == 0
    assert set(errors) == {"a", "zz"}
    assert "max" in errors["a"] and "not found" in errors["zz"].lower()
    assert snapshot(store) == before


def test_non_atomic_batch_applies_the_valid_part(store):
    store.register_many(P, S, [VariableSpec("a", "integer", 1, {"max": 5}, {}, False),
                               VariableSpec("b", "integer", 1, None, {}, False),
                               VariableSpec("c", "integer", 1, None, {}, False)])
    rev = store.revision
    versions, errors, batch_rev = store.set_many(P, S, {"a": 99, "b": 2, "c": 3, "zz": 0}, {},
                                                 False)
    assert versions == {"b": 1, "c": 1}
    assert set(errors) == {"a", "zz"}
    assert batch_rev == rev + 1 == store.revision
    assert [store.resolve(P, S, n).value for n in "abc"] == [1, 2, 3]
    assert store.backend.history(store.resolve(P, S, "a").id)[0].op == "register"


def test_batch_naming_one_variable_twice_is_an_error(store):
    rec = store.register(P, S, VariableSpec("a", "integer", 1, None, {}))
    versions, errors, rev = store.set_many(P, S, {"a": 2, rec.id: 3}, {}, True)
    assert rev == 0 and rec.id in errors and versions == {}


def test_batch_limits(env):
    env.store.limits = Limits(max_batch=2)
    env.store.init_session(P, S, {})
    with pytest.raises(dn.ResourceLimitExceeded):
        env.store.register_many(P, S, [VariableSpec(n, "integer", 1, None, {}, False) for n in "abc"])
    assert env.store.list(P, S) == []


# ----------------------------------------------------------------------------------------------
# names, delete, cleanup, reload


def test_duplicate_name_rule(store):
    old = store.register(P, S, VariableSpec("a", "integer", 1, None, {}))
    store.set(P, S, "a", 2, {})
    with pytest.raises(dn.VariableExistsError):
        store.register(P, S, VariableSpec("a", "integer", 1, None, {}))
    new = store.register(P, S, VariableSpec("a", "string", "s", None, {}, replace=True))
    assert new.id != old.id and new.version == 0
    rev = store.revision
    ids = [v.id for v in store.backend.load().variables]
    assert ids == [new.id]
    assert store.resolve(P, S, "a").value == "s"
    with pytest.raises(dn.VariableNotFoundError):
        store.resolve(P, S, old.id)
    tomb = store.backend.history(old.id)[0]
    assert (tomb.op, tomb.revision) == ("delete", rev)
    assert store.backend.history(new.id)[0].revision == rev
    # the same name in another session is another variable
    store.init_session(P, "other", {})
    other = store.register(P, "other", VariableSpec("a", "integer", 5, None, {}))
    assert other.id != new.id and store.resolve(P, S, "a").value == "s"


def test_delete(store):
    rec = store.register(P, S, VariableSpec("a", "integer", 1, None, {}))
    store.register(P, S, VariableSpec("b", "integer", 1, None, {}))
    store.delete(P, S, rec.id)  # by id
    with pytest.raises(dn.VariableNotFoundError):
        store.resolve(P, S, "a")
    assert [v.name for v in store.backend.load().variables] == ["b"]
    again = store.register(P, S, VariableSpec("a", "integer", 3, None, {}))
    assert again.id != rec.id and [r.name for r in store.list(P, S)] == ["b", "a"]


def test_cleanup_removes_session_variables_and_history(env, store):
    recs = store.register_many(P, S, [VariableSpec("a", "integer", 1, None, {}, False),
                                      VariableSpec("b", "integer", 2, None, {}, False)])
    store.init_session(P, "keep", {})
    kept = store.register(P, "keep", VariableSpec("k", "integer", 1, None, {}))
    removed, rev = store.cleanup_session(P, S)
    assert removed == 2 and rev == store.revision
    snap = store.backend.load()
    assert [s.session_id for s in snap.sessions] == ["keep"]
    assert [v.id for v in snap.variables] == [kept.id]
    for rec in recs:  # the change log keeps their deletion (watchers resuming see it)
        assert store.backend.history(rec.id)[0].op == "delete"
    with pytest.raises(dn.SessionNotFoundError):
        store.resolve(P, S, "a")
    reopened = env.reopen()
    assert reopened.revision == rev
    reopened.init_session(P, S, {})  # a new session of the same id starts empty
    assert reopened.list(P, S) == []
    for rec in recs:
        with pytest.raises(dn.VariableNotFoundError):
            reopened.resolve(P, S, rec.id)
    assert reopened.resolve(P, "keep", "k").value == 1


def test_reopen_restores_everything(env, store):
    values = {
        "f": ("float", 0.25), "i": ("integer", 2**70), "s": ("string", "ü"),
        "b": ("boolean", True), "c": ("choice", "y"), "m": ("module", "Predict"),
        "e": ("embedding", np.arange(4, dtype=np.float32)),
        "t": ("tensor", np.arange(6, dtype=np.uint16).reshape(2, 3)),
        "l": ("list", [1, "a", None]), "d": ("dict", {"k": [1.5]}),
    }
    for name, (type_name, value) in values.items():
        cons = {"choices": ["x", "y"]} if type_name == "choice" else None
        store.register(P, S, VariableSpec(name, type_name, value, cons, {"source": "test"}))
    store.set(P, S, "i", 5, {})
    before = [(r.id, r.name, r.type, r.version, r.mod_revision, r.constraints)
              for r in store.list(P, S)]
    store_id, rev = store.store_id, store.revision
    reopened = env.reopen()
    assert (reopened.store_id, reopened.revision) == (store_id, rev)
    after = [(r.id, r.name, r.type, r.version, r.mod_revision, r.constraints)
             for r in reopened.list(P, S)]
    assert after == before
    for name, (_type_name, value) in values.items():
        got = reopened.resolve(P, S, name).value
        if isinstance(value, np.ndarray):
            assert got.dtype == value.dtype and np.array_equal(got, value)
        elif name == "i":
            assert got == 5
        else:
            assert got == value and type(got) is type(value)
    reopened.set(P, S, "f", 0.5, {})
    assert reopened.revision == rev + 1


# ----------------------------------------------------------------------------------------------
# SQLite specifics


def test_sqlite_durability_pragmas(tmp_path):
    backend = SQLiteBackend(tmp_path / "p.sqlite3")
    try:
        assert backend.pragma("journal_mode") == "wal"
        assert backend.pragma("synchronous") == "2"  # FULL
    finally:
        backend.close()


def test_sqlite_second_backend_on_the_same_file_is_refused(tmp_path):
    path = tmp_path / "locked.sqlite3"
    first = SQLiteBackend(path)
    try:
        with pytest.raises(StoreLocked) as info:
            SQLiteBackend(path)
        assert isinstance(info.value, RuntimeError) and isinstance(info.value, dn.DspexError)
        assert "in use" in str(info.value)
    finally:
        first.close()
    SQLiteBackend(path).close()  # free again once closed


def test_sqlite_failed_commit_leaves_memory_and_file_unchanged(tmp_path):
    path = tmp_path / "fail.sqlite3"
    store = Store(SQLiteBackend(path))
    try:
        store.init_session(P, S, {})
        store.register(P, S, VariableSpec("a", "integer", 1, None, {}))
        rev = store.revision
        side = sqlite3.connect(path, isolation_level=None)  # another connection, same file
        try:
            side.execute("CREATE TRIGGER boom BEFORE INSERT ON history "
                         "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")

            def persisted():
                return side.execute("SELECT name, version, data FROM variables").fetchall(), \
                    side.execute("SELECT value FROM meta WHERE key='revision'").fetchone()

            before = persisted()
            for attempt in (lambda: store.set(P, S, "a", 2, {}),
                            lambda: store.register(P, S, VariableSpec("b", "integer", 1, None, {})),
                            lambda: store.set_many(P, S, {"a": 3}, {}, False),
                            lambda: store.delete(P, S, "a")):
                with pytest.raises(sqlite3.DatabaseError, match="disk on fire"):
                    attempt()
                assert store.revision == rev
                rec = store.resolve(P, S, "a")
                assert (rec.value, rec.version) == (1, 0)
                assert [r.name for r in store.list(P, S)] == ["a"]
                assert persisted() == before
            side.execute("DROP TRIGGER boom")
        finally:
            side.close()
        assert store.set(P, S, "a", 2, {}).version == 1
        assert store.revision == rev + 1
    finally:
        store.close()
    reopened = Store(SQLiteBackend(path))
    try:
        assert reopened.revision == rev + 1
        assert reopened.resolve(P, S, "a").value == 2
    finally:
        reopened.close()


def test_sqlite_closed_backend_refuses_commit_and_memory_is_unchanged(tmp_path):
    store = Store(SQLiteBackend(tmp_path / "closed.sqlite3"))
    store.init_session(P, S, {})
    store.register(P, S, VariableSpec("a", "integer", 1, None, {}))
    rev = store.revision
    store.backend.close()
    with pytest.raises(Exception):  # noqa: B017 - any error, as long as nothing changes
        store.set(P, S, "a", 2, {})
    assert store.revision == rev and store.resolve(P, S, "a").value == 1


def test_sqlite_unique_name_conflict_fails_the_commit(tmp_path):
    """A row the store does not know about (e.g. written by a foreign tool) that clashes with
    UNIQUE(session_id, name) fails the transaction; it is neither replaced nor dropped."""
    path = tmp_path / "unique.sqlite3"
    store = Store(SQLiteBackend(path))
    try:
        store.init_session(P, S, {})
        store.register(P, S, VariableSpec("a", "integer", 1, None, {}))
        rev = store.revision
        side = sqlite3.connect(path, isolation_level=None)
        try:
            side.execute(
                "INSERT INTO variables VALUES ('foreign', ?, 'b', 'integer',"
                " 'type.googleapis.com/snakepit.integer', x'37', x'', '{}', '{}', 'python',"
                " 0, 0, 0, 0.0)", (S,))
            with pytest.raises(dn.VersionConflict):  # the commit's name compare catches it
                store.register(P, S, VariableSpec("b", "integer", 2, None, {}))
            assert store.revision == rev
            assert [r.name for r in store.list(P, S)] == ["a"]
            rows = side.execute("SELECT id, name FROM variables ORDER BY name").fetchall()
            assert rows == [(store.resolve(P, S, "a").id, "a"), ("foreign", "b")]
            assert side.execute("SELECT value FROM meta WHERE key='revision'").fetchone() == (
                str(rev),)
        finally:
            side.close()
    finally:
        store.close()


def test_registration_order_within_a_batch_survives_reopen(env, store):
    store.register_many(P, S, [VariableSpec(n, "integer", 0, None, {}, False) for n in ("c", "a", "b")])
    store.set(P, S, "c", 1, {})  # a write must not move it
    store.set_many(P, S, {"a": 1}, {}, True)
    assert [r.name for r in store.list(P, S)] == ["c", "a", "b"]
    assert [r.name for r in env.reopen().list(P, S)] == ["c", "a", "b"]


def test_an_empty_batch_writes_nothing(store):
    rev = store.revision
    assert store.register_many(P, S, []) == []
    assert store.set_many(P, S, {}, {}, atomic=True) == ({}, {}, 0)
    assert store.revision == rev and store.backend.load().revision == rev


def test_a_batch_cannot_update_a_variable_it_replaces(store):
    """Replacing `x` and updating it through its old id in one batch would write both the new
    and the old record; it is refused as a whole."""
    old = store.register(P, S, VariableSpec("x", "float", 0.5, None, {}))
    before = snapshot(store)
    with pytest.raises(InvalidArgument, match="registers anew"):
        store.register_many(P, S, [VariableSpec("x", "float", 1.0, None, {}, True)], {old.id: 0.6}, {})
    assert snapshot(store) == before


def test_ids_never_collide_with_names(store):
    """A name that looks like an old-style id (`var_b_3`) keeps meaning that variable."""
    victim = store.register(P, S, VariableSpec("var_b_3", "string", "victim", None, {}))
    b = store.register(P, S, VariableSpec("b", "float", 3.14, None, {}))
    assert "#" in b.id and b.id not in {victim.id, victim.name}
    assert store.resolve(P, S, "var_b_3").value == "victim"
    store.delete(P, S, "var_b_3")
    assert store.resolve(P, S, "b").value == 3.14
    with pytest.raises(InvalidArgument):
        store.register(P, S, VariableSpec("a#1", "float", 1.0, None, {}))  # '#' is what makes ids distinct


# ----------------------------------------------------------------------------------------------
# the live-data contract: revisions assigned by the backend, compares, change log, compaction,
# reads at a revision, and the event batches the store publishes


def _row_state(rows) -> dict:
    """``{name: (id, version, data)}`` of change-log rows (what read_at returns)."""
    return {r.name: (r.var_id, r.version, bytes(r.data)) for r in rows}


def _live_state(store: Store, session: str = S) -> dict:
    if session not in store.view.sessions:
        return {}
    return {v.name: (v.id, v.version, bytes(v.data)) for v in store.list(P, session)}


def _workload(store: Store) -> dict[int, dict]:
    """A mixed write sequence over two sessions (registers, sets, batches, delete, re-register,
    replace, cleanup); returns the state of session S after every revision (the model), and
    records the state of session "other" in ``store.other_states``."""
    states = {store.revision: _live_state(store)}
    others = store.other_states = {store.revision: {}}  # type: ignore[attr-defined]
    steps = [
        lambda: store.register(P, S, VariableSpec("a", "integer", 0, None, {})),
        lambda: store.register_many(P, S, [VariableSpec("b", "integer", 10, None, {}, False),
                                           VariableSpec("c", "integer", 20, None, {}, False)]),
        lambda: store.set(P, S, "a", 1, {"reason": "one"}),
        lambda: store.init_session(P, "other", {}),
        lambda: store.register(P, "other", VariableSpec("a", "integer", 100, None, {})),
        lambda: store.set_many(P, S, {"a": 2, "b": 11, "c": 21}, {}, True),
        lambda: store.set(P, "other", "a", 101, {}),
        lambda: store.delete(P, S, "c"),
        lambda: store.set_many(P, S, {"a": 3, "ghost": 0}, {}, False),
        lambda: store.register(P, S, VariableSpec("c", "integer", 30, None, {})),
        lambda: store.register(P, S, VariableSpec("a", "string", "s", None, {}, replace=True)),
        lambda: store.set(P, S, "b", 12, {}),
        lambda: store.cleanup_session(P, "other"),
        lambda: store.register_many(P, S, [VariableSpec("d", "integer", 40, None, {}, False)],
                                    {"b": 13}),
        lambda: store.delete(P, S, "d"),
        lambda: store.set(P, S, "c", 31, {}),
    ]
    for step in steps:
        before = store.revision
        step()
        assert store.revision == before + 1
        states[store.revision] = _live_state(store)
        others[store.revision] = _live_state(store, "other")
    return states


def test_backend_assigns_the_revision_and_returns_it(env):
    backend = env.store.backend
    start = backend.load().revision
    for i in range(1, 6):
        row = SessionRow(f"s{i}", P, {}, 1.0, 1.0)
        assert backend.commit(Commit(session_upserts=[row], ts=1.0)) == start + i
        assert backend.load().revision == start + i
    # a variable's id, mod_revision and create_revision are stamped with that revision
    var = StoredVariable("", "s1", "v", "integer", "type.googleapis.com/snakepit.integer", b"7",
                         b"", "{}", {}, "python", 0, 0, 0, 1.0)
    rev = backend.commit(Commit([Put(var, "register", P, {})], compares=[Compare("s1", "v")]))
    assert rev == start + 6
    assert (var.mod_revision, var.create_revision, var.id) == (rev, rev, f"var_v#{rev}")
    (row,) = backend.changes(rev - 1)
    assert (row.revision, row.var_id, row.op, row.version) == (rev, var.id, "register", 0)
    # through the store, every write answers with the revision the backend assigned
    store = env.reopen()
    store.init_session(P, S, {})
    rec = store.register(P, S, VariableSpec("a", "integer", 1, None, {}))
    assert rec.mod_revision == rec.create_revision == store.revision == backend_revision(store)
    _, _, batch_rev = store.set_many(P, S, {"a": 2}, {}, True)
    assert batch_rev == store.revision == backend_revision(store) == rec.mod_revision + 1


def backend_revision(store: Store) -> int:
    return store.backend.load().revision


def _persisted(backend: Backend, var_ids) -> tuple:
    return (backend.load(), backend.changes(backend.compact_revision, limit=10_000),
            {v: backend.history(v) for v in var_ids}, backend.compact_revision)


def test_a_failing_compare_raises_and_changes_nothing(env, store):
    a = store.register(P, S, VariableSpec("a", "integer", 1, None, {}))
    store.set(P, S, "a", 2, {})  # version 1
    backend = store.backend
    before = _persisted(backend, [a.id])
    current = store.resolve(P, S, "a")

    def put(value: int):
        new = StoredVariable(current.id, S, "a", "integer", current.type_url, str(value).encode(),
                             b"", "{}", {}, "python", current.version + 1, 0,
                             current.create_revision, 2.0)
        return Put(new, "set", P, {})

    def fresh(name: str):
        return Put(StoredVariable("", S, name, "integer", current.type_url, b"5", b"", "{}", {},
                                  "python", 0, 0, 0, 2.0), "register", P, {})

    failing = [
        Commit([put(9)], compares=[Compare(S, "a", a.id, 0)]),  # stale version
        Commit([put(9)], compares=[Compare(S, "a", a.id, 7)]),  # a version it never had
        Commit([put(9)], compares=[Compare(S, "a", "var_a#999", 1)]),  # no such variable
        Commit([fresh("a")], compares=[Compare(S, "a")]),  # the name is taken
        # one good compare does not let a bad one through: all or nothing
        Commit([put(9), fresh("n")], compares=[Compare(S, "a", a.id, 1), Compare(S, "a")]),
        Commit([fresh("n"), put(9)], compares=[Compare(S, "n"), Compare(S, "a", a.id, 3)]),
    ]
    for commit in failing:
        with pytest.raises(CompareFailed) as info:
            backend.commit(commit)
        assert isinstance(info.value, dn.VersionConflict)
        assert _persisted(backend, [a.id]) == before
    # the next good commit takes the next revision: a refused commit leaves no gap
    rev = backend.commit(Commit([put(3)], compares=[Compare(S, "a", a.id, 1)], ts=2.0))
    assert rev == before[0].revision + 1
    assert [r.revision for r in backend.changes(rev - 1)] == [rev]


def test_store_over_a_stale_view_is_refused_by_the_backend_compare(env, store):
    """Two stores over one backend: the second one's view is stale, so its writes pass staging
    but fail the compare inside the commit, and neither its view nor its watchers change."""
    store.register(P, S, VariableSpec("a", "integer", 1, None, {}))
    stale = Store(store.backend)
    store.set(P, S, "a", 2, {})
    store.register(P, S, VariableSpec("b", "integer", 1, None, {}))
    before = _persisted(store.backend, [store.resolve(P, S, n).id for n in "ab"])
    stale_view = (stale.revision, _live_state(stale))
    published = []
    stale.hub.publish = published.append  # type: ignore[method-assign]
    with pytest.raises(CompareFailed):
        stale.set(P, S, "a", 5, {})  # stale version
    with pytest.raises(CompareFailed):
        stale.register(P, S, VariableSpec("b", "integer", 5, None, {}))  # name taken
    with pytest.raises(CompareFailed):
        stale.set_many(P, S, {"a": 7}, {}, True)
    assert (stale.revision, _live_state(stale)) == stale_view and published == []
    assert _persisted(store.backend, [store.resolve(P, S, n).id for n in "ab"]) == before


def test_changes_are_whole_revisions_in_order(env, store):
    states = _workload(store)
    head = store.revision
    backend = store.backend
    everything = backend.changes(0, limit=10_000)
    revisions = [r.revision for r in everything]
    assert revisions == sorted(revisions)
    per_rev = {}
    for r in everything:
        per_rev.setdefault(r.revision, []).append(r)
    assert {r.revision for r in everything} <= set(states) and max(per_rev) <= head
    for after in range(0, head + 1):
        for limit in (1, 2, 3, 5, 10_000):
            got = backend.changes(after, limit)
            want_all = [r for r in everything if r.revision > after]
            assert got == want_all[:len(got)], (after, limit)  # a prefix of the log after `after`
            if want_all:
                assert len(got) >= min(limit, len(want_all))
                last = got[-1].revision
                assert [r for r in got if r.revision == last] == per_rev[last]  # not split
            else:
                assert got == []


def test_compaction_keeps_each_live_variables_newest_row(env, store):
    states = _workload(store)
    head = store.revision
    backend = store.backend
    everything = backend.changes(0, limit=10_000)
    ids = list(dict.fromkeys(r.var_id for r in everything))
    for watermark in (4, 9, head - 2):
        assert backend.compact(watermark) == watermark == backend.compact_revision
        for vid in ids:
            rows = [r for r in everything if r.var_id == vid]
            old = [r for r in rows if r.revision <= watermark]
            keep = [r for r in rows if r.revision > watermark]
            if old and old[-1].op != "delete":
                keep = [old[-1], *keep]  # live at the watermark: its newest row stays
            assert backend.history(vid, limit=1000) == keep[::-1], (watermark, vid)
            assert backend.history_length(vid) == len(keep)
        assert backend.changes(watermark, limit=10_000) == [
            r for r in everything if r.revision > watermark]
        with pytest.raises(dn.Compacted) as info:
            backend.changes(watermark - 1)
        assert info.value.compact_revision == watermark
        assert backend.compact(watermark - 1) == watermark  # never moves back
    assert backend.compact(head + 50) == head  # not beyond the head
    # the watermark is durable (SQLite) and reloaded with the store
    again = env.reopen()
    assert again.compact_revision == head
    with pytest.raises(dn.Compacted):
        again.backend.changes(head - 1)
    assert again.backend.changes(head) == []
    assert _row_state(again.backend.read_at(S, head)) == states[head]


def test_read_at_equals_the_state_at_that_revision(env, store):
    states = _workload(store)
    backend = store.backend
    for rev, state in states.items():
        assert _row_state(backend.read_at(S, rev)) == state, rev
    for rev, state in store.other_states.items():  # the other session, cleaned up at the end
        assert _row_state(backend.read_at("other", rev)) == state, rev
    assert any(store.other_states.values()) and backend.read_at("other", store.revision) == []
    watermark = 8
    backend.compact(watermark)
    for rev, state in states.items():
        if rev < watermark:
            with pytest.raises(dn.Compacted):
                backend.read_at(S, rev)
        else:
            assert _row_state(backend.read_at(S, rev)) == state, rev


def _drain(sub) -> list:
    from dspex_notebook.server.events import Progress

    items = []
    while sub.queue:
        item = sub.queue.popleft()
        if not isinstance(item, Progress):
            items.append(item)
    return items


def _event_key(ev):
    return (ev.kind, ev.revision, ev.session_id, ev.name, ev.current.id, ev.current.version,
            None if ev.new is None else bytes(ev.new.data),
            None if ev.old is None else (ev.old.id, ev.old.version, bytes(ev.old.data)))


async def test_published_batches_one_per_revision_in_order_with_old_and_new(env, store):
    hub = store.hub
    everyone = hub.subscribe(S)
    only_a = hub.subscribe(S, ["a"])
    other = hub.subscribe("other")
    try:
        start = store.revision
        states = _workload(store)
        head = store.revision
        batches = _drain(everyone)
        revs = [b.revision for b, _sel in batches]
        assert revs == sorted(set(revs)), "one batch per revision, in order, exactly once"
        log_revs = sorted({r.revision for r in store.backend.changes(start, limit=10_000)
                           if r.session_id == S})
        assert revs == log_revs  # every revision that touched the session, no other
        for batch, selected in batches:
            assert selected is None and batch.session_id == S
            assert all(e.revision == batch.revision and e.session_id == S for e in batch.events)
            before, after = states[batch.revision - 1], states[batch.revision]
            for ev in batch.events:
                if ev.kind == "delete":
                    assert ev.new is None and ev.old is not None
                    assert before[ev.name] == (ev.old.id, ev.old.version, bytes(ev.old.data))
                    assert after.get(ev.name, (None,))[0] != ev.old.id
                    continue
                assert after[ev.name] == (ev.new.id, ev.new.version, bytes(ev.new.data))
                if ev.kind == "set":
                    assert before[ev.name] == (ev.old.id, ev.old.version, bytes(ev.old.data))
                elif ev.name in before:  # a replace: old is the variable it replaced
                    assert ev.old is not None and before[ev.name] == (
                        ev.old.id, ev.old.version, bytes(ev.old.data))
                else:
                    assert ev.old is None
            # the batch is the whole revision: every change of S at that revision, nothing else
            changed = {n for n in set(before) | set(after) if before.get(n) != after.get(n)}
            touched = {e.name for e in batch.events}
            assert changed <= touched
        # a name selection gets the batches touching that name, with the indices of its events
        sel = _drain(only_a)
        want = [(b.revision, tuple(i for i, e in enumerate(b.events) if e.name == "a"))
                for b, _ in batches if any(e.name == "a" for e in b.events)]
        assert [(b.revision, s) for b, s in sel] == want
        assert all(b is a for (b, _), (a, _) in zip(sel, [x for x in batches
                                                           if x[0].revision in dict(want)],
                                                    strict=True))  # the same batch objects
        # another session's subscription saw only its own session (closed by its cleanup)
        other_batches = _drain(other)
        assert other_batches and all(b.session_id == "other" for b, _ in other_batches)
        assert other.closed
        # resuming from the change log rebuilds exactly what was published live
        resumed, reached = store.changes(S, start, head)
        assert reached == head
        assert [[_event_key(e) for e in b.events] for b in resumed] == [
            [_event_key(e) for e in b.events] for b, _ in batches]
    finally:
        hub.close()
        await asyncio.sleep(0)


# ----------------------------------------------------------------------------------------------
# SQLite schema migration

_SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE sessions (
    session_id TEXT PRIMARY KEY, principal TEXT NOT NULL, metadata_json TEXT NOT NULL,
    created_at REAL NOT NULL, last_access REAL NOT NULL);
CREATE TABLE variables (
    id TEXT PRIMARY KEY, session_id TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL,
    type_url TEXT NOT NULL, data BLOB NOT NULL, binary BLOB NOT NULL,
    constraints_json TEXT NOT NULL, metadata_json TEXT NOT NULL, source TEXT NOT NULL,
    version INTEGER NOT NULL, mod_revision INTEGER NOT NULL, create_revision INTEGER NOT NULL,
    updated_at REAL NOT NULL, UNIQUE (session_id, name));
CREATE TABLE history (
    var_id TEXT NOT NULL, session_id TEXT NOT NULL, version INTEGER NOT NULL,
    revision INTEGER NOT NULL, op TEXT NOT NULL, type_url TEXT NOT NULL, data BLOB NOT NULL,
    binary BLOB NOT NULL, ts REAL NOT NULL, changed_by TEXT NOT NULL, metadata_json TEXT NOT NULL,
    PRIMARY KEY (var_id, version, revision));
CREATE INDEX history_session ON history (session_id);
"""

URL = "type.googleapis.com/snakepit."


def _schema_1_file(path) -> None:
    """A store as dspex-notebook wrote it before the change log knew names and types (schema
    1): ids of the 0.1 foundation (``var_<name>_<rev>``) and of later (``var_<name>#<rev>``)."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.executescript(_SCHEMA_1)
        db.executemany("INSERT INTO meta VALUES (?, ?)",
                       [("store_id", "old-store"), ("revision", "6"), ("schema_version", "1")])
        db.execute("INSERT INTO sessions VALUES (?, ?, '{}', 1.0, 2.0)", (S, P))
        db.execute(
            "INSERT INTO variables VALUES ('var_temp#2', ?, 'temp', 'float', ?, ?, x'',"
            " '{\"max\": 1.0}', '{}', 'python', 1, 4, 2, 4.0)", (S, URL + "float", b"0.9"))
        rows = [
            # var_id, version, revision, op, type_url, data
            ("var_old_style_1", 0, 1, "register", URL + "integer", b"7"),
            ("var_temp#2", 0, 2, "register", URL + "float", b"0.5"),
            ("var_gone#3", 0, 3, "register", URL + "string", b'"x"'),
            ("var_emb#3", 0, 3, "register", URL + "embedding.binary",
             b'{"shape": [2], "dtype": "float32", "binary_format": "raw"}'),
            ("var_temp#2", 1, 4, "set", URL + "float", b"0.9"),
            ("var_gone#3", 0, 5, "delete", URL + "string", b'"x"'),
            ("var_emb#3", 0, 5, "delete", URL + "embedding.binary",
             b'{"shape": [2], "dtype": "float32", "binary_format": "raw"}'),
            ("var_old_style_1", 0, 6, "delete", URL + "integer", b"7"),
        ]
        db.executemany(
            "INSERT INTO history VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1.0, 'owner', '{}')",
            [(vid, S, ver, rev, op, url, data,
              b"\0\0\0\0\0\0\0\0" if "binary" in url else b"") for vid, ver, rev, op, url, data in rows])
    finally:
        db.close()


def test_sqlite_schema_1_store_is_migrated(tmp_path):
    path = tmp_path / "v1.sqlite3"
    _schema_1_file(path)
    backend = SQLiteBackend(path)
    try:
        assert backend.pragma("journal_mode") == "wal"
        rows = backend.changes(0)
        got = [(r.var_id, r.revision, r.op, r.name, r.type, r.constraints_json) for r in rows]
        assert got == [
            ("var_old_style_1", 1, "register", "old_style", "integer", "{}"),
            ("var_temp#2", 2, "register", "temp", "float", '{"max": 1.0}'),
            ("var_gone#3", 3, "register", "gone", "string", "{}"),
            ("var_emb#3", 3, "register", "emb", "embedding", "{}"),
            ("var_temp#2", 4, "set", "temp", "float", '{"max": 1.0}'),
            ("var_gone#3", 5, "delete", "gone", "string", "{}"),
            ("var_emb#3", 5, "delete", "emb", "embedding", "{}"),
            ("var_old_style_1", 6, "delete", "old_style", "integer", "{}"),
        ]
        assert backend.compact_revision == 0
        assert _row_state(backend.read_at(S, 3)) == {
            "old_style": ("var_old_style_1", 0, b"7"), "temp": ("var_temp#2", 0, b"0.5"),
            "gone": ("var_gone#3", 0, b'"x"'),
            "emb": ("var_emb#3", 0, b'{"shape": [2], "dtype": "float32", "binary_format": "raw"}')}
        assert _row_state(backend.read_at(S, 6)) == {"temp": ("var_temp#2", 1, b"0.9")}
    finally:
        backend.close()
    side = sqlite3.connect(path)
    try:
        assert side.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("3",)
    finally:
        side.close()
    # a store over the migrated file works and keeps counting; reopening does not migrate twice
    store = Store(SQLiteBackend(path))
    try:
        assert (store.store_id, store.revision) == ("old-store", 6)
        assert store.resolve(P, S, "temp").value == 0.9
        batches, reached = store.changes(S, 0, 6)
        assert reached == 6 and [b.revision for b in batches] == [1, 2, 3, 4, 5, 6]
        assert [(e.kind, e.name) for e in batches[-1].events] == [("delete", "old_style")]
        assert store.set(P, S, "temp", 1.0, {}).mod_revision == 7
    finally:
        store.close()
    store = Store(SQLiteBackend(path))
    try:
        assert store.revision == 7
        assert [r.name for r in store.backend.changes(0)] == [
            "old_style", "temp", "gone", "emb", "temp", "gone", "emb", "old_style", "temp"]
    finally:
        store.close()


# ----------------------------------------------------------------------------------------------
# documents (what dependencies, access rules, ... store beside the variables)


def test_documents_commit_compare_reload_and_go_with_their_session(env, store):
    from dspex_notebook.server.backends import DocCompare, DocRow

    rev = store._commit(Commit(docs=[DocRow("graph", S, S, {"edges": [["a", "b"]]})]), P)
    assert store.view.docs[("graph", S)].mod_revision == rev
    before = snapshot(store)
    stale = Commit(docs=[DocRow("graph", S, S, {"edges": []})],
                   doc_compares=[DocCompare("graph", S, rev - 1)])
    with pytest.raises(CompareFailed, match=r"graph 'sess' changed concurrently \(expected "
                                            rf"revision {rev - 1}, found {rev}\)"):
        store._commit(stale, P)
    assert snapshot(store) == before and store.view.docs[("graph", S)].doc == {"edges": [["a", "b"]]}
    with pytest.raises(CompareFailed, match="expected revision 0, found"):  # 0: must not exist
        store._commit(Commit(docs=[DocRow("rules", "x", S, {})],
                             doc_compares=[DocCompare("rules", "x", 0), DocCompare("graph", S, 0)]), P)
    rev2 = store._commit(Commit(docs=[DocRow("graph", S, S, {"edges": []}),
                                      DocRow("rules", "x", S, {"any": ["read"]})],
                                doc_compares=[DocCompare("graph", S, rev)]), P)
    reopened = env.reopen()
    assert {k: (d.doc, d.mod_revision) for k, d in reopened.view.docs.items()} == {
        ("graph", S): ({"edges": []}, rev2), ("rules", "x"): ({"any": ["read"]}, rev2)}
    reopened._commit(Commit(docs=[DocRow("rules", "x", S, None)]), P)  # doc=None deletes
    assert ("rules", "x") not in reopened.view.docs
    reopened.init_session(P, "other", {})
    reopened._commit(Commit(docs=[DocRow("graph", "other", "other", {"edges": []})]), P)
    reopened.cleanup_session(P, S)
    assert list(reopened.view.docs) == [("graph", "other")]
    assert [d.key for d in env.reopen().backend.load().docs] == ["other"]


def test_sqlite_schema_2_store_gains_the_documents_table(tmp_path):
    path = tmp_path / "s2.sqlite3"
    SQLiteBackend(path).close()
    with sqlite3.connect(path) as side:  # make it look like a schema-2 store
        side.execute("DROP TABLE docs")
        side.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
    side.close()
    backend = SQLiteBackend(path)
    try:
        assert backend.load().docs == []
        assert backend._db.execute(
            "SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("3",)
    finally:
        backend.close()
