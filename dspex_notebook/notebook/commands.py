"""What the ``%var`` magics do, as plain functions testable without IPython.

The magics in :mod:`.magics` only tokenize, call these, and display.
"""

from __future__ import annotations

import io
import json
import re
import shlex
from collections.abc import Callable
from typing import Any

from .._constraints import canonical_type
from .._errors import InvalidArgument
from .._names import NAME_PATTERN, NAME_RE
from .._text import TEXT_TYPES, read_block

__all__ = ["ASSIGN_RE", "NAME_RE", "TEXT_TYPES", "canonical_type", "constraints_from_options",
           "dependency_metadata", "known_type", "parse_var_block", "read_block", "register_argv",
           "value_from_text"]

#: ``NAME = EXPR`` (not ``==``)
ASSIGN_RE = re.compile(r"^\s*(" + NAME_PATTERN + r")\s*=(?!=)\s*(.*?)\s*$", re.S)


def constraints_from_options(
    type_name: str, *, min: Any = None, max: Any = None, step: Any = None,
    choices: str | None = None, constraints: str | None = None,
) -> dict[str, Any]:
    """Build a constraints dict from ``--min/--max/--step/--choices/--constraints JSON``."""
    out: dict[str, Any] = {}
    if constraints:
        try:
            loaded = json.loads(constraints)
        except ValueError as exc:
            raise InvalidArgument(f"--constraints is not valid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise InvalidArgument("--constraints must be a JSON object")
        out.update(loaded)
    number = int if type_name == "integer" else float
    for key, raw in (("min", min), ("max", max), ("step", step)):
        if raw is not None:
            try:
                out[key] = number(raw)
            except ValueError:
                raise InvalidArgument(f"--{key} must be a number, got {raw!r}") from None
    if choices is not None:
        out["choices"] = [c.strip() for c in choices.split(",") if c.strip()]
    return out


def dependency_metadata(text: str | None) -> dict[str, Any] | None:
    """``--metadata JSON`` of ``%var deps --add`` / ``dspex-notebook deps --add``: a JSON object
    (the server checks that its values are scalars)."""
    if not text:
        return None
    try:
        loaded = json.loads(text)
    except ValueError as exc:
        raise InvalidArgument(f"--metadata is not valid JSON: {exc}") from None
    if not isinstance(loaded, dict):
        raise InvalidArgument(f"--metadata must be a JSON object, got {text!r}")
    return loaded


def register_argv(text: str) -> list[str]:
    """Split what follows ``%var register`` into argv for its parser, keeping VALUE verbatim.

    ``shlex`` would strip the quotes out of a Python expression (``['a', 'b']`` became
    ``[a, b]``), so only NAME, TYPE and the options are shell-split; VALUE is the text between
    TYPE and the first ``--option`` outside quotes, exactly as typed.

    Raises:
        ValueError: unbalanced quotes in NAME, TYPE or the options.
    """
    quote = None
    cut = len(text)
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif (ch == "-" and text.startswith("--", i) and i + 2 < len(text) and text[i + 2].isalpha()
              and (i == 0 or text[i - 1].isspace())):
            cut = i
            break
    else:
        if quote:  # an apostrophe in plain text (``it's``): find the options ignoring quotes
            found = re.search(r"(?:^|(?<=\s))--[A-Za-z]", text)
            cut = found.start() if found else cut
    head = io.StringIO(text[:cut])
    lexer = shlex.shlex(head, posix=True)
    lexer.whitespace_split = True
    argv = [token for token in (lexer.get_token(), lexer.get_token()) if token is not None]
    value = head.read().strip()  # shlex reads one character at a time: this is the rest, as typed
    return argv + ([value] if value else []) + shlex.split(text[cut:])


def known_type(ctx: Any, name: str) -> str | None:
    """The type of ``name`` as the session's client knows it (no round trip), or None."""
    known = ctx._catalog.get(name)
    return None if known is None else str(known.type)


def value_from_text(type_name: str, text: str, evaluate: Callable[[str], Any]) -> Any:
    """The value of ``text`` for a variable of ``type_name``.

    ``text`` is a Python expression evaluated in the user namespace (``0.7``, ``np.zeros(3)``,
    ``my_list``). For string, choice and module variables, text that is not a valid expression
    or names nothing defined is taken literally (``%var register model choice gpt-4 ...``), and
    so is text whose value is not a string (``max`` is the builtin, ``42`` an int): those types
    only accept strings.
    """
    try:
        value = evaluate(text)
    except (NameError, SyntaxError):
        if type_name in TEXT_TYPES:
            return text
        raise
    if type_name in TEXT_TYPES and not isinstance(value, str):
        return text
    return value


def parse_var_block(text: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``(registrations, updates)`` of a ``%%var`` block, updates read as plain YAML (the
    magic itself reads them by their variables' types: :func:`dspex_notebook._text.read_block`)."""
    block = read_block(text)
    return block.registrations, block.updates({})
