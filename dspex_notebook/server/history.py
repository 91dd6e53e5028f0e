"""A variable's history (its change-log rows) and rollback, which is a new write.

History is append-only: :func:`rollback` writes a NEW version equal to the target through the
ordinary commit pipeline (so watchers, caches and widgets see it like any other write), with
``rollback_to`` and ``reason`` in the write's metadata. Entries below the compaction watermark
are gone (``serve --retain-revisions``); a rollback to one says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import _codec
from .._errors import InvalidArgument
from .backends.base import HistoryRow, StoredVariable
from .writes import stage_set

if TYPE_CHECKING:
    from .store import Store

MAX_LIMIT = 10_000


def history(store: Store, principal: str, session_id: str, ident: str, limit: int = 100,
            offset: int = 0) -> tuple[StoredVariable, list[HistoryRow]]:
    """``(variable, its entries newest first)``."""
    if not 0 < limit <= MAX_LIMIT:
        raise InvalidArgument(f"history limit must be between 1 and {MAX_LIMIT}, got {limit}")
    if offset < 0:
        raise InvalidArgument(f"history offset must be >= 0, got {offset}")
    var, _ = store.reach(principal, session_id, ident, "read")
    return var, store.backend.history(var.id, limit, offset)


def rollback(store: Store, principal: str, session_id: str, ident: str, version: int,
             reason: str = "") -> StoredVariable:
    """Write ``ident``'s value of ``version`` as a new version.

    Raises:
        InvalidArgument (a ValueError): no such version in the variable's (kept) history.
        OptimizationConflict: an optimization run holds the variable.
    """
    sess = store._session(principal, session_id)
    var, _ = store.reach(principal, session_id, ident, "write")  # stage_set checks it again
    target = None
    offset, kept = 0, []
    while target is None:
        rows = store.backend.history(var.id, 500, offset)
        if not rows:
            break
        kept += [r.version for r in rows]
        target = next((r for r in rows if r.version == version and r.op != "delete"), None)
        offset += len(rows)
    if target is None:
        span = f"versions {min(kept)}–{max(kept)} are kept" if kept else "no history is kept"
        raise InvalidArgument(
            f"variable {var.name!r} has no version {version} in its history ({span}; "
            "older ones fall out of retention)")
    _, raw = _codec.decode(target.type_url, target.data, target.binary)
    metadata = {"source": "rollback", "rollback_to": str(version)}
    if reason:
        metadata["reason"] = reason[:1000]
    commit, new = stage_set(store.view, store.limits, sess, var.id, raw, metadata, None,
                            principal, store._clock())
    store._commit(commit, principal)
    return new
