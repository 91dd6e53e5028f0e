"""The history and transfer methods of :class:`~dspex_notebook.SessionContext`: a variable's
versions and rollback, export/import of the session, and restoring it to a revision — a mixin
so that ``_session.py`` stays a thin facade (document formats in ``_transfer.py``; docs/api.md,
"History" and "Export and import")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from ._errors import InvalidArgument

if TYPE_CHECKING:
    from ._session import SessionContext
    from ._types import Variable
    from ._wire.client import Bridge


class HistoryMethods:
    """``get_variable_history``, ``rollback_variable``, ``export_variables``,
    ``import_variables``, ``restore_session``."""

    session_id: str
    _bridge: Bridge

    def _context(self) -> SessionContext:
        """This object as the :class:`SessionContext` it is (for ``_transfer.py``)."""
        return cast("SessionContext", self)

    if TYPE_CHECKING:  # SessionContext's own
        def _remember(self, var: Variable, ident: str | None = None) -> None: ...

        def _put(self, ident: str, value: Any, mod_revision: int, read_revision: int) -> None: ...


    async def get_variable_history(self, variable: str, limit: int = 100, offset: int = 0,
                                   include_metadata: bool = True) -> list[dict[str, Any]]:
        """A variable's versions, newest first: ``version``, ``value``, ``updated_at``,
        ``updated_by`` (the writer's principal, or ``optimizer_<run id>``), ``revision``, and
        with ``include_metadata`` the write's ``metadata``. Entries older than the server's
        retention are gone.

        Raises:
            VariableNotFoundError: no such variable.
        """
        if not 0 < limit <= 10_000 or offset < 0:
            raise InvalidArgument(
                f"history limit must be 1..10000 and offset >= 0, got {limit}, {offset}")
        entries = await self._bridge.get_variable_history(self.session_id, variable, limit, offset)
        for entry in entries:
            entry.pop("op", None)
            if not include_metadata:
                entry.pop("metadata", None)
        return entries

    async def rollback_variable(self, variable: str, version: int,
                                reason: str | None = None) -> int:
        """Write the value ``variable`` had at ``version`` as a NEW version (history stays
        append-only; ``reason`` and ``rollback_to`` go into the write's metadata); return the
        new version.

        Raises:
            InvalidArgument (a ValueError): no such version in the kept history.
            OptimizationConflict (a ValueError): an optimization run holds the variable.
        """
        var, rev = await self._bridge.rollback_variable(self.session_id, variable, version,
                                                        reason or "")
        self._remember(var, variable)
        self._put(variable, var.value, rev, rev)
        return int(var.version)

    # ------------------------------------------------------------------------------------------
    # export/import and revisions (logic in _transfer.py)

    async def export_variables(self, format: str = "json", include_history: bool = False,
                               include_dependencies: bool = True,
                               filter_pattern: str | None = None) -> bytes:
        """Export the session's variables (type, value, constraints, metadata, version, and
        with ``include_history`` their kept history) as one document.

        Parameters:
            format: ``'json'``, ``'yaml'``, ``'parquet'`` (needs ``pyarrow``) or ``'pickle'``.
            include_history: add each variable's kept history entries.
            include_dependencies: add the dependency graph when the server has one.
            filter_pattern: a regular expression (RE2 syntax) searched in each name,
                e.g. ``r'.*model.*'`` or ``'^temp'``.

        Returns:
            The document as bytes (docs/api.md, "Export and import", describes it).

        Raises:
            InvalidArgument: unknown format, or a pattern RE2 refuses (the message says why).
            ResourceLimitExceeded: the export would exceed a message; narrow the pattern.
            Unsupported: ``parquet`` without pyarrow installed.
        """
        from ._transfer import export_variables

        return await export_variables(self._context(), format, include_history, include_dependencies,
                                      filter_pattern)

    async def import_variables(self, data: bytes, format: str = "json",
                               merge_strategy: str = "replace", dry_run: bool = False, *,
                               allow_pickle: bool = False) -> dict[str, Any]:
        """Import an export document as ONE write (one revision; all or nothing).

        Parameters:
            data: the exported bytes.
            format: the format of ``data`` (as :meth:`export_variables`).
            merge_strategy: for a variable that exists: ``'replace'`` (the document's
                definition wins), ``'keep'`` (the session's stays) or ``'merge'`` (dicts
                merged by key, lists united, other types take the document's value; the
                session's type and constraints stay). docs/api.md has the details.
            dry_run: only report what would happen; nothing changes.
            allow_pickle: accept ``format='pickle'`` (refused otherwise). Even then only
                plain data is rebuilt; a pickle that refers to any class or function is refused
                without running anything.

        Returns:
            ``{'imported': n, 'skipped': n, 'errors': n, 'details': [{'name', 'action',
            'reason'}, ...], 'revision': r, 'dry_run': bool, ...}``; ``action`` is
            ``create``, ``replace``, ``merge``, ``skip`` or ``error``.

        Raises:
            InvalidArgument: malformed data (the message says where), pickle not allowed, or
                (not a dry run) some variables have errors: then nothing was imported.
            ResourceLimitExceeded: the data is too large.
        """
        from ._transfer import import_variables

        return await import_variables(self._context(), data, format, merge_strategy, dry_run, allow_pickle)

    async def restore_session(self, revision: int, dry_run: bool = False) -> dict[str, Any]:
        """Set every variable of the session back to its value at store ``revision``, as ONE
        new revision (history stays append-only). Variables deleted or re-registered since
        come back under their id of then; variables created after ``revision`` are deleted
        (their history is kept, so restoring the revision before this restore undoes it).

        Returns:
            ``{'restored_to': R, 'revision': new revision (0 for a dry run or no change),
            'set': [...], 'recreated': [...], 'deleted': [...], 'unchanged': [...],
            'details': [...], 'dry_run': bool}``.

        Raises:
            Compacted (a LookupError): ``revision`` is older than the server keeps.
            InvalidArgument: ``revision`` is negative or ahead of the store.
            OptimizationConflict (a ValueError): an optimization run holds a variable the
                restore would change (named); nothing changed.
        """
        from ._transfer import restore_session

        return await restore_session(self._context(), revision, dry_run)
