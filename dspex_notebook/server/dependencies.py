"""Variable dependencies: typed edges between the variables of a session (no grpc here).

An edge ``from → to`` says that variable ``from`` depends on variable ``to`` (the spec's
``add_dependency(from_variable, to_variable, dependency_type, metadata)``). It has a ``type``
(``data``, ``constraint`` or ``optimization``) and ``metadata`` (a small JSON object of scalars).

**Storage.** A session's whole graph is ONE document of the store (:class:`DocRow`, kind
:data:`KIND`, key = the session id): ``{"edges": [{"from", "to", "type", "metadata"}, ...]}``
sorted by ``(from, to)``. Edges name variables by *name*: names are unique in a session, stay
when a variable is re-registered with ``replace=True`` and survive export/import (ids do not).
Every edit is a read-modify-write of that document staged into a :class:`Commit` together with a
:class:`DocCompare` on the revision that was read, so the backend refuses the second of two
concurrent edits made from the same graph: two adds that would together form a cycle can never
both succeed, on any backend. The document goes with its session (``CleanupSession``).

**Rules** (checked when an edit is staged): both variables exist (a name registered in the same
commit counts), no self-edge, no duplicate edge, a known type, metadata within
:attr:`Limits.max_edge_metadata_bytes`, at most :attr:`Limits.max_edges_per_session` edges, and
no cycle (``InvalidArgument``, a ValueError, naming it: ``a → b → c → a``). Deleting a variable
that others depend on is refused unless forced (:func:`check_delete`); every commit that
deletes a variable for good also drops its edges (:func:`drop_deleted`, called by
``Store._commit``), so no edge outlives its variables.

**API for other server modules** (export/import, restore): all take the server's
:class:`~.view.View` and stage into a commit that the caller then passes to ``Store._commit``:

* :func:`read_edges(view, session_id) <read_edges>` → ``[{"from", "to", "type", "metadata"}]``
  (names, sorted), the session's current edges;
* :func:`stage_edges(view, limits, commit, session_id, edges, replace=False) <stage_edges>`
  adds ``edges`` (same shape; ``type`` defaults to ``data``, ``metadata`` to ``{}``) to the
  graph as it will be after what ``commit`` already stages (its puts and deletes count for
  "exists", and an earlier ``stage_edges`` on the same commit is built upon); an edge already
  present is overwritten (merge), ``replace=True`` drops the session's other edges first. Every
  rule above is checked; on error nothing is staged. Call it after staging the variables.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._errors import InvalidArgument, ResourceLimitExceeded, shorten
from .backends.base import Commit, DocCompare, DocRow
from .dependency_graph import ARROW, EMPTY, Edge, Edit, Graph
from .limits import Limits
from .view import SessionState, View
from .writes import resolve

if TYPE_CHECKING:
    from .store import Store

#: the documents' kind (access rules and other concepts use kinds of their own)
KIND = "dependencies"
TYPES = ("data", "constraint", "optimization")

__all__ = ["ARROW", "KIND", "TYPES", "Edge", "Graph", "add", "check_delete", "drop_deleted",
           "graph", "lookup", "read_edges", "remove", "stage_edges"]


#: session id -> (the graph document's row, its parsed graph): one entry per session, checked
#: by identity, so its memory is at most that of the documents themselves
_cache: dict[str, tuple[DocRow, Graph]] = {}
_CACHE_MAX = 10_000


def _parsed(row: DocRow | None) -> Graph:
    if row is None or row.doc is None:
        return EMPTY
    hit = _cache.get(row.key)
    if hit is not None and hit[0] is row:
        return hit[1]
    graph = Graph.from_doc(row.doc)
    _remember(row, graph)
    return graph


def _remember(row: DocRow, graph: Graph) -> None:
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    _cache[row.key] = (row, graph)


def graph(view: View, session_id: str) -> Graph:
    """The session's committed graph."""
    return _parsed(view.docs.get((KIND, session_id)))


def read_edges(view: View, session_id: str) -> list[dict[str, Any]]:
    """The session's edges as ``{"from", "to", "type", "metadata"}`` (names), sorted."""
    return [e.as_dict() for e in graph(view, session_id).edges.values()]


# ----------------------------------------------------------------------------------------------
# staging


def _staged(view: View, commit: Commit, session_id: str) -> Graph:
    """The graph as it will be after what ``commit`` already stages."""
    for row in commit.docs:
        if row.kind == KIND and row.key == session_id:
            return _parsed(row)
    return graph(view, session_id)


