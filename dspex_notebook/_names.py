"""The variable-name grammar, in one place (client, server, magics and CLI use it).

A name starts with a letter or ``_`` and continues with letters, digits, ``_ . : / -``. Names
never contain ``#``, so they can never be mistaken for a variable id (``var_<name>#<rev>``).
"""

from __future__ import annotations

import re
from typing import Any

from ._errors import InvalidArgument

__all__ = ["NAME_PATTERN", "NAME_RE", "check_name", "check_identifier", "make_id", "is_name"]

#: the grammar as a regular-expression fragment (for parsers that embed it)
NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_.:/\-]*"
NAME_RE = re.compile(NAME_PATTERN + r"\Z")
#: longest name, session id or identifier the server accepts
MAX_NAME_LENGTH = 256


def is_name(text: str) -> bool:
    """Whether ``text`` is a valid variable name."""
    return bool(NAME_RE.match(text)) and len(text) <= MAX_NAME_LENGTH


def _shown(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:77] + "...")


def check_name(name: Any, what: str = "variable name", max_length: int = MAX_NAME_LENGTH) -> str:
    """Return ``name`` if it follows the grammar, else raise :class:`InvalidArgument`."""
    check_identifier(name, what, max_length)
    if not NAME_RE.match(name):
        raise InvalidArgument(
            f"{what} {_shown(name)} is not valid: start with a letter or '_', then letters, "
            "digits, '_', '.', ':', '/' or '-'"
        )
    return name


def check_identifier(value: Any, what: str = "identifier", max_length: int = MAX_NAME_LENGTH) -> str:
    """A non-empty printable string of at most ``max_length`` characters (ids, session ids)."""
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{what} must be a non-empty string")
    if len(value) > max_length:
        raise InvalidArgument(f"{what} is {len(value)} characters long (limit {max_length})")
    if not value.isprintable():
        raise InvalidArgument(f"{what} {_shown(value)} contains non-printable characters")
    return value


def make_id(name: str, revision: int) -> str:
    """A variable id: ``var_<name>#<revision>``. Unique (one registration per revision and
    name) and never equal to a name, since names cannot contain ``#`` — so resolving an
    identifier "as an id first, then as a name" can never pick the wrong variable."""
    return f"var_{name}#{revision}"
