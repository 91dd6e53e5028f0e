"""One contract suite for every storage backend (through :class:`Store`), plus SQLite specifics."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

import dspex_notebook as dn
from dspex_notebook import VariableSpec
from dspex_notebook._errors import InvalidArgument
from dspex_notebook.server import Limits, Store
from dspex_notebook.server.backends import Backend, MemoryBackend, SQLiteBackend, StoreLocked

P = "owner"
S = "sess"


class Env:
    """A Store over one backend, with a way to reopen the same data as a fresh Store."""

    def __init__(self, kind: str, tmp_path) -> None:
        self.kind = kind
        self.path = tmp_path / "store.sqlite3"
        self.store = Store(self._backend())

    def _backend(self) -> Backend:
        if self.kind == "memory":
            if not hasattr(self, "_memory"):
                self._memory = MemoryBackend()
            return self._memory
        return SQLiteBackend(self.path)

    def reopen(self) -> Store:
        if self.kind == "sqlite":
            self.store.close()
        self.store = Store(self._backend())
        return self.store

    def close(self) -> None:
        self.store.close()


@pytest.fixture(params=["memory", "sqlite"])
def env(request, tmp_path):
    e = Env(request.param, tmp_path)
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
    assert env.store.revision == 0
    assert isinstance(env.store.store_id, str) and env.store.store_id
    assert env.store.backend.load().revision == 0


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
