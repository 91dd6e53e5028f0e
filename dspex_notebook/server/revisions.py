"""Store revisions as a user feature: read a session as of a revision, restore it to one.

Both read the change log (:meth:`Backend.read_at`), so they reach back as far as the server's
retention (``serve --retain-revisions``); below the compaction watermark the answer is the
explicit :class:`~.._errors.Compacted` error naming the oldest revision still readable.

:func:`stage_restore` makes the session's variables what they were at revision ``R`` as ONE
new revision through the ordinary commit pipeline (watchers see one revision):

* a variable that exists now and at ``R`` (same id) gets a new version holding its value at
  ``R`` (unchanged values are left alone);
* a variable that existed at ``R`` but was deleted, or re-registered since (another id), comes
  back under its id of ``R``, with its type, constraints and value of then, as the next version
  of that id (what replaced it is deleted);
* a variable created after ``R`` is **deleted** (it did not exist at ``R``); its history stays,
  so restoring the revision before the restore brings it back.

A restore that would touch a variable an optimization run holds is refused, naming both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import _codec
from .._constraints import validate
from .._errors import InvalidArgument, OptimizationConflict
from .backends.base import Commit, Compare, Delete, HistoryRow, Put, StoredVariable

if TYPE_CHECKING:
    from .store import Store


def _check_revision(store: Store, revision: int) -> None:
    if revision < 0:
        raise InvalidArgument(f"revision must be >= 0, got {revision}")
    if revision > store.revision:
        raise InvalidArgument(f"revision {revision} is ahead of the store (its current revision "
                              f"is {store.revision})")


def rows_at(store: Store, principal: str, session_id: str, revision: int) -> list[HistoryRow]:
    """The session's change-log rows in force at ``revision`` (one per live variable).

    Raises:
        Compacted: ``revision`` is below the compaction watermark.
        InvalidArgument: ``revision`` is negative or ahead of the store.
    """
    store._session(principal, session_id)
    _check_revision(store, revision)
    return store.backend.read_at(session_id, revision)


def decode_rows(rows: list[HistoryRow]) -> list[StoredVariable]:
    """The rows as variables with decoded values (pure: may run off the loop)."""
    out = []
    for row in rows:
        constraints = json.loads(row.constraints_json) if row.constraints_json else {}
        _, raw = _codec.decode(row.type_url, row.data, row.binary)
        out.append(StoredVariable(
            row.var_id, row.session_id, row.name, row.type, row.type_url, row.data, row.binary,
            row.constraints_json, {}, row.changed_by, row.version, row.revision,
            _created(row.var_id), row.ts, validate(row.type, raw, constraints, row.name),
            constraints))
    return out


def _created(var_id: str) -> int:
    """The registration revision inside an id (``var_<name>#<revision>``)."""
    tail = var_id.rpartition("#")[2]
    return int(tail) if tail.isdigit() else 0


def metadata_of(store: Store, var: StoredVariable) -> dict[str, str]:
    """A variable's registration metadata (an id's metadata never changes): from the live
    variable of that id, else from the id's registration entry while the log keeps it."""
    live = store.view.vars.get(var.id)
    if live is not None:
        return dict(live.metadata)
    count = store.backend.history_length(var.id)
    oldest = store.backend.history(var.id, 1, max(count - 1, 0))
    if oldest and oldest[0].op == "register":
        return dict(oldest[0].metadata)
    return {}


def pick(variables: list[StoredVariable], idents: list[str]) -> tuple[dict[str, StoredVariable], list[str]]:
    """``({ident: variable}, missing)``: identifiers are ids, then names."""
    by_id = {v.id: v for v in variables}
    by_name = {v.name: v for v in variables}
    found, missing = {}, []
    for ident in idents:
        var = by_id.get(ident) or by_name.get(ident)
        if var is None:
            missing.append(ident)
        else:
            found[ident] = var
    return found, missing


@dataclass(slots=True)
class RestorePlan:
    commit: Commit
    summary: dict[str, Any]


def stage_restore(store: Store, principal: str, session_id: str, revision: int,
                  then: list[StoredVariable]) -> RestorePlan:
    """The commit that restores the session to ``then`` (its variables at ``revision``).

    Raises:
        OptimizationConflict: a variable it would write or delete is held by a run.
    """
    sess = store._session(principal, session_id)
    ts = store._clock()
    meta = {"source": "restore", "restored_to": str(revision)}
    commit = Commit(ts=ts)
    details: list[dict[str, Any]] = []
    now = {name: store.view.vars[vid] for name, vid in sess.by_name.items()}
    touched: list[StoredVariable] = []
    for old in then:
        cur = now.get(old.name)
        if cur is not None and cur.id == old.id:
            if (cur.type_url, cur.data, cur.binary) == (old.type_url, old.data, old.binary):
                details.append({"name": old.name, "action": "unchanged", "version": cur.version})
                continue
            new = StoredVariable(cur.id, session_id, cur.name, cur.type, old.type_url, old.data,
                                 old.binary, cur.constraints_json, cur.metadata, cur.source,
                                 cur.version + 1, 0, cur.create_revision, ts, old.value,
                                 cur.constraints)
            commit.puts.append(Put(new, "set", principal, dict(meta)))
            commit.compares.append(Compare(session_id, cur.name, cur.id, cur.version))
            touched.append(cur)
            details.append({"name": old.name, "action": "set", "from_version": cur.version,
                            "to_version": new.version, "value_of_version": old.version})
            continue
        if cur is not None:  # re-registered since: the replacement goes
            commit.deletes.append(Delete(cur, principal, dict(meta)))
            commit.compares.append(Compare(session_id, cur.name, cur.id, cur.version))
            touched.append(cur)
        else:
            commit.compares.append(Compare(session_id, old.name))
        newest = store.backend.history(old.id, 1, 0)
        version = (newest[0].version if newest else old.version) + 1
        back = StoredVariable(old.id, session_id, old.name, old.type, old.type_url, old.data,
                              old.binary, old.constraints_json, metadata_of(store, old),
                              "restore", version, 0, old.create_revision, ts, old.value,
                              old.constraints)
        commit.puts.append(Put(back, "register", principal, dict(meta)))
        details.append({"name": old.name, "action": "recreated", "to_version": version,
                        "value_of_version": old.version, "id": old.id})
    names_then = {v.name for v in then}
    for name, cur in now.items():
        if name not in names_then:
            commit.deletes.append(Delete(cur, principal, dict(meta)))
            commit.compares.append(Compare(session_id, cur.name, cur.id, cur.version))
            touched.append(cur)
            details.append({"name": name, "action": "deleted", "from_version": cur.version,
                            "reason": f"created after revision {revision}"})
    for var in touched:
        run_id = store.view.locks.get(var.id)
        if run_id is not None:
            raise OptimizationConflict(
                f"restore_session({revision}) refused: variable {var.name!r} is being optimized "
                f"by run {run_id!r} (stop_optimization first)")
    by_action: dict[str, list[str]] = {"set": [], "recreated": [], "deleted": [], "unchanged": []}
    for d in details:
        by_action[d["action"]].append(d["name"])
    return RestorePlan(commit, {"restored_to": revision, **by_action, "details": details})