def _write(view: View, commit: Commit, session_id: str, new: Graph) -> None:
    """Stage ``new`` as the session's graph, compared against the revision that was read."""
    row = DocRow(KIND, session_id, session_id, new.to_doc() if new.edges else None)
    commit.docs = [d for d in commit.docs if not (d.kind == KIND and d.key == session_id)]
    commit.docs.append(row)
    if row.doc is not None:
        _remember(row, new)
    if not any(c.kind == KIND and c.key == session_id for c in commit.doc_compares):
        current = view.docs.get((KIND, session_id))
        commit.doc_compares.append(DocCompare(KIND, session_id, current.mod_revision if current else 0))


def _names_after(view: View, commit: Commit, session_id: str) -> set[str]:
    sess = view.sessions.get(session_id)
    names = set(sess.by_name) if sess is not None else set()
    names -= {d.var.name for d in commit.deletes if d.var.session_id == session_id}
    names |= {p.var.name for p in commit.puts if p.var.session_id == session_id}
    return names


def check_type(dependency_type: str) -> str:
    kind = dependency_type or "data"
    if kind not in TYPES:
        raise InvalidArgument(f"dependency type must be one of {', '.join(TYPES)}, "
                              f"got {shorten(dependency_type)}")
    return kind


def check_metadata(limits: Limits, metadata: Any, where: str) -> dict[str, Any]:
    """Edge metadata: a JSON object of scalars (string, number, boolean, null), small."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidArgument(f"{where}: dependency metadata must be an object, got "
                              f"{type(metadata).__name__}")
    if len(metadata) > limits.max_metadata_entries:
        raise ResourceLimitExceeded(f"{where}: dependency metadata has {len(metadata)} entries "
                                    f"(limit {limits.max_metadata_entries})")
    for key, value in metadata.items():
        if not isinstance(key, str) or len(key) > limits.max_name_length:
            raise InvalidArgument(f"{where}: dependency metadata keys must be strings of at most "
                                  f"{limits.max_name_length} characters, got {shorten(key)}")
        if not (value is None or isinstance(value, (str, bool, int, float))) or (
                isinstance(value, float) and not math.isfinite(value)):
            raise InvalidArgument(f"{where}: dependency metadata {key!r} must be a JSON scalar "
                                  f"(string, number, boolean or null), got {shorten(value)}")
    size = len(json.dumps(dict(metadata)))
    if size > limits.max_edge_metadata_bytes:
        raise ResourceLimitExceeded(f"{where}: dependency metadata is {size} bytes of JSON "
                                    f"(limit {limits.max_edge_metadata_bytes})")
    return dict(metadata)


def parse_metadata_json(limits: Limits, text: str, where: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        loaded = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidArgument(f"{where}: dependency metadata is not valid JSON: {exc}") from None
    return check_metadata(limits, loaded, where)


def stage_edges(view: View, limits: Limits, commit: Commit, session_id: str,
                edges: Iterable[Mapping[str, Any]], replace: bool = False) -> None:
    """Stage ``edges`` (``{"from", "to", "type"?, "metadata"?}`` by name) into ``commit``: see
    the module docstring. Nothing is staged when one breaks a rule."""
    work = Edit(EMPTY if replace else _staged(view, commit, session_id))
    names = _names_after(view, commit, session_id)
    for raw in edges:
        where = f"dependency {shorten(raw.get('from'), 40)} → {shorten(raw.get('to'), 40)}"
        source, target = raw.get("from"), raw.get("to")
        if not isinstance(source, str) or not isinstance(target, str):
            raise InvalidArgument(f"{where}: 'from' and 'to' must be variable names")
        edge = Edge(source, target, check_type(str(raw.get("type") or "")),
                    check_metadata(limits, raw.get("metadata"), where))
        work.remove((source, target))  # merge: the incoming edge wins
        work.add(limits, edge, names)
    _write(view, commit, session_id, work.graph())


def stage_add(view: View, limits: Limits, sess: SessionState, source: str, target: str,
              dependency_type: str, metadata: Mapping[str, Any] | None) -> Commit:
    """The commit of ``add_dependency`` (identifiers are ids or names)."""
    a, b = resolve(view, sess, source), resolve(view, sess, target)
    where = f"dependency {a.name} → {b.name}"
    edge = Edge(a.name, b.name, check_type(dependency_type), check_metadata(limits, metadata, where))
    commit = Commit()
    sid = sess.row.session_id
    work = Edit(graph(view, sid))
    work.add(limits, edge, set(sess.by_name))
    _write(view, commit, sid, work.graph())
    return commit


def stage_remove(view: View, sess: SessionState, source: str, target: str) -> Commit:
    a, b = resolve(view, sess, source), resolve(view, sess, target)
    sid = sess.row.session_id
    current = graph(view, sid)
    edges = dict(current.edges)
    if edges.pop((a.name, b.name), None) is None:
        raise InvalidArgument(f"{a.name!r} does not depend on {b.name!r}")
    commit = Commit()
    _write(view, commit, sid, current.derived(edges, {(a.name, b.name)}))
    return commit


def stage_declared(view: View, limits: Limits, commit: Commit, sess: SessionState,
                   declared: Mapping[str, Sequence[str]]) -> None:
    """``register_variable(..., dependencies=[...])``: edges of type ``data`` from each newly
    registered name to the variables named (ids or names; names registered in the same commit
    count). Re-registering (``replace``) with dependencies replaces its outgoing edges."""
    sid = sess.row.session_id
    created = {p.var.name for p in commit.puts if p.op == "register"}
    work = Edit(_staged(view, commit, sid))
    names = _names_after(view, commit, sid)
    for name, idents in declared.items():
        if not idents:
            continue
        for key in [k for k in work.edges if k[0] == name]:
            work.remove(key)
        for ident in dict.fromkeys(idents):
            target = ident if ident in created else resolve(view, sess, ident).name
            work.add(limits, Edge(name, target), names)
    _write(view, commit, sid, work.graph())


def check_delete(view: View, session_id: str, name: str, force: bool) -> None:
    """Refuse deleting ``name`` while others depend on it, unless ``force``."""
    if force:
        return
    users = sorted(e.source for e in graph(view, session_id).inc.get(name, ()))
    if users:
        raise InvalidArgument(
            f"variable {name!r} cannot be deleted: {', '.join(map(repr, users))} "
            f"depend{'s' if len(users) == 1 else ''} on it (remove those dependencies first, "
            "or delete with force=True, which removes them too)")


def drop_deleted(view: View, commit: Commit) -> None:
    """Drop the edges of variables ``commit`` deletes for good (not re-registered in it)."""
    if not commit.deletes:
        return
    gone: dict[str, set[str]] = {}
    for d in commit.deletes:
        gone.setdefault(d.var.session_id, set()).add(d.var.name)
    for sid, names in gone.items():
        if sid in commit.session_deletes:
            continue  # the document goes with the session
        names -= {p.var.name for p in commit.puts if p.var.session_id == sid}
        current = _staged(view, commit, sid)
        if not names or not current.edges:
            continue
        gone_keys = {(e.source, e.target) for n in names
                     for e in (*current.out.get(n, ()), *current.inc.get(n, ()))}
        if gone_keys:
            kept = dict(current.edges)
            for key in gone_keys:
                del kept[key]
            _write(view, commit, sid, current.derived(kept, gone_keys))


def describe(view: View, sess: SessionState, ident: str, dependents: bool,
             transitive: bool) -> list[dict[str, Any]]:
    """``get_dependencies`` / ``get_dependents``: one entry per variable reached, breadth
    first: ``variable_id``, ``name``, ``type`` and ``metadata`` of the edge that reached it,
    ``depth`` (1 = direct) and ``via`` (the variable that edge starts or ends at)."""
    var = resolve(view, sess, ident)
    out = []
    for edge, depth, via in graph(view, var.session_id).walk(var.name, dependents, transitive):
        name = edge.source if dependents else edge.target
        vid = sess.by_name.get(name, "")
        out.append({"variable_id": vid, "name": name, "type": edge.type,
                    "metadata": dict(edge.metadata), "depth": depth, "via": via})
    return out


def downstream_of(view: View, session_id: str) -> Any:
    """``name -> names that depend on it (transitively)`` in the session's current graph
    (for watches with ``include_upstream``)."""
    def downstream(name: str) -> frozenset[str]:
        return graph(view, session_id).downstream(name)
    return downstream


# ----------------------------------------------------------------------------------------------
# what the servicer calls (one commit each, through the store's pipeline)


def add(store: Store, principal: str, session_id: str, source: str, target: str,
        dependency_type: str = "data", metadata: Mapping[str, Any] | None = None) -> int:
    """``source`` depends on ``target`` from now on; return the revision."""
    sess = store._session(principal, session_id)
    commit = stage_add(store.view, store.limits, sess, source, target, dependency_type, metadata)
    commit.ts = store._clock()
    return store._commit(commit, principal)


def remove(store: Store, principal: str, session_id: str, source: str, target: str) -> int:
    sess = store._session(principal, session_id)
    commit = stage_remove(store.view, sess, source, target)
    commit.ts = store._clock()
    return store._commit(commit, principal)


def lookup(store: Store, principal: str, session_id: str, ident: str, dependents: bool,
           transitive: bool) -> list[dict[str, Any]]:
    return describe(store.view, store._session(principal, session_id), ident, dependents,
                    transitive)
