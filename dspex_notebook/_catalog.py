"""What the client knows about each variable: id, name, type, constraints.

Enough to encode and validate a write locally before the round trip, to map an id to the name
the cache is keyed by, and for tab completion. Kept current by reads, by this client's writes,
and by the watch hub (a registration elsewhere with new constraints updates it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Catalog", "Known"]


@dataclass(frozen=True, slots=True)
class Known:
    id: str
    name: str
    type: str
    constraints: dict[str, Any]


class Catalog:
    """``identifier -> Known`` for names and ids alike."""

    def __init__(self) -> None:
        self._by_ident: dict[str, Known] = {}

    def learn(self, id: str, name: str, type: str, constraints: dict[str, Any],
              ident: str | None = None) -> Known:
        old = self._by_ident.get(name)
        if old is not None and old.id != id:
            self._by_ident.pop(old.id, None)  # a replaced variable's old id is gone
        known = Known(id, name, type, constraints)
        self._by_ident[name] = self._by_ident[id] = known
        if ident is not None:
            self._by_ident[ident] = known
        return known

    def get(self, ident: str) -> Known | None:
        return self._by_ident.get(ident)

    def __contains__(self, ident: str) -> bool:
        return ident in self._by_ident

    def key(self, ident: str) -> str:
        """The cache key of ``ident``: the variable's name when known (ids map to names)."""
        known = self._by_ident.get(ident)
        return ident if known is None else known.name

    def forget(self, ident: str) -> Known | None:
        known = self._by_ident.pop(ident, None)
        if known is not None:
            self._by_ident.pop(known.id, None)
            if self._by_ident.get(known.name) is known:
                del self._by_ident[known.name]
        return known

    def names(self) -> list[str]:
        return sorted({k.name for k in self._by_ident.values()})

    def clear(self) -> None:
        self._by_ident.clear()
