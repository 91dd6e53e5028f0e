"""The dependency graph of one session as a data structure (no store, no grpc): edges,
adjacency both ways, breadth-first walks, and :class:`Edit`, a working copy that checks the
graph rules (existence, self-edges, duplicates, the edge cap, cycles) as edges are added.
The rules' place in the commit pipeline is ``server/dependencies.py``."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._errors import InvalidArgument, ResourceLimitExceeded, VariableNotFoundError
from .limits import Limits

ARROW = " → "


@dataclass(frozen=True, slots=True)
class Edge:
    """``source`` depends on ``target``."""

    source: str
    target: str
    type: str = "data"
    metadata: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The document form (shares ``metadata``: edges and documents are never mutated)."""
        return {"from": self.source, "to": self.target, "type": self.type,
                "metadata": self.metadata}


class Graph:
    """An immutable view of one session's edges with adjacency in both directions."""

    __slots__ = ("edges", "out", "inc", "_down")

    def __init__(self, edges: Mapping[tuple[str, str], Edge]) -> None:
        self.edges = dict(edges)
        self.out: dict[str, list[Edge]] = {}  # name -> edges to what it depends on
        self.inc: dict[str, list[Edge]] = {}  # name -> edges from what depends on it
        for edge in self.edges.values():
            self.out.setdefault(edge.source, []).append(edge)
            self.inc.setdefault(edge.target, []).append(edge)
        self._down: dict[str, frozenset[str]] = {}

    def derived(self, edges: dict[tuple[str, str], Edge],
                touched: set[tuple[str, str]]) -> Graph:
        """The graph of ``edges``: this graph's with the ``touched`` keys removed, added or
        replaced. Its adjacency is copied (C speed) and only the touched lists rebuilt, so an
        edit of a big graph does not loop over every edge in Python."""
        if len(touched) > 64 or not self.edges:
            return Graph(edges)
        new = Graph.__new__(Graph)
        new.edges, new._down = edges, {}
        new.out, new.inc = dict(self.out), dict(self.inc)
        for adjacency, end in ((new.out, 0), (new.inc, 1)):
            for node in {k[end] for k in touched}:
                keys = [(e.source, e.target) for e in adjacency.get(node, ())]
                keys += [k for k in touched if k[end] == node and k not in keys]
                kept = [edges[k] for k in keys if k in edges]
                if kept:
                    adjacency[node] = kept
                else:
                    adjacency.pop(node, None)
        return new

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any] | None) -> Graph:
        edges = {}
        for e in (doc or {}).get("edges", ()):
            edge = Edge(e["from"], e["to"], e.get("type", "data"), dict(e.get("metadata") or {}))
            edges[(edge.source, edge.target)] = edge
        return cls(edges)

    def to_doc(self) -> dict[str, Any]:
        edges = self.edges
        return {"edges": [edges[k].as_dict() for k in sorted(edges)]}

    def walk(self, name: str, dependents: bool, transitive: bool) -> list[tuple[Edge, int, str]]:
        """``(edge, depth, via)`` for each variable reached from ``name`` (breadth first, each
        once): what ``name`` depends on, or (``dependents``) what depends on it."""
        seen = {name}
        out: list[tuple[Edge, int, str]] = []
        level, depth = [name], 1
        while level:
            nxt = []
            for node in level:
                found = (self.inc if dependents else self.out).get(node, ())
                for edge in sorted(found, key=lambda e: (e.source, e.target)):
                    other = edge.source if dependents else edge.target
                    if other in seen:
                        continue
                    seen.add(other)
                    out.append((edge, depth, node))
                    nxt.append(other)
            if not transitive:
                break
            level, depth = nxt, depth + 1
        return out

    def downstream(self, name: str) -> frozenset[str]:
        """The names that depend on ``name``, directly or not (cached: graphs are immutable)."""
        found = self._down.get(name)
        if found is None:
            if name not in self.inc:
                return frozenset()
            found = self._down[name] = frozenset(e.source for e, _, _ in self.walk(name, True, True))
        return found


EMPTY = Graph({})


class Edit:
    """A working copy of a graph being edited, with forward adjacency for the cycle check."""

    def __init__(self, base: Graph) -> None:
        self.edges = dict(base.edges)
        self._base = base  # its adjacency, read through ``edges`` (removals) plus ``_added``
        self._added: dict[str, set[str]] = {}
        self.touched: set[tuple[str, str]] = set()

    def remove(self, key: tuple[str, str]) -> Edge | None:
        edge = self.edges.pop(key, None)
        if edge is not None:
            self._added.get(key[0], set()).discard(key[1])
            self.touched.add(key)
        return edge

    def _targets(self, node: str) -> list[str]:
        found = [e.target for e in self._base.out.get(node, ()) if (node, e.target) in self.edges]
        found += self._added.get(node, ())
        return sorted(set(found))

    def path(self, start: str, goal: str) -> list[str] | None:
        previous: dict[str, str | None] = {start: None}
        todo = deque([start])
        while todo:
            node = todo.popleft()
            if node == goal:
                chain = [node]
                while (back := previous[chain[-1]]) is not None:
                    chain.append(back)
                return chain[::-1]
            for target in self._targets(node):
                if target not in previous:
                    previous[target] = node
                    todo.append(target)
        return None

    def add(self, limits: Limits, edge: Edge, names: set[str]) -> None:
        """Add ``edge``, checking every rule."""
        for name in (edge.source, edge.target):
            if name not in names:
                raise VariableNotFoundError(f"Variable not found: {name}")
        if edge.source == edge.target:
            raise InvalidArgument(f"variable {edge.source!r} cannot depend on itself")
        key = (edge.source, edge.target)
        old = self.edges.get(key)
        if old is not None:
            raise InvalidArgument(
                f"{edge.source!r} already depends on {edge.target!r} ({old.type}); "
                "remove_dependency first to change its type or metadata")
        if len(self.edges) >= limits.max_edges_per_session:
            raise ResourceLimitExceeded(f"the session has {len(self.edges)} dependencies "
                                        f"(limit {limits.max_edges_per_session})")
        chain = self.path(edge.target, edge.source)
        if chain is not None:
            cycle = [edge.source, *chain]
            if len(cycle) > 13:  # name the cycle, not 2000 variables
                cycle = [*cycle[:6], f"… {len(cycle) - 12} more …", *cycle[-6:]]
            raise InvalidArgument("dependency would create a cycle: " + ARROW.join(cycle))
        self.edges[key] = edge
        self._added.setdefault(edge.source, set()).add(edge.target)
        self.touched.add(key)

    def graph(self) -> Graph:
        return self._base.derived(self.edges, self.touched)
