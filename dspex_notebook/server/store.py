"""The server's live state: sessions and variables, validated writes, one revision per commit.

Transport-free (no grpc here): the servicer in ``dspex_notebook._wire.servicer`` decodes requests,
calls these methods and encodes the results. All methods run on the server's event-loop thread,
so no locking is needed; every write follows the same path:

1. resolve and validate against the in-memory state (raise a :class:`DspexError` on bad input),
2. build a :class:`Commit` for revision ``self.revision + 1``,
3. ``backend.commit(commit)`` (durable; raises → nothing changed),
4. apply to memory and return the new revision.

Semantics (fixes over snakepit v0.4.3 are marked FIX in docs/wire-compatibility.md):
identifiers resolve as an id of this session first, then as a name; registering an existing
name is ALREADY_EXISTS unless ``replace=True``; ``expected_version`` is honoured; an atomic batch
is all-or-nothing; every write is one store-wide revision.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import _codec
from .._constraints import canonical_type, check_constraints, validate
from .._errors import (
    AccessDenied,
    DspexError,
    InvalidArgument,
    ResourceLimitExceeded,
    SessionNotFoundError,
    VariableExistsError,
    VariableNotFoundError,
    VersionConflict,
)
from .._patterns import glob_matcher
from .backends.base import Backend, Commit, HistoryRow, SessionRow, VariableRow
from .limits import Limits

List = list  # `Store.list` and `Store.set` (RPCs) shadow the builtins inside the class body
Set = set


def make_id(name: str, revision: int) -> str:
    """A variable id: ``var_<name>#<revision>``. Unique (one registration per revision and
    name) and never equal to a name, since names cannot contain ``#`` — so resolving an
    identifier "as an id first, then as a name" can never pick the wrong variable."""
    return f"var_{name}#{revision}"

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.:/\-]*\Z")


@dataclass(slots=True)
class VarRecord:
    """A live variable: the canonical value plus its persisted row (wire encoding included)."""

    row: VariableRow
    value: Any
    constraints: dict[str, Any]
    #: per-encoding cache owned by the transport layer (e.g. the built protobuf message);
    #: a write creates a new record, so a cache never outlives its value.
    cache: dict[Any, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.row.id

    @property
    def name(self) -> str:
        return self.row.name

    @property
    def type(self) -> str:
        return self.row.type

    @property
    def version(self) -> int:
        return self.row.version


@dataclass(slots=True)
class _Session:
    row: SessionRow
    by_name: dict[str, str] = field(default_factory=dict)  # name -> variable id


class Store:
    """Sessions and variables of one server, persisted through a :class:`Backend`."""

    def __init__(self, backend: Backend, limits: Limits | None = None, clock=time.time) -> None:
        self.backend = backend
        self.limits = limits or Limits()
        self._clock = clock
        snap = backend.load()
        self.store_id = snap.store_id
        self.revision = snap.revision
        self._sessions: dict[str, _Session] = {s.session_id: _Session(s) for s in snap.sessions}
        self._vars: dict[str, VarRecord] = {}
        for row in snap.variables:
            rec = self._record_from_row(row)
            self._vars[row.id] = rec
            sess = self._sessions.get(row.session_id)
            if sess is not None:
                sess.by_name[row.name] = row.id

    @staticmethod
    def _record_from_row(row: VariableRow) -> VarRecord:
        _, raw = _codec.decode(row.type_url, row.data, row.binary)
        constraints = json.loads(row.constraints_json) if row.constraints_json else {}
        return VarRecord(row, validate(row.type, raw, constraints, row.name), constraints)

    # ------------------------------------------------------------------------------------------
    # sessions

    def _session(self, principal: str, session_id: str) -> _Session:
        sess = self._sessions.get(session_id)
        if sess is None:
            raise SessionNotFoundError(f"Session not found: {session_id}")
        if sess.row.principal != principal:
            raise AccessDenied(f"session {session_id!r} belongs to another principal")
        sess.row.last_access = self._clock()
        return sess

    def init_session(self, principal: str, session_id: str, metadata: Mapping[str, str]) -> int:
        """Create the session, or touch it if this principal already has it (idempotent)."""
        _check_id("session id", session_id, self.limits.max_name_length)
        self.limits.check_metadata(metadata)
        if session_id in self._sessions:
            self._session(principal, session_id)
            return self.revision
        if len(self._sessions) >= self.limits.max_sessions:
            raise ResourceLimitExceeded(f"too many sessions (limit {self.limits.max_sessions})")
        now = self._clock()
        row = SessionRow(session_id, principal, dict(metadata), now, now)
        commit = Commit(self.revision + 1, session_upserts=[row])
        self._commit(commit)
        self._sessions[session_id] = _Session(row)
        return self.revision

    def cleanup_session(self, principal: str, session_id: str) -> tuple[int, int]:
        """Delete the session and its variables; return ``(variables_removed, revision)``."""
        sess = self._sessions.get(session_id)
        if sess is None:
            return 0, self.revision
        self._session(principal, session_id)
        commit = Commit(self.revision + 1, session_deletes=[session_id])
        self._commit(commit)
        for vid in sess.by_name.values():
            self._vars.pop(vid, None)
        del self._sessions[session_id]
        return len(sess.by_name), self.revision

    def get_session(self, principal: str, session_id: str) -> tuple[SessionRow, int]:
        sess = self._session(principal, session_id)
        return sess.row, len(sess.by_name)

    def heartbeat(self, principal: str, session_id: str) -> bool:
        try:
            self._session(principal, session_id)
        except DspexError:
            return False
        return True

    # ------------------------------------------------------------------------------------------
    # variables: reads

    def resolve(self, principal: str, session_id: str, ident: str) -> VarRecord:
        """Find a variable of the session by id, then by name."""
        sess = self._session(principal, session_id)
        return self._resolve_in(sess, ident)

    def _resolve_in(self, sess: _Session, ident: str) -> VarRecord:
        rec = self._vars.get(ident)
        if rec is not None and rec.row.session_id == sess.row.session_id:
            return rec
        vid = sess.by_name.get(ident)
        if vid is None:
            raise VariableNotFoundError(f"Variable not found: {ident}")
        return self._vars[vid]

    def get_many(
        self, principal: str, session_id: str, idents: List[str]
    ) -> tuple[dict[str, VarRecord], List[str]]:
        sess = self._session(principal, session_id)
        found: dict[str, VarRecord] = {}
        missing: List[str] = []
        for ident in idents:
            try:
                found[ident] = self._resolve_in(sess, ident)
            except VariableNotFoundError:
                missing.append(ident)
        return found, missing

    def list(self, principal: str, session_id: str, pattern: str = "") -> List[VarRecord]:
        """Variables of the session in registration order; ``pattern`` is a glob on names."""
        sess = self._session(principal, session_id)
        recs = [self._vars[vid] for vid in sess.by_name.values()]
        if pattern and pattern != "*":
            recs = list(filter(glob_matcher(pattern, key=lambda r: r.name), recs))
        recs.sort(key=lambda r: r.row.create_revision)
        return recs

    def history(self, principal: str, session_id: str, ident: str, limit: int = 100,
                offset: int = 0) -> List[HistoryRow]:
        rec = self.resolve(principal, session_id, ident)
        return self.backend.history(rec.id, limit, offset)

    # ------------------------------------------------------------------------------------------
    # variables: writes

    def register(
        self,
        principal: str,
        session_id: str,
        name: str,
        type_name: str,
        raw_value: Any,
        constraints: Mapping[str, Any] | None,
        metadata: Mapping[str, str],
        *,
        replace: bool = False,
    ) -> VarRecord:
        """Create a variable (version 0). Raises VariableExistsError unless ``replace``."""
        spec = (name, type_name, raw_value, constraints, metadata, replace)
        return self.register_many(principal, session_id, [spec])[0]

    def register_many(
        self, principal: str, session_id: str,
        specs: List[tuple[str, str, Any, Mapping[str, Any] | None, Mapping[str, str], bool]],
        updates: Mapping[str, Any] | None = None, update_metadata: Mapping[str, str] | None = None,
    ) -> List[VarRecord]:
        """Register ``(name, type, value, constraints, metadata, replace)`` specs and apply
        ``updates`` (identifier -> value) in one transaction: all or nothing, one revision."""
        sess = self._session(principal, session_id)
        updates = updates or {}
        update_metadata = update_metadata or {}
        if not specs and not updates:  # nothing to write: no new revision
            return []
        self.limits.check_metadata(update_metadata)
        if len(specs) + len(updates) > self.limits.max_batch:
            raise ResourceLimitExceeded(
                f"batch of {len(specs) + len(updates)} entries (limit {self.limits.max_batch})"
            )
        rev = self.revision + 1
        now = self._clock()
        commit = Commit(rev)
        staged: List[VarRecord] = []
        seen: set[str] = set()
        for name, type_name, raw_value, constraints, metadata, replace in specs:
            _check_id("variable name", name, self.limits.max_name_length, _NAME_RE)
            if name in seen:
                raise InvalidArgument(f"variable {name!r} appears twice in one registration batch")
            seen.add(name)
            type_name = canonical_type(type_name)
            cons = check_constraints(type_name, constraints, name)
            value = validate(type_name, raw_value, cons, name)
            self.limits.check_metadata(metadata)
            old_id = sess.by_name.get(name)
            if old_id is not None and not replace:
                raise VariableExistsError(
                    f"variable {name!r} already exists in session {session_id!r} "
                    "(set it, delete it first, or register with replace=True)"
                )
            row = self._row(
                make_id(name, rev), session_id, name, type_name, value, cons, dict(metadata),
                version=0, revision=rev, create_revision=rev, now=now,
            )
            commit.variable_upserts.append(row)
            commit.history.append(self._hist(row, "register", metadata))
            if old_id is not None:
                commit.variable_deletes.append(old_id)
                commit.history.append(self._tombstone(self._vars[old_id].row, rev, now, metadata))
            staged.append(VarRecord(row, value, cons))
        by_id: dict[str, str] = {}
        updated: List[VarRecord] = []
        for ident, raw in updates.items():
            if ident in seen:
                raise InvalidArgument(f"{ident!r} is registered and updated in the same batch")
            new = self._stage_set(sess, ident, raw, rev, by_id, replaced=seen)
            commit.variable_upserts.append(new.row)
            commit.history.append(self._hist(new.row, "set", update_metadata))
            updated.append(new)
        new_names = len([r for r in staged if r.name not in sess.by_name])
        if len(sess.by_name) + new_names > self.limits.max_variables_per_session:
            raise ResourceLimitExceeded(
                f"session {session_id!r} would have {len(sess.by_name) + new_names} variables "
                f"(limit {self.limits.max_variables_per_session})"
            )
        self._commit(commit)
        for old_id in commit.variable_deletes:
            del self._vars[old_id]
        for rec in staged:
            self._vars[rec.id] = rec
            sess.by_name[rec.name] = rec.id
        for rec in updated:
            self._vars[rec.id] = rec
        return staged

    def set(
        self,
        principal: str,
        session_id: str,
        ident: str,
        raw_value: Any,
        metadata: Mapping[str, str],
        expected_version: int | None = None,
    ) -> VarRecord:
        """Write a new value (version + 1). Honours ``expected_version`` (optimistic locking)."""
        sess = self._session(principal, session_id)
        self.limits.check_metadata(metadata)
        rec = self._resolve_in(sess, ident)
        if expected_version is not None and expected_version != rec.version:
            raise VersionConflict(
                f"variable {rec.name!r} is at version {rec.version}, expected {expected_version}"
            )
        new = self._next(rec, raw_value, self.revision + 1)
        self._commit(Commit(new.row.mod_revision, variable_upserts=[new.row],
                            history=[self._hist(new.row, "set", metadata)]))
        self._vars[new.id] = new
        return new

    def set_many(
        self,
        principal: str,
        session_id: str,
        updates: Mapping[str, Any],
        metadata: Mapping[str, str],
        atomic: bool,
    ) -> tuple[dict[str, int], dict[str, str], int]:
        """Batch write; return ``(new_versions, errors, revision)`` keyed by identifier.

        ``updates`` values may be :class:`DspexError` instances (a value that failed to decode);
        they count as that entry's error. Atomic: any error → nothing written, revision 0.
        Non-atomic: the valid entries are written together as one revision.
        """
        sess = self._session(principal, session_id)
        self.limits.check_metadata(metadata)
        if len(updates) > self.limits.max_batch:
            raise ResourceLimitExceeded(f"batch of {len(updates)} updates (limit {self.limits.max_batch})")
        rev = self.revision + 1
        errors: dict[str, str] = {}
        staged: dict[str, VarRecord] = {}  # ident -> new record
        by_id: dict[str, str] = {}
        for ident, raw in updates.items():
            try:
                staged[ident] = self._stage_set(sess, ident, raw, rev, by_id)
            except DspexError as exc:
                errors[ident] = str(exc)
        if (atomic and errors) or not staged:
            return {}, errors, 0
        commit = Commit(rev)
        for new in staged.values():
            commit.variable_upserts.append(new.row)
            commit.history.append(self._hist(new.row, "set", metadata))
        self._commit(commit)
        for new in staged.values():
            self._vars[new.id] = new
        return {ident: new.version for ident, new in staged.items()}, errors, rev

    def delete(self, principal: str, session_id: str, ident: str) -> int:
        sess = self._session(principal, session_id)
        rec = self._resolve_in(sess, ident)
        rev = self.revision + 1
        self._commit(Commit(rev, variable_deletes=[rec.id],
                            history=[self._tombstone(rec.row, rev, self._clock(), {})]))
        del self._vars[rec.id]
        del sess.by_name[rec.name]
        return rev

    # ------------------------------------------------------------------------------------------
    # helpers

    def _stage_set(self, sess: _Session, ident: str, raw: Any, rev: int,
                   by_id: dict[str, str], replaced: Set[str] | None = None) -> VarRecord:
        """The new record for one batch entry (``raw`` may be a decode error to raise)."""
        if isinstance(raw, DspexError):
            raise raw
        rec = self._resolve_in(sess, ident)
        if replaced and rec.name in replaced:  # e.g. the old id of a variable being replaced
            raise InvalidArgument(
                f"{ident!r} names variable {rec.name!r}, which the same batch registers anew"
            )
        if rec.id in by_id:
            raise InvalidArgument(f"{ident!r} and {by_id[rec.id]!r} name the same variable in one batch")
        new = self._next(rec, raw, rev)
        by_id[rec.id] = ident
        return new

    def _next(self, rec: VarRecord, raw_value: Any, rev: int) -> VarRecord:
        value = validate(rec.type, raw_value, rec.constraints, rec.name)
        row = self._row(
            rec.id, rec.row.session_id, rec.name, rec.type, value, rec.constraints,
            rec.row.metadata, version=rec.version + 1, revision=rev,
            create_revision=rec.row.create_revision, now=self._clock(),
            constraints_json=rec.row.constraints_json,
        )
        return VarRecord(row, value, rec.constraints)

    def _row(self, vid, session_id, name, type_name, value, cons, metadata, *, version, revision,
             create_revision, now, constraints_json=None) -> VariableRow:
        type_url, data, binary = _codec.encode(type_name, value)
        size = len(data) + len(binary)
        if size > self.limits.max_value_bytes:
            raise ResourceLimitExceeded(
                f"{name!r}: value is {size} bytes encoded (limit {self.limits.max_value_bytes})"
            )
        if constraints_json is None:
            constraints_json = json.dumps(cons, sort_keys=True)
        return VariableRow(
            vid, session_id, name, type_name, type_url, data, binary, constraints_json,
            metadata, metadata.get("source", "python"), version, revision, create_revision, now,
        )

    def _hist(self, row: VariableRow, op: str, metadata: Mapping[str, str]) -> HistoryRow:
        return HistoryRow(
            row.id, row.session_id, row.version, row.mod_revision, op, row.type_url, row.data,
            row.binary, row.updated_at, metadata.get("source", row.source), dict(metadata),
        )

    @staticmethod
    def _tombstone(old: VariableRow, rev: int, now: float, metadata: Mapping[str, str]) -> HistoryRow:
        return HistoryRow(old.id, old.session_id, old.version, rev, "delete", old.type_url,
                          old.data, old.binary, now, metadata.get("source", old.source),
                          dict(metadata))

    def _commit(self, commit: Commit) -> None:
        self.backend.commit(commit)
        self.revision = commit.revision

    def close(self) -> None:
        self.backend.touch_sessions({s: x.row.last_access for s, x in self._sessions.items()})
        self.backend.close()


def _check_id(what: str, value: Any, max_len: int, pattern: re.Pattern[str] | None = None) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{what} must be a non-empty string")
    if len(value) > max_len:
        raise InvalidArgument(f"{what} is {len(value)} characters long (limit {max_len})")
    if pattern is not None and not pattern.match(value):
        raise InvalidArgument(
            f"{what} {value!r} is not valid: start with a letter or '_', then letters, digits, "
            "'_', '.', ':', '/' or '-'"
        )
    if pattern is None and not value.isprintable():
        raise InvalidArgument(f"{what} {value!r} contains non-printable characters")
