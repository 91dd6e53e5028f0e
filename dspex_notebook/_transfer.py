"""What :class:`~._session.SessionContext` does for export/import and revisions.

The server exports and imports one JSON document; the formats are converted here, in a worker
thread (a large YAML or parquet file must not stall the loop that serves watches). After an
import or restore the touched names leave this client's cache and catalog (their type or id
may have changed); the watch stream brings the new values.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from . import io as formats
from ._errors import InvalidArgument, VariableNotFoundError

if TYPE_CHECKING:
    from ._session import SessionContext

STRATEGIES = ("replace", "keep", "merge")


async def export_variables(ctx: SessionContext, fmt: str, include_history: bool,
                           include_dependencies: bool, filter_pattern: str | None) -> bytes:
    fmt = formats.check_format(fmt)
    if filter_pattern is not None and not isinstance(filter_pattern, str):
        raise InvalidArgument(f"filter_pattern must be a regular expression string, got "
                              f"{type(filter_pattern).__name__}")
    document = await ctx._bridge.export_variables(ctx.session_id, filter_pattern or "",
                                                  bool(include_history),
                                                  bool(include_dependencies))
    if fmt == "json":
        return document
    return await asyncio.to_thread(formats.dump, document, fmt)


async def import_variables(ctx: SessionContext, data: bytes, fmt: str, strategy: str,
                           dry_run: bool, allow_pickle: bool) -> dict[str, Any]:
    fmt = formats.check_format(fmt)
    if strategy not in STRATEGIES:
        raise InvalidArgument(f"merge_strategy must be one of {', '.join(STRATEGIES)}, got "
                              f"{strategy!r}")
    document = await asyncio.to_thread(formats.load, data, fmt, allow_pickle)
    summary = await ctx._bridge.import_variables(ctx.session_id, document, strategy,
                                                 bool(dry_run))
    if not dry_run:
        _forget(ctx, [d["name"] for d in summary["details"]
                      if d["name"] and d["action"] not in ("skip", "error")], summary["revision"])
    return summary


async def restore_session(ctx: SessionContext, revision: int, dry_run: bool) -> dict[str, Any]:
    revision = _revision(revision)
    summary = await ctx._bridge.restore_session(ctx.session_id, revision, bool(dry_run))
    if not dry_run:
        _forget(ctx, summary["set"] + summary["recreated"] + summary["deleted"],
                summary["revision"])
    return summary


async def variables_at(ctx: SessionContext, names: Iterable[str], revision: int,
                       defaults: Mapping[str, Any] | None,
                       include_metadata: bool) -> dict[str, Any]:
    revision = _revision(revision)
    names = list(names)
    found, missing = await ctx._bridge.get_variables_at(ctx.session_id, names, revision)
    defaults = defaults or {}
    absent = [n for n in missing if n not in defaults]
    if absent:
        raise VariableNotFoundError(
            f"Variables not found in session {ctx.session_id!r} at revision {revision}: "
            f"{', '.join(repr(n) for n in absent)}")
    out: dict[str, Any] = {}
    for ident in names:
        var = found.get(ident)
        if include_metadata:
            out[ident] = ({"value": defaults[ident], "metadata": None} if var is None
                          else {"value": var.value, "metadata": var.as_dict()})
        else:
            out[ident] = defaults[ident] if var is None else var.value
    return out


def _revision(revision: Any) -> int:
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
        raise InvalidArgument(f"revision must be an integer >= 0, got {revision!r}")
    return revision


def _forget(ctx: SessionContext, names: list[str], revision: int) -> None:
    if revision > ctx.last_revision:
        ctx.last_revision = revision
    for name in names:
        ctx._cache.note_revision(name, revision)
        ctx._cache.invalidate(name)
        ctx._catalog.forget(name)
