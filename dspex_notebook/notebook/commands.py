"""What the ``%var`` magics do, as plain functions testable without IPython.

The magics in :mod:`.magics` only tokenize, call these, and display.
"""

from __future__ import annotations

import io
import json
import re
import shlex
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from .._constraints import canonical_type
from .._errors import InvalidArgument
from .._names import NAME_PATTERN, NAME_RE

__all__ = ["ASSIGN_RE", "NAME_RE", "constraints_from_options", "parse_var_block", "register_argv",
           "value_from_text"]

#: ``NAME = EXPR`` (not ``==``)
ASSIGN_RE = re.compile(r"^\s*(" + NAME_PATTERN + r")\s*=(?!=)\s*(.*?)\s*$", re.S)
TEXT_TYPES = ("string", "choice", "module")


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
    """Parse a ``%%var`` YAML block into ``(registrations, updates)``.

    Each top-level key is a variable name. A mapping with a ``type`` key registers it::

        temperature: {type: float, value: 0.7, constraints: {min: 0, max: 2}}

    anything else sets the variable to that value::

        max_tokens: 512

    Only ``yaml.safe_load`` is used (no Python object tags).
    """
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:  # one line: where, and what (PyYAML's str() spans 5+ lines)
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InvalidArgument(f"%%var block is not valid YAML{where}: {problem}") from None
    if doc is None:
        return [], {}
    if not isinstance(doc, Mapping):
        raise InvalidArgument("%%var block must be a YAML mapping of variable names")
    registrations: list[dict[str, Any]] = []
    updates: dict[str, Any] = {}
    allowed = {"type", "value", "constraints", "metadata", "description"}
    for name, spec in doc.items():
        if not isinstance(name, str):
            raise InvalidArgument(f"variable names must be strings, got {name!r}")
        if isinstance(spec, Mapping) and "type" in spec:
            unknown = set(spec) - allowed
            if unknown:
                raise InvalidArgument(
                    f"{name!r}: unknown keys {sorted(unknown)} (allowed: {sorted(allowed)})"
                )
            if "value" not in spec:
                raise InvalidArgument(f"{name!r}: a registration needs a 'value'")
            metadata = {str(k): str(v) for k, v in (spec.get("metadata") or {}).items()}
            if "description" in spec:
                metadata["description"] = str(spec["description"])
            registrations.append({
                "name": name, "type": canonical_type(spec["type"]), "initial_value": spec["value"],
                "constraints": spec.get("constraints") or {}, "metadata": metadata,
            })
        else:
            updates[name] = spec
    return registrations, updates
