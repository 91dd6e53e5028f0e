"""What the ``%var`` magics do, as plain functions testable without IPython.

The magics in :mod:`.magics` only tokenize, call these, and display.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from .._constraints import canonical_type
from .._errors import InvalidArgument

#: ``NAME = EXPR`` (not ``==``)
ASSIGN_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.:/\-]*)\s*=(?!=)\s*(.*?)\s*$", re.S)
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


def value_from_text(type_name: str, text: str, evaluate: Callable[[str], Any]) -> Any:
    """The value of ``text`` for a variable of ``type_name``.

    ``text`` is a Python expression evaluated in the user namespace (``0.7``, ``np.zeros(3)``,
    ``my_list``). For string, choice and module variables, text that is not a valid expression
    or names nothing defined is taken literally (``%var register model choice gpt-4 ...``).
    """
    try:
        return evaluate(text)
    except (NameError, SyntaxError):
        if type_name in TEXT_TYPES:
            return text
        raise


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
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"%%var block is not valid YAML: {exc}") from None
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
