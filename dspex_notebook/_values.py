"""``VariableSpec``: the one shape of "a variable to register", client and server alike.

The client builds it from ``register_variable(s)`` arguments (validated locally), the wire layer
encodes it into a ``RegisterVariableRequest`` and decodes it back on the server, and the store
validates and commits it. No dicts or tuples of the same thing elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._constraints import canonical_type, check_constraints, validate
from ._errors import InvalidArgument, VariableTypeError, a_or_an
from ._names import check_name

__all__ = ["VariableSpec", "infer_type", "metadata_strings"]

_KEYS = frozenset({"name", "type", "initial_value", "constraints", "metadata", "replace"})


@dataclass(frozen=True, slots=True)
class VariableSpec:
    """A variable to register: name, type, initial value, constraints, metadata, replace."""

    name: str
    type: str
    value: Any
    constraints: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    replace: bool = False

    @classmethod
    def checked(cls, name: Any, type_name: Any, value: Any,
                constraints: Mapping[str, Any] | None = None,
                metadata: Mapping[str, str] | None = None, replace: bool = False) -> VariableSpec:
        """A spec whose type, constraints and value have been validated and normalized.

        Raises:
            InvalidArgument: bad name, unknown type or constraint.
            VariableTypeError / ConstraintViolation: the value does not fit.
        """
        check_name(name)
        type_name = canonical_type(type_name)
        cons = check_constraints(type_name, constraints, name)
        return cls(name, type_name, validate(type_name, value, cons, name), cons,
                   metadata_strings(metadata), bool(replace))

    @classmethod
    def from_mapping(cls, item: Mapping[str, Any]) -> VariableSpec:
        """From the spec's dict form: ``name``, ``type``, ``initial_value`` and optionally
        ``constraints``, ``metadata``, ``replace``."""
        if not isinstance(item, Mapping):
            raise InvalidArgument(f"a variable spec must be a dict, got {type(item).__name__}")
        unknown = set(item) - _KEYS
        if unknown:
            raise InvalidArgument(f"unknown keys {sorted(unknown)} in variable spec {item.get('name')!r}")
        missing = {"name", "type", "initial_value"} - set(item)
        if missing:
            raise InvalidArgument(f"variable spec {item.get('name')!r} lacks {sorted(missing)}")
        return cls.checked(item["name"], item["type"], item["initial_value"], item.get("constraints"),
                           item.get("metadata"), item.get("replace", False))


def infer_type(value: Any) -> str:
    """Guess a variable type from a Python value (used by ``create_if_missing`` and sets of
    variables this client has not seen yet).

    Raises:
        VariableTypeError: no variable type fits the value.
    """
    import numbers

    if isinstance(value, bool) or type(value).__name__ in ("bool_", "bool"):  # numpy 1 / 2
        return "boolean"
    if isinstance(value, numbers.Integral):
        return "integer"
    if isinstance(value, numbers.Real):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "dict"
    if isinstance(value, (list, tuple)):
        return "list"
    ndim = getattr(value, "ndim", None)
    if ndim is not None and hasattr(value, "dtype"):
        return "embedding" if ndim == 1 and value.dtype.kind == "f" else "tensor"
    raise VariableTypeError(
        f"no variable type fits {a_or_an(type(value).__name__)} value (types: float, integer, string, "
        "boolean, dict, list, embedding, tensor; choice and module take strings)"
    )


def metadata_strings(metadata: Mapping[Any, Any] | None) -> dict[str, str]:
    """Metadata as the wire carries it (``map<string, string>``).

    Strings are kept as they are. The other JSON scalars are stored as their JSON text, so
    ``{"batch_num": 3, "final": True, "note": None}`` becomes ``{"batch_num": "3", "final":
    "true", "note": "null"}`` (read them back with ``json.loads``): the type is not kept,
    the value's text is. Anything else is refused rather than turned into an unreadable repr.

    Raises:
        InvalidArgument: a key is not a string, or a value is not a string or JSON scalar
            (the message names the key and the value's type).
    """
    import json
    import math
    import numbers

    if not metadata:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidArgument(f"metadata must be a dict of strings, got {a_or_an(type(metadata).__name__)}")
    out: dict[str, str] = {}
    for key, value in metadata.items():
        if not isinstance(key, str):
            raise InvalidArgument(f"metadata keys must be strings, got {key!r} "
                                  f"({type(key).__name__})")
        if isinstance(value, str):
            out[key] = value
        elif value is None or isinstance(value, bool) or type(value).__name__ == "bool_":
            out[key] = json.dumps(None if value is None else bool(value))  # numpy's bool too
        elif isinstance(value, numbers.Integral):
            out[key] = str(int(value))
        elif isinstance(value, numbers.Real) and math.isfinite(float(value)):
            out[key] = json.dumps(float(value))
        else:
            what = "a non-finite float" if isinstance(value, numbers.Real) else \
                a_or_an(type(value).__name__)
            raise InvalidArgument(
                f"metadata[{key!r}] is {what}; metadata values are strings or JSON scalars "
                "(int, float, bool, None, stored as their JSON text)")
    return out
