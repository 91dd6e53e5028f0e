"""Values typed as text (``dspex-notebook set NAME VALUE``, ``%%var`` YAML), read by the type
of the variable they are for.

YAML alone guesses wrong for text: ``off`` is a boolean, ``1.10`` the float 1.1, ``null``
nothing, ``2024-01-01`` a date. So a value for a **string, choice or module** variable is its
text exactly as written (quoted YAML scalars lose only their quotes); a value for any other
known type, and a value whose variable's type is not known (a new, untyped one), is read as
YAML — JSON-compatible YAML: dates stay text, since no variable type holds a date.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from ._errors import InvalidArgument

__all__ = ["TEXT_TYPES", "Block", "read_block", "value_from_text"]

#: types whose values are strings: text given for them is taken literally
TEXT_TYPES = ("string", "choice", "module")
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` without the timestamp resolver (dates stay strings)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _yaml_error(exc: yaml.YAMLError, what: str) -> InvalidArgument:
    """One line: where, and what (PyYAML's str() spans five lines or more)."""
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return InvalidArgument(f"{what} is not valid YAML{where}: {problem}")


def _construct(node: yaml.Node) -> Any:
    loader = _Loader("")
    try:
        return loader.construct_document(node)
    except yaml.YAMLError as exc:  # e.g. a !!python tag: safe YAML only
        raise _yaml_error(exc, "the value") from None
    finally:
        loader.dispose()


def _node_value(node: yaml.Node, type_name: str | None) -> Any:
    if type_name in TEXT_TYPES and isinstance(node, yaml.ScalarNode):
        return node.value  # the text as written (a quoted scalar without its quotes)
    return _construct(node)


def value_from_text(text: str, type_name: str | None) -> Any:
    """The value ``text`` stands for, for a variable of ``type_name`` (None: not known).

    Raises:
        InvalidArgument: ``text`` is not YAML (for a type that is not text).
    """
    if type_name in TEXT_TYPES:
        return text
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, "VALUE") from None
    return None if node is None else _construct(node)


class Block:
    """A parsed ``%%var`` block: registrations (typed, so read now) and updates (read once the
    types of their variables are known: :meth:`updates`)."""

    def __init__(self, registrations: list[dict[str, Any]], update_nodes: dict[str, yaml.Node]):
        self.registrations = registrations
        self.update_nodes = update_nodes

    def updates(self, types: Mapping[str, str | None]) -> dict[str, Any]:
        """``{name: value}``, each value read by ``types[name]`` (None or absent: YAML)."""
        return {name: _node_value(node, types.get(name)) for name, node in self.update_nodes.items()}


_ALLOWED = ("type", "value", "constraints", "metadata", "description")


def read_block(text: str) -> Block:
    """Parse a ``%%var`` YAML block.

    Each top-level key is a variable name. A mapping with a ``type`` key registers it
    (``temperature: {type: float, value: 0.7, constraints: {min: 0, max: 2}}``); anything
    else sets the variable to that value (``max_tokens: 512``). Only safe YAML (no tags).

    Raises:
        InvalidArgument: not YAML, not a mapping of names, or a malformed registration.
    """
    from ._constraints import canonical_type

    try:
        doc = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, "%%var block") from None
    if doc is None:
        return Block([], {})
    if not isinstance(doc, yaml.MappingNode):
        raise InvalidArgument("%%var block must be a YAML mapping of variable names")
    registrations: list[dict[str, Any]] = []
    updates: dict[str, yaml.Node] = {}
    for key_node, node in doc.value:
        name = _construct(key_node)
        if not isinstance(name, str):
            raise InvalidArgument(f"variable names must be strings, got {name!r}")
        fields = ({_construct(k): v for k, v in node.value} if isinstance(node, yaml.MappingNode)
                  else {})
        if "type" not in fields:
            updates[name] = node
            continue
        unknown = set(fields) - set(_ALLOWED)
        if unknown:
            raise InvalidArgument(
                f"{name!r}: unknown keys {sorted(map(str, unknown))} (allowed: {sorted(_ALLOWED)})")
        if "value" not in fields:
            raise InvalidArgument(f"{name!r}: a registration needs a 'value'")
        type_name = canonical_type(_construct(fields["type"]))
        constraints = _construct(fields["constraints"]) if "constraints" in fields else None
        if type_name in TEXT_TYPES and isinstance(fields.get("constraints"), yaml.MappingNode):
            # choices of a text variable are text too (`choices: [on, off]` is not two booleans)
            for k, v in fields["constraints"].value:
                if isinstance(v, yaml.SequenceNode) and isinstance(constraints, dict):
                    constraints[_construct(k)] = [_node_value(item, type_name) for item in v.value]
        meta_node = fields.get("metadata")
        if meta_node is not None and not isinstance(meta_node, yaml.MappingNode):
            raise InvalidArgument(f"{name!r}: metadata must be a mapping")
        # metadata values are strings: their text as written (`on` stays "on")
        metadata = {str(_construct(k)): _node_value(v, "string")
                    for k, v in (meta_node.value if meta_node is not None else ())}
        if "description" in fields:
            metadata["description"] = str(_node_value(fields["description"], "string"))
        registrations.append({
            "name": name, "type": type_name,
            "initial_value": _node_value(fields["value"], type_name),
            "constraints": constraints or {}, "metadata": metadata,
        })
    return Block(registrations, updates)

