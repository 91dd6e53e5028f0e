"""Staging writes: validate against the in-memory view and build the :class:`Commit`.

Pure functions of the view and the request: nothing here touches the backend or changes the
view (the store's commit pipeline does that). A refused write raises a :class:`DspexError`
before anything is committed.

Semantics (fixes over snakepit v0.4.3 are marked FIX in docs/wire-compatibility.md):
identifiers resolve as an id of this session first, then as a name; registering an existing
name is ALREADY_EXISTS unless ``replace``; ``expected_version`` is honoured (and compared again
inside the backend transaction); an atomic batch is all-or-nothing; every write is one revision.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .. import _codec
from .._constraints import validate
from .._errors import (
    DspexError,
    InvalidArgument,
    OptimizationConflict,
    ResourceLimitExceeded,
    VariableExistsError,
    VariableNotFoundError,
    VersionConflict,
)
from .._values import VariableSpec
from . import access
from .backends.base import Commit, Compare, Delete, DocCompare, Put, StoredVariable
from .limits import Limits
from .prepared import Encoding, PreparedSpec, PreparedValue
from .view import SessionState, View


def resolve(view: View, sess: SessionState, ident: str, need: str | None = None,
            principal: str = "", now: float = 0.0,
            compares: list[DocCompare] | None = None) -> StoredVariable:
    """A variable of the session by id, then by name; with ``need`` (a permission) also
    another session's variable by id where its rules allow it (``access.py``), adding the
    compare on its rules document to ``compares``."""
    var = view.vars.get(ident)
    if var is not None and var.session_id == sess.row.session_id:
        return var
    if var is not None and need is not None and ident not in sess.by_name:
        found = access.guard(view, var, sess.row.session_id, principal, need, now)
        if compares is not None:
            compares.extend(found)
        return var
    vid = sess.by_name.get(ident)
    if vid is None:
        shown = ident if len(ident) <= 80 else ident[:77] + "..."
        # v0.4.3's "Variable not found: <id>" prefix, with the name quoted and the session named
        raise VariableNotFoundError(
            f"Variable not found: {shown!r} in session {sess.row.session_id!r}")
    return view.vars[vid]


def check_unlocked(view: View, var: StoredVariable, fencing: str | None = None) -> None:
    """Refuse an ordinary write to a variable an optimization run holds (``fencing`` is the
    holding run's id for the run's own writes)."""
    run_id = view.locks.get(var.id)
    if run_id is not None and run_id != fencing:
        raise OptimizationConflict(
            f"variable {var.name!r} is being optimized by run {run_id!r}: writes are refused "
            "until the run ends (stop_optimization to end it)"
        )


def encoded(limits: Limits, var_id: str, session_id: str, name: str, type_name: str, value: Any,
            constraints: dict[str, Any], constraints_json: str, metadata: dict[str, str],
            version: int, create_revision: int, ts: float,
            encoding: Encoding | None = None) -> StoredVariable:
    """A new variable state (revision fields are stamped by the backend); ``encoding``:
    the value's, if already made (``prepared.py``)."""
    type_url, data, binary = encoding or _codec.encode(type_name, value)
    size = len(data) + len(binary)
    if size > limits.max_value_bytes:
        raise ResourceLimitExceeded(
            f"{name!r}: value is {size} bytes encoded (limit {limits.max_value_bytes})"
        )
    return StoredVariable(
        var_id, session_id, name, type_name, type_url, data, binary, constraints_json, metadata,
        metadata.get("source", "python"), version, 0, create_revision, ts, value, constraints,
    )


def next_state(limits: Limits, var: StoredVariable, raw_value: Any, ts: float) -> StoredVariable:
    """``var`` with a new value, version + 1 (validated against its type and constraints;
    ``raw_value`` may be a :class:`PreparedValue`, used if prepared against ``var``)."""
    encoding = None
    if isinstance(raw_value, PreparedValue):
        ready = raw_value.for_variable(var)
        if ready is None:
            raw_value = raw_value.raw
        else:
            value, encoding = ready
    if encoding is None:
        value = validate(var.type, raw_value, var.constraints, var.name)
    return encoded(limits, var.id, var.session_id, var.name, var.type, value, var.constraints,
                   var.constraints_json, var.metadata, var.version + 1, var.create_revision, ts,
                   encoding)


