"""The server's in-memory view of the store: sessions, variables, the name index, the revision.

:meth:`View.apply` is the only code that changes it, once per committed revision, and it
returns that revision's events (grouped per session) for the commit pipeline to publish. Reads
(the store's getters) never touch the backend.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .. import _codec
from .._constraints import validate
from .backends.base import Commit, DocRow, SessionRow, Snapshot, StoredVariable
from .events import Event, EventBatch


@dataclass(slots=True)
class SessionState:
    row: SessionRow
    by_name: dict[str, str] = field(default_factory=dict)  # name -> variable id


def decoded(var: StoredVariable) -> StoredVariable:
    """Fill in ``value`` and ``constraints`` of a variable loaded from its encoding."""
    _, raw = _codec.decode(var.type_url, var.data, var.binary)
    var.constraints = json.loads(var.constraints_json) if var.constraints_json else {}
    var.value = validate(var.type, raw, var.constraints, var.name)
    return var


class View:
    """Live state of one server, rebuilt from :meth:`Backend.load` at start."""

    def __init__(self, snap: Snapshot) -> None:
        self.store_id = snap.store_id
        self.revision = snap.revision
        self.compact_revision = snap.compact_revision
        self.sessions: dict[str, SessionState] = {s.session_id: SessionState(s) for s in snap.sessions}
        self.vars: dict[str, StoredVariable] = {}
        #: variable id -> id of the optimization run that holds it (ordinary writes refused)
        self.locks: dict[str, str] = {r.var_id: r.id for r in snap.runs if r.doc.get("state") == "running"}
        #: (kind, key) -> the store's small JSON documents (dependency graphs, access rules...)
        self.docs: dict[tuple[str, str], DocRow] = {(d.kind, d.key): d for d in snap.docs}
        for var in snap.variables:
            self.vars[var.id] = decoded(var)
            sess = self.sessions.get(var.session_id)
            if sess is not None:
                sess.by_name[var.name] = var.id

    def apply(self, commit: Commit, revision: int, principal: str) -> list[EventBatch]:
        """Apply a committed (stamped) ``commit``; return its events, one batch per session."""
        events: dict[str, list[Event]] = {}
        replaced: dict[tuple[str, str], StoredVariable] = {}
        for d in commit.deletes:
            gone = self.vars.pop(d.var.id, None) or d.var
            sess = self.sessions.get(gone.session_id)
            if sess is not None and sess.by_name.get(gone.name) == gone.id:
                del sess.by_name[gone.name]
            replaced[(gone.session_id, gone.name)] = gone
            events.setdefault(gone.session_id, []).append(Event(
                "delete", revision, gone.session_id, None, gone, principal,
                d.metadata.get("source", principal), d.metadata, commit.ts))
        for sid in commit.session_deletes:
            self.sessions.pop(sid, None)
            for key in [k for k, d in self.docs.items() if d.session_id == sid]:
                del self.docs[key]
        for row in commit.session_upserts:
            state = self.sessions.get(row.session_id)
            if state is None:
                self.sessions[row.session_id] = SessionState(row)
            else:
                state.row = row
        for p in commit.puts:
            var = p.var
            old: StoredVariable | None = self.vars.get(var.id)
            if old is None:
                old = replaced.get((var.session_id, var.name))
            self.vars[var.id] = var
            self.sessions[var.session_id].by_name[var.name] = var.id
            events.setdefault(var.session_id, []).append(Event(
                p.op, revision, var.session_id, var, old, principal,
                p.metadata.get("source", principal), p.metadata, commit.ts))
        for run in commit.runs:
            if run.doc.get("state") == "running":
                self.locks[run.var_id] = run.id
            elif self.locks.get(run.var_id) == run.id:
                del self.locks[run.var_id]
        for doc in commit.docs:
            if doc.doc is None:
                self.docs.pop((doc.kind, doc.key), None)
            else:
                self.docs[(doc.kind, doc.key)] = doc
        self.revision = revision
        return [EventBatch(revision, sid, tuple(evs)) for sid, evs in events.items()]
