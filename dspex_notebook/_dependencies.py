"""The dependency methods of :class:`~dspex_notebook.SessionContext` (the spec's "Variable
Dependencies"), a mixin so that ``_session.py`` stays a thin facade. The rules are the
server's (``dspex_notebook/server/dependencies.py``); docs/api.md, "Dependencies"."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._errors import InvalidArgument

if TYPE_CHECKING:
    from ._wire.client import Bridge

#: the spec's dependency types
DEPENDENCY_TYPES = ("data", "constraint", "optimization")


class DependencyMethods:
    """``add_dependency``, ``remove_dependency``, ``get_dependencies``, ``get_dependents``."""

    session_id: str
    _bridge: Bridge
    last_revision: int

    async def add_dependency(self, from_variable: str, to_variable: str,
                             dependency_type: str = "data",
                             metadata: Mapping[str, Any] | None = None) -> None:
        """Record that ``from_variable`` depends on ``to_variable``.

        Parameters:
            from_variable: the variable that depends (name or id).
            to_variable: the variable depended upon (name or id).
            dependency_type: ``data``, ``constraint`` or ``optimization``.
            metadata: the edge's metadata: a small JSON object of scalars (string, number,
                boolean, None).

        Raises:
            ValueError (InvalidArgument): the edge would create a cycle (the message names it,
                ``a → b → c → a``), is a self-edge or a duplicate, or the type or metadata is
                bad.
            KeyError (VariableNotFoundError): either variable does not exist.
            ResourceLimitExceeded: the session has too many edges, or the metadata is too big.
        """
        if dependency_type not in DEPENDENCY_TYPES:
            raise InvalidArgument(f"dependency type must be one of {', '.join(DEPENDENCY_TYPES)},"
                                  f" got {dependency_type!r}")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise InvalidArgument(f"dependency metadata must be a mapping, got "
                                  f"{type(metadata).__name__}")
        rev = await self._bridge.add_dependency(self.session_id, from_variable, to_variable,
                                                dependency_type, metadata)
        self.last_revision = max(self.last_revision, rev)

    async def remove_dependency(self, from_variable: str, to_variable: str) -> None:
        """Remove the edge ``from_variable → to_variable``.

        Raises:
            ValueError (InvalidArgument): there is no such edge.
            KeyError (VariableNotFoundError): either variable does not exist.
        """
        rev = await self._bridge.remove_dependency(self.session_id, from_variable, to_variable)
        self.last_revision = max(self.last_revision, rev)

    async def get_dependencies(self, variable: str,
                               include_transitive: bool = False) -> list[dict[str, Any]]:
        """What ``variable`` depends on: ``[{"variable_id", "type", "name", "metadata",
        "depth", "via"}, ...]`` (the spec's ``variable_id`` and ``type``, plus the name, the
        edge's metadata, ``depth`` 1 for a direct dependency and ``via``, the variable whose
        edge reached it). With ``include_transitive`` also indirect ones, breadth first, each
        once.

        Raises:
            KeyError (VariableNotFoundError): no such variable.
        """
        return await self._bridge.get_dependencies(self.session_id, variable, False,
                                                   include_transitive)

    async def get_dependents(self, variable: str,
                             include_transitive: bool = False) -> list[dict[str, Any]]:
        """What depends on ``variable`` (same shape as :meth:`get_dependencies`)."""
        return await self._bridge.get_dependencies(self.session_id, variable, True,
                                                   include_transitive)