def stage_register(view: View, limits: Limits, sess: SessionState,
                   specs: Sequence[VariableSpec | PreparedSpec],
                   updates: Mapping[str, Any], update_metadata: Mapping[str, str], principal: str,
                   ts: float) -> tuple[Commit, list[StoredVariable]]:
    """Registrations plus updates as one commit; returns it and the new variables."""
    limits.check_metadata(update_metadata)
    if len(specs) + len(updates) > limits.max_batch:
        raise ResourceLimitExceeded(
            f"batch of {len(specs) + len(updates)} entries (limit {limits.max_batch})"
        )
    commit = Commit(ts=ts)
    created: list[StoredVariable] = []
    seen: set[str] = set()
    session_id = sess.row.session_id
    for raw in specs:
        if isinstance(raw, PreparedSpec):
            spec, encoding, constraints_json = raw.checked()
        else:
            spec = VariableSpec.checked(raw.name, raw.type, raw.value, raw.constraints,
                                        raw.metadata, raw.replace)
            encoding, constraints_json = None, json.dumps(spec.constraints, sort_keys=True)
        if spec.name in seen:
            raise InvalidArgument(f"variable {spec.name!r} appears twice in one registration batch")
        seen.add(spec.name)
        limits.check_metadata(spec.metadata)
        old_id = sess.by_name.get(spec.name)
        if old_id is not None and not spec.replace:
            raise VariableExistsError(
                f"variable {spec.name!r} already exists in session {session_id!r} "
                "(set it, delete it first, or register with replace=True)"
            )
        var = encoded(limits, "", session_id, spec.name, spec.type, spec.value, spec.constraints,
                      constraints_json, spec.metadata, 0, 0, ts, encoding)
        if old_id is not None:
            old = view.vars[old_id]
            check_unlocked(view, old)
            commit.deletes.append(Delete(old, principal, spec.metadata))
            commit.compares.append(Compare(session_id, old.name, old.id, old.version))
        else:
            commit.compares.append(Compare(session_id, spec.name))
        commit.puts.append(Put(var, "register", principal, spec.metadata))
        created.append(var)
    by_id: dict[str, str] = {}
    for ident, raw_value in updates.items():
        if ident in seen:
            raise InvalidArgument(f"{ident!r} is registered and updated in the same batch")
        new = _stage_update(view, limits, sess, ident, raw_value, by_id, ts, principal,
                            commit.doc_compares, replaced=seen)
        commit.puts.append(Put(new, "set", principal, dict(update_metadata)))
        commit.compares.append(Compare(session_id, new.name, new.id, new.version - 1))
    new_names = sum(1 for v in created if v.name not in sess.by_name)
    if len(sess.by_name) + new_names > limits.max_variables_per_session:
        raise ResourceLimitExceeded(
            f"session {session_id!r} would have {len(sess.by_name) + new_names} variables "
            f"(limit {limits.max_variables_per_session})"
        )
    return commit, created


def stage_set(view: View, limits: Limits, sess: SessionState, ident: str, raw_value: Any,
              metadata: Mapping[str, str], expected_version: int | None, principal: str,
              ts: float) -> tuple[Commit, StoredVariable]:
    limits.check_metadata(metadata)
    doc_compares: list[DocCompare] = []
    var = resolve(view, sess, ident, "write", principal, ts, doc_compares)
    check_unlocked(view, var)
    if expected_version is not None and expected_version != var.version:
        raise VersionConflict(
            f"variable {var.name!r} is at version {var.version}, expected {expected_version}"
        )
    new = next_state(limits, var, raw_value, ts)
    commit = Commit([Put(new, "set", principal, dict(metadata))],
                    compares=[Compare(var.session_id, var.name, var.id, var.version)],
                    doc_compares=doc_compares, ts=ts)
    return commit, new


def stage_batch(view: View, limits: Limits, sess: SessionState, updates: Mapping[str, Any],
                metadata: Mapping[str, str], atomic: bool, principal: str,
                ts: float) -> tuple[Commit | None, dict[str, StoredVariable], dict[str, str]]:
    """A batch write: ``(commit or None, {ident: new state}, {ident: error})``.

    ``updates`` values may be :class:`DspexError` instances (a value that failed to decode);
    they count as that entry's error. Atomic: any error → no commit.
    """
    limits.check_metadata(metadata)
    if len(updates) > limits.max_batch:
        raise ResourceLimitExceeded(f"batch of {len(updates)} updates (limit {limits.max_batch})")
    errors: dict[str, str] = {}
    staged: dict[str, StoredVariable] = {}
    by_id: dict[str, str] = {}
    doc_compares: list[DocCompare] = []
    for ident, raw in updates.items():
        try:
            staged[ident] = _stage_update(view, limits, sess, ident, raw, by_id, ts, principal,
                                          doc_compares)
        except DspexError as exc:
            errors[ident] = str(exc)
    if (atomic and errors) or not staged:
        return None, {}, errors
    commit = Commit(ts=ts, doc_compares=doc_compares)
    for new in staged.values():
        commit.puts.append(Put(new, "set", principal, dict(metadata)))
        commit.compares.append(Compare(new.session_id, new.name, new.id, new.version - 1))
    return commit, staged, errors


def stage_delete(view: View, sess: SessionState, ident: str, principal: str,
                 ts: float) -> Commit:
    var = resolve(view, sess, ident)
    check_unlocked(view, var)
    return Commit(deletes=[Delete(var, principal, {})],
                  compares=[Compare(var.session_id, var.name, var.id, var.version)], ts=ts)


def _stage_update(view: View, limits: Limits, sess: SessionState, ident: str, raw: Any,
                  by_id: dict[str, str], ts: float, principal: str,
                  doc_compares: list[DocCompare],
                  replaced: set[str] | None = None) -> StoredVariable:
    """The new state for one batch entry (``raw`` may be a decode error to raise); a
    variable of another session needs ``write`` (its rules compare joins ``doc_compares``)."""
    if isinstance(raw, DspexError):
        raise raw
    var = resolve(view, sess, ident, "write", principal, ts, doc_compares)
    check_unlocked(view, var)
    if replaced and var.name in replaced:  # e.g. the old id of a variable being replaced
        raise InvalidArgument(
            f"{ident!r} names variable {var.name!r}, which the same batch registers anew"
        )
    if var.id in by_id:
        raise InvalidArgument(f"{ident!r} and {by_id[var.id]!r} name the same variable in one batch")
    new = next_state(limits, var, raw, ts)
    by_id[var.id] = ident
    return new
