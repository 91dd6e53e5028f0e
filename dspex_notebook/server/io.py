"""Export and import of a session's variables (the document format is ``io_document.py``).

Export reads a consistent snapshot (the session's variables as committed at one revision; their
history up to that revision) and serializes it off the event loop. Import is ONE commit through
the ordinary pipeline, so watchers see it as one revision; a refused import writes nothing.

Merge strategies, for a variable that already exists in the session (a variable that does not
is always created, with its version, value, metadata and — when the document has it — its
history replayed as entries of that one revision):

* ``replace``: the session's variable becomes the document's. Same type, constraints and
  metadata: a new version with the document's value (skipped when the value is the same).
  Otherwise it is re-registered (a new id), as ``register_variable(..., replace=True)`` does.
* ``keep``: the session's variable stays as it is (skipped).
* ``merge``: the two are combined, keeping the session variable's type and constraints:
  ``dict`` values are merged key by key, recursively (the document wins on a key both have);
  ``list`` values are the session's items followed by the document's items it lacks; every
  other type (numbers, strings, booleans, choices, modules, embeddings, tensors) takes the
  document's value. Metadata is the union (the document wins on a key both have). Different
  types are an error for that variable. The merged value must satisfy the constraints.

A variable an optimization run holds is an error (naming the run), under every strategy but
``keep``. Optional document sections (``dependencies``, ``rules``) are applied by the
handlers registered in :data:`SECTION_IMPORTERS`; without one the summary says the section
was not applied.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._errors import DspexError, InvalidArgument, ResourceLimitExceeded
from .._patterns import regex_matcher
from .backends.base import Commit, Compare, Delete, HistoryRow, Put, StoredVariable
from .io_document import MAX_HISTORY_ENTRIES, Document, Entry, encode_checked
from .view import SessionState
from .writes import check_unlocked

if TYPE_CHECKING:
    from .store import Store

STRATEGIES = ("replace", "keep", "merge")

#: section name -> fn(store, session_id, variables) -> JSON-able list (or None: leave it out)
SECTION_EXPORTERS: dict[str, Callable[[Store, str, list[StoredVariable]], Any]] = {}
#: section name -> fn(store, principal, session_id, section, commit) -> summary text
SECTION_IMPORTERS: dict[str, Callable[[Store, str, str, Any, Commit], str]] = {}


# ----------------------------------------------------------------------------------------------
# export


def export_snapshot(store: Store, principal: str, session_id: str, pattern: str,
                    include_history: bool) -> tuple[list[StoredVariable], dict[str, list[HistoryRow]], int]:
    """``(variables, {id: history rows oldest first}, revision)`` of the session now.

    Raises:
        InvalidArgument: ``pattern`` is not an RE2 regular expression.
        ResourceLimitExceeded: more history entries than one export may hold.
    """
    found = store.list(principal, session_id)
    if pattern:
        match = regex_matcher(pattern, "filter_pattern")
        found = [v for v in found if match(v.name)]
    revision = store.revision
    history: dict[str, list[HistoryRow]] = {}
    if include_history:
        total = 0
        for var in found:
            rows = [r for r in store.backend.history(var.id, MAX_HISTORY_ENTRIES + 1, 0)
                    if r.revision <= revision and r.op != "delete"]
            total += len(rows)
            if total > MAX_HISTORY_ENTRIES:
                raise ResourceLimitExceeded(
                    f"the export would hold more than {MAX_HISTORY_ENTRIES} history entries; "
                    "narrow filter_pattern or leave out the history")
            history[var.id] = rows[::-1]
    return found, history, revision


def export_sections(store: Store, session_id: str, variables: list[StoredVariable],
                    include_dependencies: bool) -> dict[str, Any]:
    out = {}
    for key, fn in SECTION_EXPORTERS.items():
        if key == "dependencies" and not include_dependencies:
            continue
        section = fn(store, session_id, variables)
        if section:
            out[key] = section
    return out


# ----------------------------------------------------------------------------------------------
# import


def stage_import(store: Store, principal: str, session_id: str, doc: Document,
                 strategy: str) -> tuple[Commit, dict[str, Any]]:
    """The commit of an import and its summary (``imported``, ``skipped``, ``errors``,
    ``details``); the caller commits it unless it is a dry run or has errors."""
    if strategy not in STRATEGIES:
        raise InvalidArgument(f"merge_strategy must be one of {', '.join(STRATEGIES)}, got "
                              f"{strategy!r}")
    sess = store._session(principal, session_id)
    ts = store._clock()
    commit = Commit(ts=ts)
    details: list[dict[str, Any]] = []
    counts = {"imported": 0, "skipped": 0, "errors": 0}
    creates = 0
    for entry in doc.entries:
        try:
            action, reason = _stage_entry(store, sess, entry, strategy, principal, ts, commit)
        except DspexError as exc:
            action, reason = "error", str(exc)
        if action == "create":
            creates += 1
        key = {"skip": "skipped", "error": "errors"}.get(action, "imported")
        counts[key] += 1
        details.append({"name": entry.name, "action": action, "reason": reason})
    limit = store.limits.max_variables_per_session
    if len(sess.by_name) + creates > limit:
        counts["errors"] += 1
        details.append({"name": None, "action": "error", "reason":
                        f"the session would have {len(sess.by_name) + creates} variables "
                        f"(limit {limit})"})
    sections = {}
    for key, section in doc.sections.items():
        importer = SECTION_IMPORTERS.get(key)
        sections[key] = (importer(store, principal, session_id, section, commit) if importer
                         else f"not applied: this server does not support {key!r} sections")
    return commit, {**counts, "details": details, "sections": sections,
                    "strategy": strategy}


def _stage_entry(store: Store, sess: SessionState, entry: Entry, strategy: str, principal: str,
                 ts: float, commit: Commit) -> tuple[str, str]:
    if entry.error:
        return "error", entry.error
    assert entry.value is not None
    sid = sess.row.session_id
    cur_id = sess.by_name.get(entry.name)
    if cur_id is None:
        commit.compares.append(Compare(sid, entry.name))
        _create(commit, entry, sid, principal, ts)
        history = f" with {len(entry.history)} history entries" if entry.history else ""
        return "create", f"new variable (version {entry.version}{history})"
    cur = store.view.vars[cur_id]
    if strategy == "keep":
        return "skip", f"exists (version {cur.version}) and merge_strategy is 'keep'"
    check_unlocked(store.view, cur)
    if strategy == "merge":
        if entry.type != cur.type:
            raise InvalidArgument(f"cannot merge a {entry.type} value into {entry.name!r}, a "
                                  f"{cur.type} variable (use merge_strategy='replace')")
        merged = merge_values(cur.type, cur.value, entry.value.value)
        value = encode_checked(store.limits, cur.type, merged, cur.constraints, cur.name)
        metadata = {**cur.metadata, **entry.metadata}
        entry = Entry(entry.name, cur.type, value, merged, cur.constraints, cur.constraints_json,
                      metadata, entry.version, None, cur.source)
        verb = "merge"
    else:
        verb = "replace"
    assert entry.value is not None
    same_definition = (entry.type == cur.type and entry.constraints == cur.constraints
                       and entry.metadata == cur.metadata)
    commit.compares.append(Compare(sid, cur.name, cur.id, cur.version))
    if same_definition:
        if (entry.value.type_url, entry.value.data, entry.value.binary) == (
                cur.type_url, cur.data, cur.binary):
            commit.compares.pop()
            return "skip", f"unchanged: the same value as version {cur.version}"
        new = StoredVariable(cur.id, sid, cur.name, cur.type, entry.value.type_url,
                             entry.value.data, entry.value.binary, cur.constraints_json,
                             cur.metadata, cur.source, cur.version + 1, 0, cur.create_revision,
                             ts, entry.value.value, cur.constraints)
        commit.puts.append(Put(new, "set", principal, {"source": "import"}))
        return verb, f"new version {cur.version + 1} (was version {cur.version})"
    commit.deletes.append(Delete(cur, principal, {"source": "import"}))
    _create(commit, entry, sid, principal, ts)
    return verb, "re-registered: its type, constraints or metadata differ"


def _create(commit: Commit, entry: Entry, sid: str, principal: str, ts: float) -> None:
    """Puts of a new variable: its replayed history, then its current state."""

    def state(value: Any, version: int, updated_at: float) -> StoredVariable:
        return StoredVariable("", sid, entry.name, entry.type, value.type_url, value.data,
                              value.binary, entry.constraints_json, entry.metadata, entry.source,
                              version, 0, 0, updated_at, value.value, entry.constraints)

    assert entry.value is not None
    first = True
    for h in entry.history:
        if h.version == entry.version:  # the current state comes last, from the variable
            break
        commit.puts.append(Put(state(h.value, h.version, h.updated_at), "register" if first
                               else "set", h.updated_by or principal, h.metadata, ts=h.updated_at))
        first = False
    last = entry.history[-1] if entry.history else None
    if last is not None and last.version == entry.version:
        by, metadata, when = last.updated_by or principal, last.metadata, last.updated_at
    else:
        by, metadata, when = principal, {"source": "import"}, ts
    updated_at = entry.updated_at if entry.updated_at is not None else when
    commit.puts.append(Put(state(entry.value, entry.version, updated_at),
                           "register" if first else "set", by, metadata, ts=when))


def merge_values(type_name: str, ours: Any, theirs: Any) -> Any:
    """What ``merge`` makes of the session's value and the document's (see the module doc)."""
    if type_name == "dict" and isinstance(ours, dict) and isinstance(theirs, dict):
        return _merge_dicts(ours, theirs)
    if type_name == "list" and isinstance(ours, list) and isinstance(theirs, list):
        keys = {json.dumps(x, sort_keys=True) for x in ours}
        return list(ours) + [x for x in theirs if json.dumps(x, sort_keys=True) not in keys]
    return theirs


def _merge_dicts(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    out = dict(ours)
    for key, value in theirs.items():
        mine = out.get(key)
        out[key] = (_merge_dicts(mine, value) if isinstance(mine, dict) and isinstance(value, dict)
                    else value)
    return out


def refusal(summary: dict[str, Any]) -> InvalidArgument:
    """The error of an import that has errors (nothing was written)."""
    bad = [d for d in summary["details"] if d["action"] == "error"]
    shown = "; ".join(f"{d['name']!r}: {d['reason']}" if d["name"] else d["reason"]
                      for d in bad[:5])
    more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
    return InvalidArgument(f"import refused, nothing was imported: {len(bad)} variable(s) have "
                           f"errors: {shown}{more} (dry_run=True lists every variable)")


from . import io_sections  # noqa: E402,F401  (registers the dependencies and rules sections)
