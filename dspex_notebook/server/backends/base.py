"""The storage interface: what a backend persists and how a write is committed.

The server keeps the live state of every session in memory (:class:`~..store.Store`) and a
backend makes it durable. Every write takes one path (the commit pipeline, ``server/writes.py``):
validate against the in-memory view → build one :class:`Commit` → :meth:`Backend.commit` →
apply to the in-memory view → publish one event batch. The backend's part:

* **assigns the revision** (one store-wide int64 per commit; etcd's own revision fits), stamps
  it into the rows (``mod_revision``, ``create_revision`` and the id of new variables, via
  :meth:`Commit.stamp`) and returns it;
* **checks the compares** of the commit (a variable is at a version / a name is free) inside
  the same transaction, raising :class:`CompareFailed` and writing nothing when one fails;
* writes the variable rows and one :class:`HistoryRow` per change (the change log that watch
  resume and history reads come from), all or nothing;
* keeps small JSON documents beside them (:class:`DocRow`, checked by :class:`DocCompare`):
  what each concept module (dependencies, access rules, ...) stores without a schema change;
* answers reads of the change log from a revision (:meth:`changes`), of the state at a revision
  (:meth:`read_at`), and keeps a compaction watermark (:meth:`compact`,
  :attr:`compact_revision`): below it the log is gone and readers get :class:`Compacted`.

A backend is used from one thread (the server's event loop); implementations need no locking.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

from ..._errors import Compacted, VersionConflict
from ..._names import make_id


@dataclass(slots=True)
class SessionRow:
    session_id: str
    principal: str
    metadata: dict[str, str]
    created_at: float
    last_access: float


@dataclass(slots=True)
class StoredVariable:
    """A variable as the server holds it: the value in its wire encoding (``type_url``, JSON
    ``data``, raw ``binary``) as persisted, plus the decoded ``value`` and ``constraints``.

    Backends persist every field but ``value`` and ``constraints`` (derived from the encoding).
    Objects are shared by readers once committed: never mutate one after the commit returned.
    """

    id: str
    session_id: str
    name: str
    type: str
    type_url: str
    data: bytes
    binary: bytes
    constraints_json: str
    metadata: dict[str, str]
    source: str
    version: int
    mod_revision: int
    create_revision: int
    updated_at: float
    value: Any = None
    constraints: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class HistoryRow:
    """One append-only change-log entry, written in the same transaction as the change.

    ``op`` is ``register``, ``set`` or ``delete``; for a delete the encoding is the last value.
    """

    var_id: str
    session_id: str
    name: str
    type: str
    version: int
    revision: int
    op: str
    type_url: str
    data: bytes
    binary: bytes
    constraints_json: str
    ts: float
    changed_by: str
    metadata: dict[str, str]


@dataclass(slots=True)
class RunRow:
    """A server-held optimization run (``server/optimization.py``); ``doc`` is its JSON-able
    record (optimizer, config, budget, state, stop reason, best, timestamps)."""

    id: str
    session_id: str
    var_id: str
    doc: dict[str, Any]


@dataclass(slots=True)
class TrialRow:
    """One trial of a run: ``doc`` has iteration, value, metrics, objective, state, timestamp."""

    run_id: str
    iteration: int
    doc: dict[str, Any]


@dataclass(slots=True)
class DocRow:
    """A small JSON document kept beside the variables, keyed by ``(kind, key)``: a session's
    dependency graph, a variable's access rules, ... (each concept's module owns its kind).

    In a :class:`Commit`, ``doc=None`` deletes the document. ``session_id`` ties it to a
    session: it goes when the session goes. ``mod_revision`` is the revision that last wrote it
    (stamped by the backend), which a :class:`DocCompare` checks.
    """

    kind: str
    key: str
    session_id: str
    doc: dict[str, Any] | None
    mod_revision: int = 0


@dataclass(frozen=True, slots=True)
class DocCompare:
    """A condition the commit needs: document ``(kind, key)`` was last written at
    ``mod_revision`` (0: it does not exist). Serializes read-modify-write of a document, e.g.
    two concurrent dependency edits that would together form a cycle."""

    kind: str
    key: str
    mod_revision: int


@dataclass(slots=True)
class Put:
    """Write ``var`` (a new variable when ``var.id`` is empty: the backend allocates the id)."""

    var: StoredVariable
    op: str  # "register" | "set"
    changed_by: str
    metadata: dict[str, str]
    #: the change-log entry's time when it is not the commit's (an import replaying history)
    ts: float | None = None


@dataclass(slots=True)
class Delete:
    """Remove ``var`` (its last state goes into the log as a ``delete`` entry)."""

    var: StoredVariable
    changed_by: str
    metadata: dict[str, str]


@dataclass(frozen=True, slots=True)
class Compare:
    """A condition the commit needs: variable ``var_id`` is at ``version``, or (``var_id``
    empty) no variable called ``name`` exists in ``session_id``."""

    session_id: str
    name: str
    var_id: str = ""
    version: int = 0


@dataclass(slots=True)
class Commit:
    """Everything one write changes; committed atomically as one store-wide revision."""

    puts: list[Put] = field(default_factory=list)
    deletes: list[Delete] = field(default_factory=list)
    compares: list[Compare] = field(default_factory=list)
    session_upserts: list[SessionRow] = field(default_factory=list)
    session_deletes: list[str] = field(default_factory=list)
    runs: list[RunRow] = field(default_factory=list)  # upserts
    trials: list[TrialRow] = field(default_factory=list)  # upserts by (run_id, iteration)
    docs: list[DocRow] = field(default_factory=list)  # upserts (doc=None: delete)
    doc_compares: list[DocCompare] = field(default_factory=list)
    ts: float = 0.0
    #: who committed it (set by the store; a shared backend carries it to the other servers)
    principal: str = ""
    #: (shared backend) tells the committing server its own record when the watch brings it
    nonce: str = ""

    def stamp(self, revision: int) -> None:
        """Fill in what only the assigned revision determines (called by the backend)."""
        for put in self.puts:
            var = put.var
            var.mod_revision = revision
            if not var.id:
                var.id = make_id(var.name, revision)
                var.create_revision = revision
        for doc in self.docs:
            doc.mod_revision = revision

    def history(self, revision: int) -> list[HistoryRow]:
        """The change-log rows of this commit (after :meth:`stamp`)."""
        rows = [
            HistoryRow(p.var.id, p.var.session_id, p.var.name, p.var.type, p.var.version, revision,
                       p.op, p.var.type_url, p.var.data, p.var.binary, p.var.constraints_json,
                       self.ts if p.ts is None else p.ts, p.changed_by, p.metadata)
            for p in self.puts
        ]
        rows += [
            HistoryRow(d.var.id, d.var.session_id, d.var.name, d.var.type, d.var.version, revision,
                       "delete", d.var.type_url, d.var.data, d.var.binary, d.var.constraints_json,
                       self.ts, d.changed_by, d.metadata)
            for d in self.deletes
        ]
        return rows


@dataclass(slots=True)
class Snapshot:
    store_id: str
    revision: int
    compact_revision: int
    sessions: list[SessionRow]
    variables: list[StoredVariable]
    runs: list[RunRow] = field(default_factory=list)
    trials: list[TrialRow] = field(default_factory=list)  # in (run, iteration) order
    docs: list[DocRow] = field(default_factory=list)


def doc_compare_failed(c: DocCompare, found: int) -> CompareFailed:
    """The error for a :class:`DocCompare` that did not hold."""
    return CompareFailed(f"{c.kind} {c.key!r} changed concurrently (expected revision "
                         f"{c.mod_revision}, found {found}); read it again and retry")


class CompareFailed(VersionConflict):
    """A compare of the commit did not hold (a concurrent writer got there first)."""

    kind = "VersionConflict"


class StaleView(CompareFailed):
    """(A shared backend) the commit was staged on a view another server's write had
    already made stale; the view has caught up since. Stage the request again: the retry
    is a plain write's last-writer-wins, and an ``expected_version`` that no longer holds
    then fails as the VersionConflict it is."""


class Backend(abc.ABC):
    """Durable storage for sessions, variables and their change log."""

    #: short name shown by ``dspex-notebook serve`` and in Ping.
    name: str = "backend"
    #: written by several servers at once (etcd): each server follows the others' commits
    shared: bool = False

    @abc.abstractmethod
    def load(self) -> Snapshot:
        """Read the whole current state (called once at server start)."""

    @abc.abstractmethod
    def commit(self, commit: Commit) -> int:
        """Check the compares, assign the next revision, stamp and persist ``commit``
        atomically; return the revision. Raise (:class:`CompareFailed` or an I/O error) and
        persist nothing otherwise."""

    @abc.abstractmethod
    def changes(self, after: int, limit: int = 1000) -> list[HistoryRow]:
        """Change-log rows with revision > ``after``, in revision order, whole revisions only
        (may return more than ``limit`` rows to finish the last revision).

        Raises:
            Compacted: ``after`` is below the compaction watermark.
        """

    @abc.abstractmethod
    def history(self, var_id: str, limit: int = 100, offset: int = 0) -> list[HistoryRow]:
        """Change-log rows of one variable, newest first."""

    @abc.abstractmethod
    def history_length(self, var_id: str) -> int:
        """How many change-log rows of the variable are kept."""

    @property
    @abc.abstractmethod
    def compact_revision(self) -> int:
        """The compaction watermark: the log holds every revision > this one."""

    @abc.abstractmethod
    def revision_before(self, ts: float) -> int:
        """The newest revision in the log committed at or before wall-clock ``ts`` (0: none);
        what ``serve --retain-seconds`` compacts to."""

    @abc.abstractmethod
    def compact(self, revision: int) -> int:
        """Drop the log rows a reader at ``revision`` no longer needs: every row at or below it
        except each live variable's newest (etcd's rule); return the new watermark."""

    @abc.abstractmethod
    def read_at(self, session_id: str, revision: int) -> list[HistoryRow]:
        """The session's variables as of ``revision``: the newest log row per variable at or
        below it, deleted ones left out (compaction keeps each live variable's newest row).

        Raises:
            Compacted: ``revision`` is below the watermark.
        """

    def touch_sessions(self, last_access: dict[str, float]) -> None:  # noqa: B027 - optional
        """Record session access times (best effort, not part of any revision)."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release files and connections."""


def compacted_error(after: int, watermark: int) -> Compacted:
    return Compacted(
        f"revision {after + 1} is compacted: the change log starts after revision {watermark}; "
        "relist and watch from the current revision", watermark,
    )
