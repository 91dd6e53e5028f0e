"""Access rules as text: what ``%var permissions`` and ``dspex-notebook permissions`` share.

* :func:`rules_from_text` reads ``--set RULES`` (YAML flow or block, or JSON; ``yaml.safe_load``
  only; at most 64 KiB);
* :class:`RulesTable` shows a variable's rules (text in the terminal, HTML in a notebook);
* :func:`permissions` does what the command asked: set, check, or show.
"""

from __future__ import annotations

from html import escape
from typing import Any

from ._errors import InvalidArgument

MAX_RULES_TEXT = 64 * 1024


def rules_from_text(text: str) -> list[dict[str, Any]]:
    """The rule list in ``text``: ``[{session_pattern: bob_*, permissions: [read]}]``, one
    rule as a mapping, or ``[]`` (remove every rule).

    Raises:
        InvalidArgument: not YAML/JSON, too long, or not a list of mappings.
    """
    import yaml

    if len(text) > MAX_RULES_TEXT:
        raise InvalidArgument(f"rules are {len(text)} characters (limit {MAX_RULES_TEXT})")
    try:
        rules = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidArgument(f"rules are not valid YAML/JSON: {first}") from None
    if isinstance(rules, dict):
        rules = [rules]
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise InvalidArgument("rules must be a list of mappings, e.g. "
                              "[{session_pattern: 'bob_*', permissions: [read]}] (or [] for none)")
    return rules


class RulesTable:
    """A variable's access rules (``%var permissions NAME``, CLI ``permissions NAME``)."""

    columns = ("#", "session_pattern", "permissions", "conditions")

    def __init__(self, name: str, rules: list[dict[str, Any]]) -> None:
        self.name = name
        self.rules = list(rules)

    def rows(self) -> list[tuple[str, ...]]:
        return [(str(i), str(r.get("session_pattern", "")), ", ".join(r.get("permissions", [])),
                 ", ".join(f"{k}={v}" for k, v in sorted((r.get("conditions") or {}).items())))
                for i, r in enumerate(self.rules)]

    def __repr__(self) -> str:
        if not self.rules:
            return (f"{self.name}: no rules (only its own session may use it; other sessions "
                    "reach it by id where a rule allows)")
        rows = [self.columns, *self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.columns))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join([f"{self.name}:", *lines])

    def _repr_html_(self) -> str:
        if not self.rules:
            return f"<p><code>{escape(repr(self))}</code></p>"
        head = "".join(f"<th style='text-align:left'>{c}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td style='text-align:left'><code>{escape(c)}</code></td>"
                                        for c in row) + "</tr>" for row in self.rows())
        return (f"<table class='dspex-rules'><caption><b>{escape(self.name)}</b> access rules"
                f"</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


async def permissions(ctx: Any, name: str, set_text: str | None = None,
                      check: str | None = None, as_session: str | None = None) -> Any:
    """``--set RULES``: set them and return the new :class:`RulesTable`; ``--check
    PERMISSION [--as SESSION]``: return ``(allowed, reason)``; else the current table."""
    if set_text is not None and check is not None:
        raise InvalidArgument("give --set or --check, not both")
    if as_session is not None and check is None:
        raise InvalidArgument("--as SESSION goes with --check PERMISSION")
    if check is not None:
        return await ctx.explain_variable_access(name, check, session=as_session)
    if set_text is not None:
        await ctx.set_variable_permissions(name, rules_from_text(set_text))
    return RulesTable(name, await ctx.get_variable_permissions(name))


def check_line(name: str, permission: str, allowed: bool, reason: str) -> str:
    return f"{name}: {permission} {'allowed' if allowed else 'denied'} ({reason})"
