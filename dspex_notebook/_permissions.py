"""Access rules in the Python API: ``set_variable_permissions`` / ``check_variable_access``
(the spec's names and shapes) and ``get_variable_permissions``, mixed into
:class:`~dspex_notebook.SessionContext`. The server decides everything (``server/access.py``,
docs/api.md "Permissions"); this module only carries the calls and checks their arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._errors import InvalidArgument

if TYPE_CHECKING:
    from ._wire.client import Bridge

PERMISSIONS = ("read", "write", "observe", "optimize")


def _rule_list(rules: Any) -> list[dict[str, Any]]:
    if isinstance(rules, Mapping):
        rules = [rules]
    if not isinstance(rules, (list, tuple)):
        raise InvalidArgument(f"rules must be a list of rules (dicts), got {type(rules).__name__}")
    out = []
    for i, rule in enumerate(rules):
        if not isinstance(rule, Mapping):
            raise InvalidArgument(f"rule {i} must be a dict, got {type(rule).__name__}")
        out.append(dict(rule))
    return out


class PermissionsMixin:
    """The access-rule methods of :class:`~dspex_notebook.SessionContext`."""

    session_id: str
    _bridge: Bridge

    async def set_variable_permissions(self, variable: str, rules: list[dict[str, Any]]) -> None:
        """Set the access rules of ``variable`` (name or id), replacing any it had; ``[]``
        removes them. Only the owning session may do this.

        A rule is ``{'session_pattern': 'any' | glob, 'permissions': ['read', 'write',
        'observe', 'optimize'], 'conditions': {...}}``. Another session reaches the variable
        by its id where a rule matches its name (the owning session always has every
        permission). Conditions: ``principal`` (a glob on the caller's principal),
        ``not_before`` / ``not_after`` (ISO-8601 times with a UTC offset); other keys are
        refused.

        Raises:
            InvalidArgument (a ValueError): a malformed rule (the message names it and the
                field), an unknown permission or condition.
            AccessDenied (a PermissionError): this session does not own the variable.
            VariableNotFoundError (a KeyError): no such variable.
        """
        await self._bridge.set_variable_permissions(self.session_id, variable,
                                                    _rule_list(rules))

    async def get_variable_permissions(self, variable: str) -> list[dict[str, Any]]:
        """The rules of ``variable`` as stored (normalized: ``conditions`` always present,
        permissions in the order read, write, observe, optimize); owning session only."""
        return await self._bridge.get_variable_permissions(self.session_id, variable)

    async def check_variable_access(self, variable: str, permission: str, *,
                                    session: str | None = None) -> bool:
        """Whether this session has ``permission`` (``read``, ``write``, ``observe``,
        ``optimize``) on ``variable`` (a name of this session, or another session's variable
        id). ``session`` (an extension, owning session only): judge the rules for the session
        of that name instead, e.g. before granting.

        Raises:
            InvalidArgument (a ValueError): an unknown permission.
            VariableNotFoundError (a KeyError): no such variable.
        """
        allowed, _ = await self.explain_variable_access(variable, permission, session=session)
        return allowed

    async def explain_variable_access(self, variable: str, permission: str, *,
                                      session: str | None = None) -> tuple[bool, str]:
        """:meth:`check_variable_access` with the server's reason (the owning session, the
        rule that matched, or that none did)."""
        if permission not in PERMISSIONS:
            raise InvalidArgument(f"unknown permission {permission!r} (known: "
                                  f"{', '.join(PERMISSIONS)})")
        return await self._bridge.check_variable_access(self.session_id, variable, permission,
                                                        session or "")
