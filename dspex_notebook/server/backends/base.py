"""The storage interface: what a backend persists and how a write is committed.

The server keeps the live state of every session in memory (:class:`~dspex_notebook.server.store.Store`)
and a backend makes it durable. A write is validated against the in-memory state, turned into one
:class:`Commit` (one store-wide revision), handed to :meth:`Backend.commit`, and only applied to
memory once the commit returned. A commit that raises leaves both the backend and the memory
unchanged: nothing half-written, nothing acknowledged that is not stored.

A backend is used from one thread (the server's event loop); implementations need no locking.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field


@dataclass(slots=True)
class SessionRow:
    session_id: str
    principal: str
    metadata: dict[str, str]
    created_at: float
    last_access: float


@dataclass(slots=True)
class VariableRow:
    """A variable as persisted: the value in its wire encoding (type_url, JSON, raw bytes)."""

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


@dataclass(slots=True)
class HistoryRow:
    """One append-only history entry, written in the same transaction as the change."""

    var_id: str
    session_id: str
    version: int
    revision: int
    op: str  # "register" | "set" | "delete"
    type_url: str
    data: bytes
    binary: bytes
    ts: float
    changed_by: str
    metadata: dict[str, str]


@dataclass(slots=True)
class Commit:
    """Everything one write changes; committed atomically as one store-wide revision."""

    revision: int
    session_upserts: list[SessionRow] = field(default_factory=list)
    session_deletes: list[str] = field(default_factory=list)
    variable_upserts: list[VariableRow] = field(default_factory=list)
    variable_deletes: list[str] = field(default_factory=list)
    history: list[HistoryRow] = field(default_factory=list)


@dataclass(slots=True)
class Snapshot:
    store_id: str
    revision: int
    sessions: list[SessionRow]
    variables: list[VariableRow]


class Backend(abc.ABC):
    """Durable storage for sessions, variables and their history."""

    #: short name shown by ``dspex-notebook serve`` and in Ping.
    name: str = "backend"

    @abc.abstractmethod
    def load(self) -> Snapshot:
        """Read the whole persisted state (called once at server start)."""

    @abc.abstractmethod
    def commit(self, commit: Commit) -> None:
        """Persist ``commit`` atomically, or raise and persist nothing."""

    @abc.abstractmethod
    def history(self, var_id: str, limit: int = 100, offset: int = 0) -> list[HistoryRow]:
        """History rows of a variable, newest first."""

    def touch_sessions(self, last_access: dict[str, float]) -> None:  # noqa: B027 - optional
        """Record session access times (best effort, not part of any revision)."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release files and connections."""
