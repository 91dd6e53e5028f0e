"""Type coercion and constraint validation, shared by client (early errors) and server.

Two entry points:

* :func:`check_constraints` validates a constraint *specification* for a type (unknown keys,
  wrong key types, ``min > max`` ...) and returns it normalized (synonyms folded).
* :func:`validate` coerces a value to a type's canonical Python form and checks it against the
  constraints. Canonical forms: ``float``, ``int``, ``str``, ``bool``, ``str`` (choice/module),
  1-D floating ``numpy.ndarray`` (embedding), ``numpy.ndarray`` (tensor), ``list`` and ``dict``
  (JSON-compatible, dict keys as strings).

Messages name the variable, the rule and the value, e.g.
``'temperature': value 2.5 is above the maximum 2.0 (constraint 'max')``; anything quoted from
the caller is cut to 80 characters (:func:`~dspex_notebook._errors.shorten`).

Hostile input: a ``pattern`` is compiled and matched by RE2 (:mod:`dspex_notebook._patterns`),
never by Python's backtracking ``re``; a constraint spec is bounded (:data:`MAX_CHOICES` entries
of at most :data:`MAX_CHOICE_LENGTH` characters, :data:`MAX_NDIM` dimensions); walking a
list/dict value is charged to the server request's work budget (:mod:`dspex_notebook._budget`).
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping
from typing import Any

from . import _budget
from ._errors import ConstraintViolation, InvalidArgument, VariableTypeError, a_or_an, shorten
from ._patterns import regex_matcher
from ._types import TYPE_ALIASES, TYPE_NAMES

__all__ = [
    "canonical_type", "check_constraints", "validate", "TENSOR_DTYPES", "MAX_CHOICES",
    "MAX_CHOICE_LENGTH", "MAX_NDIM",
]

#: entries in a ``choices`` / ``enum`` / ``allowed_modules`` / ``required_keys`` list
MAX_CHOICES = 1000
#: characters in one of those entries
MAX_CHOICE_LENGTH = 1024
#: dimensions of a tensor ``shape`` constraint (and of an array on the wire)
MAX_NDIM = 32

#: dtypes a tensor may have (little-endian on the wire); embeddings use the floating ones.
TENSOR_DTYPES = (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64",
)
EMBEDDING_DTYPES = ("float16", "float32", "float64")
SCALAR_ITEM_TYPES = ("float", "integer", "string", "boolean")

# key -> expected kind, per type. Kinds: num, int, nonneg, bool, str, strlist, shape, dtype, item.
_SPEC: dict[str, dict[str, str]] = {
    "float": {"min": "num", "max": "num", "step": "num", "log": "bool", "allow_nonfinite": "bool"},
    "integer": {"min": "int", "max": "int", "step": "int"},
    "string": {
        "min_length": "nonneg", "max_length": "nonneg", "pattern": "str",
        "enum": "strlist", "choices": "strlist",
    },
    "boolean": {},
    "choice": {"choices": "strlist"},
    "module": {"choices": "strlist"},
    "embedding": {
        "dimensions": "int", "normalize": "bool", "dtype": "dtype", "allow_nonfinite": "bool",
    },
    "tensor": {"shape": "shape", "dtype": "dtype", "allow_nonfinite": "bool"},
    "list": {"min_length": "nonneg", "max_length": "nonneg", "item_type": "item"},
    "dict": {"required_keys": "strlist", "max_length": "nonneg"},
}
_SYNONYMS = {("module", "allowed_modules"): "choices"}


def canonical_type(type_name: Any) -> str:
    """Return the canonical type name, accepting enum members and known aliases."""
    name = getattr(type_name, "value", type_name)
    if not isinstance(name, str):
        raise InvalidArgument(f"variable type must be a string, got {type(name).__name__}")
    name = TYPE_ALIASES.get(name, name)
    if name not in TYPE_NAMES:
        raise InvalidArgument(
            f"unknown variable type {shorten(name)}; known types: {', '.join(TYPE_NAMES)}"
        )
    return name


def _is_num(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def check_constraints(type_name: str, constraints: Mapping[str, Any] | None, name: str = "") -> dict:
    """Validate and normalize a constraint spec for ``type_name``.

    Raises:
        InvalidArgument: unknown key for the type, wrong value kind, or inconsistent bounds.
    """
    if not constraints:
        if type_name == "choice":
            raise InvalidArgument(f"{name!r}: a choice variable needs constraints={{'choices': [...]}}")
        return {}
    if not isinstance(constraints, Mapping):
        raise InvalidArgument(f"{name!r}: constraints must be a dict, got {type(constraints).__name__}")
    allowed = _SPEC[type_name]
    out: dict[str, Any] = {}
    for key, val in constraints.items():
        key = _SYNONYMS.get((type_name, key), key)
        kind = allowed.get(key)
        if kind is None:
            valid = ", ".join(sorted(allowed)) or "none"
            raise InvalidArgument(
                f"{name!r}: unknown constraint {shorten(key)} for type {type_name} (valid: {valid})"
            )
        out[key] = _check_kind(name, key, kind, val)
    _check_consistency(type_name, out, name)
    return out


def _check_kind(name: str, key: str, kind: str, val: Any) -> Any:
    def bad(expected: str) -> InvalidArgument:
        return InvalidArgument(f"{name!r}: constraint {key!r} must be {expected}, got {shorten(val)}")

    if kind == "num":
        try:
            finite = _is_num(val) and math.isfinite(val)
        except OverflowError:  # an int beyond the float range
            finite = False
        if not finite:
            raise bad("a finite number")
        return float(val) if not isinstance(val, int) else val
    if kind in ("int", "nonneg"):
        if not isinstance(val, numbers.Integral) or isinstance(val, bool):
            raise bad("an integer")
        if kind == "nonneg" and int(val) < 0:
            raise bad("a non-negative integer")
        return int(val)
    if kind == "bool":
        if not isinstance(val, bool):
            raise bad("true or false")
        return val
    if kind == "str":
        if not isinstance(val, str):
            raise bad("a string")
        regex_matcher(val, f"{name!r}: constraint {key!r}")  # compiles it: refuses what RE2 lacks
        return val
    if kind == "strlist":
        if not isinstance(val, (list, tuple)) or not val or not all(isinstance(v, str) for v in val):
            raise bad("a non-empty list of strings")
        if len(val) > MAX_CHOICES:
            raise InvalidArgument(
                f"{name!r}: constraint {key!r} has {len(val):,} entries (limit {MAX_CHOICES})"
            )
        longest = max(map(len, val))
        if longest > MAX_CHOICE_LENGTH:
            raise InvalidArgument(
                f"{name!r}: constraint {key!r} has an entry of {longest:,} characters "
                f"(limit {MAX_CHOICE_LENGTH})"
            )
        if len(set(val)) != len(val):
            raise bad("a list without duplicates")
        return list(val)
    if kind == "shape":
        if isinstance(val, (list, tuple)) and len(val) > MAX_NDIM:
            raise InvalidArgument(
                f"{name!r}: constraint {key!r} has {len(val)} dimensions (limit {MAX_NDIM})"
            )
        if not isinstance(val, (list, tuple)) or not all(
            v is None or (isinstance(v, numbers.Integral) and not isinstance(v, bool) and int(v) >= -1)
            for v in val
        ):
            raise bad("a list of non-negative integers (None or -1 for any size)")
        return [None if v is None or v == -1 else int(v) for v in val]
    if kind == "dtype":
        if val not in TENSOR_DTYPES:
            raise bad(f"one of {', '.join(TENSOR_DTYPES)}")
        return val
    if kind == "item":
        if val not in SCALAR_ITEM_TYPES:
            raise bad(f"one of {', '.join(SCALAR_ITEM_TYPES)}")
        return val
    raise AssertionError(kind)  # pragma: no cover


def _check_consistency(type_name: str, c: dict, name: str) -> None:
    lo_key, hi_key = ("min", "max") if "min" in c else ("min_length", "max_length")
    if lo_key in c and hi_key in c and c[lo_key] > c[hi_key]:
        raise InvalidArgument(
            f"{name!r}: constraint {lo_key}={c[lo_key]} is greater than {hi_key}={c[hi_key]}"
        )
    if "step" in c and c["step"] <= 0:
        raise InvalidArgument(f"{name!r}: constraint step must be positive, got {c['step']}")
    if c.get("log") and c.get("min", 1) <= 0:
        raise InvalidArgument(f"{name!r}: constraint log=true needs min > 0, got min={c.get('min')}")
    if type_name == "embedding":
        if "dimensions" in c and c["dimensions"] <= 0:
            raise InvalidArgument(f"{name!r}: constraint dimensions must be positive")
        if "dtype" in c and c["dtype"] not in EMBEDDING_DTYPES:
            raise InvalidArgument(
                f"{name!r}: an embedding dtype must be one of {', '.join(EMBEDDING_DTYPES)}"
            )


# ----------------------------------------------------------------------------------------------
# values


def validate(type_name: str, value: Any, constraints: Mapping[str, Any], name: str = "") -> Any:
    """Coerce ``value`` to ``type_name``'s canonical form and check ``constraints``.

    Raises:
        VariableTypeError: the value cannot be this type.
        ConstraintViolation: the value is this type but breaks a constraint.
    """
    return _VALIDATORS[type_name](value, constraints, name)


def _type_error(name: str, type_name: str, value: Any, extra: str = "") -> VariableTypeError:
    shown = _short(value)
    return VariableTypeError(
        f"{name!r}: expected {a_or_an(type_name)} value, got {type(value).__name__} {shown}{extra}"
    )


_short = shorten


def _violation(name: str, msg: str, key: str) -> ConstraintViolation:
    return ConstraintViolation(f"{name!r}: {msg} (constraint {key!r})")


def _check_range(v: float, c: Mapping[str, Any], name: str) -> None:
    if "min" in c and v < c["min"]:
        raise _violation(name, f"value {_short(v)} is below the minimum {c['min']!r}", "min")
    if "max" in c and v > c["max"]:
        raise _violation(name, f"value {_short(v)} is above the maximum {c['max']!r}", "max")
    if "step" in c:
        base, step = c.get("min", 0), c["step"]
        if isinstance(v, int) and isinstance(base, int) and isinstance(step, int):
            off_grid = (v - base) % step != 0  # exact: ints may be beyond the float range
        else:
            k = (v - base) / step
            off_grid = not math.isfinite(k) or abs(k - round(k)) > 1e-9 * max(1.0, abs(k))
        if off_grid:
            raise _violation(name, f"value {_short(v)} is not on the grid {base!r} + k*{c['step']!r}",
                             "step")


def _float(value: Any, c: Mapping[str, Any], name: str) -> float:
    if not _is_num(value):
        raise _type_error(name, "float", value)
    try:
        v = float(value)
    except OverflowError:
        raise _type_error(name, "float", value, " (too large for a float)") from None
    if not math.isfinite(v):
        if not c.get("allow_nonfinite"):
            raise _violation(name, f"value {v!r} is not finite", "allow_nonfinite")
        return v
    _check_range(v, c, name)
    return v


def _integer(value: Any, c: Mapping[str, Any], name: str) -> int:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        v = int(value)
    elif _is_num(value) and math.isfinite(value) and float(value).is_integer():
        v = int(value)  # 3.0 from a JSON producer that writes every number as a double
    else:
        raise _type_error(name, "integer", value)
    _check_range(v, c, name)
    return v


def _string(value: Any, c: Mapping[str, Any], name: str) -> str:
    if not isinstance(value, str):
        raise _type_error(name, "string", value)
    n = len(value)
    if "min_length" in c and n < c["min_length"]:
        raise _violation(name, f"length {n} is below the minimum {c['min_length']}", "min_length")
    if "max_length" in c and n > c["max_length"]:
        raise _violation(name, f"length {n} is above the maximum {c['max_length']}", "max_length")
    if "pattern" in c and not regex_matcher(c["pattern"], f"{name!r}: constraint 'pattern'")(value):
        raise _violation(name, f"value {_short(value)} does not match {_short(c['pattern'])}", "pattern")
    for key in ("enum", "choices"):
        if key in c and value not in c[key]:
            raise _violation(name, f"value {_short(value)} is not one of {_short(c[key])}", key)
    return value


def _boolean(value: Any, c: Mapping[str, Any], name: str) -> bool:
    try:
        import numpy as np

        if isinstance(value, np.bool_):
            return bool(value)
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    if not isinstance(value, bool):
        raise _type_error(name, "boolean", value)
    return value


def _named(type_name: str, noun: str, hint: str):
    """Validator for choice/module: a string, one of ``choices`` when given."""

    def check(value: Any, c: Mapping[str, Any], name: str) -> str:
        if not isinstance(value, str):
            raise _type_error(name, type_name, value, hint)
        if "choices" in c and value not in c["choices"]:
            raise _violation(name, f"{noun} {_short(value)} is not one of {_short(c['choices'])}",
                             "choices")
        return value

    return check


_choice = _named("choice", "value", " (choices are strings)")
_module = _named("module", "module", " (a module reference is its name)")


def _array(value: Any, type_name: str, name: str):  # -> np.ndarray
    import numpy as np

    if isinstance(value, np.ndarray):
        arr = value
    elif isinstance(value, (list, tuple)):
        try:
            arr = np.asarray(value)
        except ValueError:
            raise _type_error(name, type_name, value, " (ragged nested lists)") from None
    else:
        raise _type_error(name, type_name, value)
    if arr.dtype.kind not in "biuf":
        raise _type_error(name, type_name, value, f" (dtype {arr.dtype} is not numeric)")
    return arr


def _check_finite(arr: Any, c: Mapping[str, Any], name: str) -> None:
    import numpy as np

    if arr.dtype.kind == "f" and not c.get("allow_nonfinite") and not np.isfinite(arr).all():
        raise _violation(name, "array contains NaN or infinity", "allow_nonfinite")


def _embedding(value: Any, c: Mapping[str, Any], name: str):
    import numpy as np

    arr = _array(value, "embedding", name)
    if arr.ndim != 1:
        raise _type_error(name, "embedding", value, f" (an embedding is 1-D, got shape {arr.shape})")
    want = c.get("dtype")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow -> inf, refused just below
        if want is not None:
            arr = arr.astype(want, copy=False)
        elif arr.dtype.kind != "f":
            arr = arr.astype(np.float64)
    _check_finite(arr, c, name)
    if "dimensions" in c and arr.shape[0] != c["dimensions"]:
        raise _violation(name, f"has {arr.shape[0]} dimensions, expected {c['dimensions']}", "dimensions")
    if c.get("normalize"):
        norm = float(np.linalg.norm(arr.astype(np.float64)))
        if norm > 0.0 and abs(norm - 1.0) > 1e-6:
            with np.errstate(over="ignore", under="ignore", invalid="ignore"):
                arr = (arr.astype(np.float64) / norm).astype(arr.dtype)  # zero vector: kept
    return arr


def _tensor(value: Any, c: Mapping[str, Any], name: str):
    arr = _array(value, "tensor", name)
    if arr.dtype.name not in TENSOR_DTYPES:
        raise _type_error(name, "tensor", value, f" (unsupported dtype {arr.dtype})")
    if "dtype" in c and arr.dtype.name != c["dtype"]:
        try:
            arr = cast_array(arr, c["dtype"])
        except ValueError as exc:
            raise _violation(name, str(exc), "dtype") from None
    _check_finite(arr, c, name)
    shape = c.get("shape")
    if shape is not None and (
        len(shape) != arr.ndim or any(s is not None and s != a for s, a in zip(shape, arr.shape, strict=True))
    ):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise _violation(name, f"shape {tuple(arr.shape)} does not match {want}", "shape")
    return arr


def cast_array(arr: Any, dtype: str):
    """``arr`` as ``dtype`` without losing information, else ValueError saying why.

    Integers (and booleans) convert to any integer dtype whose range holds every value; any
    number converts to a float dtype (overflow becomes inf, which the finiteness rule refuses);
    only booleans convert to bool; floats never silently truncate to integers.
    """
    import numpy as np

    target = np.dtype(dtype)
    src = arr.dtype
    if target.kind == "b" and src.kind != "b":
        raise ValueError(f"dtype {src.name} cannot be stored as bool")
    if target.kind in "iu":
        if src.kind not in "biu":
            raise ValueError(f"dtype {src.name} cannot be stored as {target.name} without truncating")
        cast = arr.astype(target)
        if not np.array_equal(cast, arr):
            raise ValueError(f"values do not fit in {target.name}")
        return cast
    with np.errstate(over="ignore", invalid="ignore"):
        return arr.astype(target)


#: nesting depth of list/dict values (deeper input would exhaust the interpreter's stack)
MAX_DEPTH = 100


class _Bad(Exception):
    """A problem deep inside a list/dict value; each enclosing level adds its index on the way
    out, so the path (``value[3]['k']``) is only formatted when there is an error to report."""

    def __init__(self, cls: type[Exception], message: str) -> None:
        super().__init__(message)
        self.cls, self.message = cls, message
        self.path: list[str] = []


_PLAIN = frozenset({int, str, bool, type(None)})
_PLAIN_OR_FLOAT = _PLAIN | {float}


def _jsonable(value: Any, name: str, path: str, depth: int = 0) -> Any:
    """Convert to plain JSON types (tuples → lists, numpy scalars → Python, keys → str)."""
    try:
        return _walk(value, name, depth)
    except _Bad as bad:
        where = path + "".join(reversed(bad.path))
        if len(where) > 80:
            where = where[:77] + "..."
        raise bad.cls(f"{name!r}: " + bad.message.replace("{path}", where)) from None


def _walk(value: Any, name: str, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise _Bad(InvalidArgument, f"value is nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        v = float(value)
        if not math.isfinite(v):
            raise _Bad(ConstraintViolation, f"{{path}} is {v!r}; JSON values must be finite")
        return v
    if isinstance(value, (list, tuple)):
        flat = _flat(value, name, _budget.ITEM_UNITS)
        if flat is not None:
            return flat
        _budget.charge(_budget.CONTAINER_UNITS, f"{name!r}: checking a list value")
        out = []
        for i, v in enumerate(value):
            try:
                out.append(_walk(v, name, depth + 1))
            except _Bad as bad:
                bad.path.append(f"[{i}]")
                raise
        return out
    if isinstance(value, Mapping):
        if type(value) is dict and set(map(type, value)) <= {str}:
            flat = _flat(value.values(), name, _budget.ENTRY_UNITS)  # str keys: check the values
            if flat is not None:
                return dict(zip(value, flat, strict=True))
        _budget.charge(_budget.CONTAINER_UNITS, f"{name!r}: checking a dict value")
        obj: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, (str, int, float, bool)) or k is None:
                raise _Bad(VariableTypeError,
                           f"key {shorten(k)} at {{path}} cannot become a string key")
            key = k if isinstance(k, str) else json.dumps(k)
            if key in obj:
                raise _Bad(VariableTypeError,
                           f"key {shorten(k)} at {{path}} collides with another key that is also "
                           f"{shorten(key)} as a string")
            try:
                obj[key] = _walk(v, name, depth + 1)
            except _Bad as bad:
                bad.path.append(f"[{shorten(key)}]")
                raise
        return obj
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        return _walk(tolist(), name, depth)
    raise _Bad(VariableTypeError,
               f"{{path}} is {a_or_an(type(value).__name__)}, which has no JSON form")


def _flat(items: Any, name: str, units: int) -> list | None:
    """``list(items)`` when every item is already a plain finite JSON scalar, else None.

    The common shape (a list of numbers or strings, a dict of them) is checked at C speed
    (``set(map(type, ...))``) instead of one Python call per item.
    """
    kinds = set(map(type, items))
    if not kinds <= _PLAIN_OR_FLOAT:
        return None
    if float in kinds and not all(map(math.isfinite, [v for v in items if type(v) is float])):
        return None  # the slow path names the offending item
    _budget.charge(_budget.CONTAINER_UNITS + units * len(items), f"{name!r}: checking a value")
    return list(items)


_ITEM_VALIDATORS = {"float": _float, "integer": _integer, "string": _string, "boolean": _boolean}
_NO_CONSTRAINTS: Mapping[str, Any] = {}


def _list(value: Any, c: Mapping[str, Any], name: str) -> list:
    if not isinstance(value, (list, tuple)):
        raise _type_error(name, "list", value)
    out = _jsonable(value, name, "value")
    n = len(out)
    if "min_length" in c and n < c["min_length"]:
        raise _violation(name, f"has {n} items, fewer than {c['min_length']}", "min_length")
    if "max_length" in c and n > c["max_length"]:
        raise _violation(name, f"has {n} items, more than {c['max_length']}", "max_length")
    item_type = c.get("item_type")
    if item_type:
        check = _ITEM_VALIDATORS[item_type]
        for i, v in enumerate(out):
            try:
                out[i] = check(v, _NO_CONSTRAINTS, name)
            except VariableTypeError:  # again, with the item's index in the message
                try:
                    check(v, _NO_CONSTRAINTS, f"{name}[{i}]")
                except VariableTypeError as exc:
                    raise _violation(name, f"item has the wrong type: {exc}", "item_type") from None
    return out


def _dict(value: Any, c: Mapping[str, Any], name: str) -> dict:
    if not isinstance(value, Mapping):
        raise _type_error(name, "dict", value)
    out = _jsonable(value, name, "value")
    missing = [k for k in c.get("required_keys", ()) if k not in out]
    if missing:
        raise _violation(name, f"missing required keys {_short(missing)}", "required_keys")
    if "max_length" in c and len(out) > c["max_length"]:
        raise _violation(name, f"has {len(out)} keys, more than {c['max_length']}", "max_length")
    return out


_VALIDATORS = {
    "float": _float,
    "integer": _integer,
    "string": _string,
    "boolean": _boolean,
    "choice": _choice,
    "module": _module,
    "embedding": _embedding,
    "tensor": _tensor,
    "list": _list,
    "dict": _dict,
}
