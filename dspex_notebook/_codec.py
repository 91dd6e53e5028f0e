"""Python values <-> the wire encoding of wire-contract.md (no grpc, no protobuf here).

A value travels as ``(type_url, data, binary)``, the three parts of ``google.protobuf.Any`` plus
the message's ``binary_value`` field:

* ``type_url = "type.googleapis.com/snakepit.<type>"`` and ``data`` = UTF-8 JSON text. Special
  floats are the JSON strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (v0.4.3's convention).
* embeddings and tensors go as raw little-endian bytes in ``binary``, with
  ``type_url = "...snakepit.<type>.binary"`` and ``data`` = JSON
  ``{"shape": [...], "dtype": "float32", "binary_format": "raw"}``.
  ``binary=False`` produces the v0.4.3 JSON forms instead (list / ``{"shape", "data"}``), which is
  what an old peer can read; both forms are accepted on decode.
* ``"binary_format": "pickle"`` (what the v0.4.3 Python client sends for large arrays) is refused
  and never unpickled.

The decoded value is the *raw* form for the type named in the URL; :func:`validate` in
``_constraints`` then coerces it to the declared type of the variable.

Hostile input: a ``type_url`` longer than :data:`MAX_TYPE_URL_LENGTH` or binary metadata longer
than :data:`MAX_BINARY_META_BYTES` is refused before any parsing; the two lookup caches below
are bounded by entry size *and* count (so a refused request can never leave a large key
behind); decoding is charged to the server request's work budget (:mod:`dspex_notebook._budget`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from . import _budget
from ._constraints import MAX_NDIM, TENSOR_DTYPES, cast_array
from ._errors import InvalidArgument, shorten
from ._types import TYPE_ALIASES, TYPE_NAMES

__all__ = [
    "TYPE_URL_PREFIX", "TYPE_NAMES_SET", "MAX_TYPE_URL_LENGTH", "MAX_BINARY_META_BYTES",
    "decode", "encode", "type_of_url", "unpack_values",
]

#: longest accepted ``type_url`` (ours are at most 45 characters)
MAX_TYPE_URL_LENGTH = 256
#: longest accepted binary metadata JSON (``{"shape": [...32 dims], "dtype", ...}`` fits easily)
MAX_BINARY_META_BYTES = 4096

TYPE_URL_PREFIX = "type.googleapis.com/snakepit."
TYPE_NAMES_SET = frozenset(TYPE_NAMES)
_URLS = {t: TYPE_URL_PREFIX + t for t in TYPE_NAMES}
_BIN_URLS = {t: TYPE_URL_PREFIX + t + ".binary" for t in ("embedding", "tensor")}
_SPECIAL_OUT = {"nan": b'"NaN"', "inf": b'"Infinity"', "-inf": b'"-Infinity"'}
_SPECIAL_IN = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_MAX_NDIM = MAX_NDIM
_FAST: dict[str, tuple[str, Callable[[bytes], Any]]] = {
    _URLS["float"]: ("float", float),
    _URLS["integer"]: ("integer", int),
    _URLS["boolean"]: ("boolean", {b"true": True, b"false": False}.__getitem__),
}
# Both caches hold only short keys (a refused 12 MiB type_url or metadata must not stay behind)
# and stop growing at a fixed count: at most 256 × 256 B and 1024 × 256 B.
_url_cache: dict[str, tuple[str, bool]] = {}
_URL_CACHE_ENTRIES = 256
# Parsing the binary metadata JSON dominates decoding small arrays; the same few strings recur.
_meta_cache: dict[bytes, tuple[tuple[int, ...] | None, Any]] = {}
_META_CACHE_ENTRIES = 1024
_CACHED_KEY_BYTES = 256
#: work units charged per byte decoded (see _budget: JSON ≈ 14 ns/byte end to end, raw ≈ 3)
_JSON_UNITS_PER_BYTE = 0.75
_RAW_BYTES_PER_UNIT = 8

# Large JSON is encoded and decoded in pieces. One json call is one C call that holds the GIL
# throughout (a 256 KiB list of ints: ≈ 11 ms to encode, 6 ms to decode), and the server
# does this work in a worker thread precisely so that its event loop can answer others
# meanwhile (``server/prepared.py``): between pieces the loop gets its turn.
#: items of a top-level list or dict encoded per json call
_PIECE_ITEMS = 4096
#: bytes of a flat JSON array of numbers decoded per json call
_PIECE_BYTES = 32 * 1024
#: what a flat JSON array of numbers is made of, besides its brackets
_NUMBER_BYTES = b"0123456789.eE+-, \t\n\r"
_dumps = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode


def dumps(value: Any) -> bytes:
    """``json.dumps(value, allow_nan=False, separators=(",", ":"))`` as bytes, a large
    top-level list or dict encoded :data:`_PIECE_ITEMS` items per call (same output)."""
    if isinstance(value, (list, tuple)) and len(value) > _PIECE_ITEMS:
        parts = [_dumps(value[i:i + _PIECE_ITEMS])[1:-1]
                 for i in range(0, len(value), _PIECE_ITEMS)]
        return ("[" + ",".join(parts) + "]").encode()
    if isinstance(value, dict) and len(value) > _PIECE_ITEMS:
        items = list(value.items())
        parts = [_dumps(dict(items[i:i + _PIECE_ITEMS]))[1:-1]
                 for i in range(0, len(items), _PIECE_ITEMS)]
        return ("{" + ",".join(parts) + "}").encode()
    return _dumps(value).encode()


def loads(data: bytes) -> Any:
    """``json.loads(data)``; a large flat array of numbers (an embedding or a list of numbers
    sent as JSON) is decoded :data:`_PIECE_BYTES` at a time, split at commas (same result)."""
    if len(data) <= _PIECE_BYTES:
        return json.loads(data)
    body = data.strip()
    if body[:1] != b"[" or body[-1:] != b"]" or body.translate(None, _NUMBER_BYTES) != b"[]":
        return json.loads(data)
    inner, out, start = body[1:-1], [], 0
    while start < len(inner):
        end = inner.find(b",", start + _PIECE_BYTES)
        end = len(inner) if end < 0 else end
        out += json.loads(b"[" + inner[start:end] + b"]")
        start = end + 1
    if inner.rstrip().endswith(b","):  # "[1, ]" split at its last comma
        raise ValueError("Expecting value: a trailing or lone comma")
    return out


def encode(type_name: str, value: Any, *, binary: bool = True) -> tuple[str, bytes, bytes]:
    """Encode a canonical value of ``type_name`` as ``(type_url, json_bytes, binary_bytes)``."""
    if type_name in ("embedding", "tensor"):
        return _encode_array(type_name, value, binary)
    if type_name == "float":
        v = float(value)
        data = repr(v).encode() if math.isfinite(v) else _SPECIAL_OUT[repr(v)]
    elif type_name == "boolean":
        data = b"true" if value else b"false"
    elif type_name == "integer":
        data = str(int(value)).encode()
    else:
        data = dumps(value)
    return _URLS[type_name], data, b""


def _encode_array(type_name: str, arr: Any, binary: bool) -> tuple[str, bytes, bytes]:
    import numpy as np

    arr = np.asarray(arr)
    if not binary:
        if type_name == "embedding":
            return _URLS[type_name], json.dumps(arr.tolist()).encode(), b""
        doc = {"shape": list(arr.shape), "dtype": arr.dtype.name, "data": arr.tolist()}
        return _URLS[type_name], json.dumps(doc).encode(), b""
    le = arr.dtype.newbyteorder("<")
    payload = arr.astype(le, copy=False).tobytes()  # tobytes() is C order whatever the layout
    meta = (
        b'{"shape":' + json.dumps(list(arr.shape)).encode()
        + b',"dtype":"' + arr.dtype.name.encode() + b'","binary_format":"raw"}'
    )
    return _BIN_URLS[type_name], meta, payload


def type_of_url(type_url: str) -> tuple[str, bool]:
    """Return ``(type_name, is_binary)`` for a value's type_url."""
    known = _url_cache.get(type_url)
    if known is not None:
        return known
    if len(type_url) > MAX_TYPE_URL_LENGTH:
        raise InvalidArgument(
            f"value type_url is {len(type_url):,} characters long (limit {MAX_TYPE_URL_LENGTH}): "
            f"{shorten(type_url)}"
        )
    tail = type_url.rsplit("/", 1)[-1]
    if tail.startswith("snakepit."):
        tail = tail[len("snakepit."):]
    is_binary = tail.endswith(".binary")
    if is_binary:
        tail = tail[: -len(".binary")]
    name = TYPE_ALIASES.get(tail, tail)
    if name not in TYPE_NAMES or (is_binary and name not in _BIN_URLS):
        raise InvalidArgument(f"unknown value type_url {shorten(type_url)}")
    if len(_url_cache) < _URL_CACHE_ENTRIES and len(type_url) <= _CACHED_KEY_BYTES:
        _url_cache[type_url] = (name, is_binary)
    return name, is_binary


def decode(type_url: str, data: bytes, binary: bytes = b"") -> tuple[str, Any]:
    """Decode a wire value; return ``(type_name_from_url, raw_value)``.

    Raises:
        InvalidArgument: malformed JSON, unknown type_url, refused or inconsistent binary payload.
    """
    if not type_url:
        raise InvalidArgument("no value given (empty google.protobuf.Any)")
    fast = _FAST.get(type_url)
    if fast is not None:  # scalars skip json.loads (~1 µs each; matters for batches)
        try:
            return fast[0], fast[1](data)
        except (ValueError, KeyError):
            pass
    name, is_binary = type_of_url(type_url)
    if is_binary:
        _budget.charge(len(binary) // _RAW_BYTES_PER_UNIT, f"decoding a {name} value")
        return name, _decode_binary(name, data, binary)
    _budget.charge(int(len(data) * _JSON_UNITS_PER_BYTE), f"decoding a {name} value")
    try:
        raw = loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"value of type {name} is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidArgument(f"value of type {name} is nested too deeply") from None
    if name == "float" and isinstance(raw, str):
        if raw not in _SPECIAL_IN:
            raise InvalidArgument(f"float value {shorten(raw)} is not a number")
        raw = _SPECIAL_IN[raw]
    elif name in ("embedding", "tensor"):
        raw = _decode_json_array(name, raw)
    return name, raw


def _decode_json_array(name: str, raw: Any):
    if name == "embedding" and isinstance(raw, list):
        return _to_array(raw, None, name)
    if isinstance(raw, dict) and "data" in raw:
        arr = _to_array(raw["data"], raw.get("dtype"), name)
        shape = raw.get("shape")
        if shape is not None:
            try:
                arr = arr.reshape(_shape(shape))
            except ValueError:
                raise InvalidArgument(f"{name} data does not fit shape {shorten(shape)}") from None
        return arr
    if isinstance(raw, list):
        return _to_array(raw, None, name)
    if isinstance(raw, dict) and "binary_format" in raw:
        raise InvalidArgument(f"{name} metadata says binary but the type_url has no .binary suffix")
    raise InvalidArgument(
        f"{name} value must be a JSON list or {{'shape', 'data'}}, got {type(raw).__name__}"
    )


def _to_array(data: Any, dtype: Any, name: str):
    import numpy as np

    if dtype is not None and dtype not in TENSOR_DTYPES:
        raise InvalidArgument(f"{name} dtype {shorten(dtype)} is not one of {', '.join(TENSOR_DTYPES)}")
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise InvalidArgument(f"{name} data is not a rectangular list of numbers") from None
    if arr.dtype.kind not in "biuf":
        raise InvalidArgument(f"{name} data is not numeric (dtype {arr.dtype})")
    if dtype is not None and arr.dtype.name != dtype:
        try:
            arr = cast_array(arr, dtype)
        except ValueError as exc:
            raise InvalidArgument(f"{name} data: {exc}") from None
    return arr


def _shape(shape: Any) -> tuple[int, ...]:
    if (
        not isinstance(shape, list)
        or len(shape) > _MAX_NDIM
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)
    ):
        raise InvalidArgument(
            f"shape must be a list of at most {_MAX_NDIM} non-negative ints, got {shorten(shape)}"
        )
    return tuple(shape)


def _decode_binary(name: str, data: bytes, binary: Any):
    cached = _meta_cache.get(data)
    if cached is None:
        if len(data) > MAX_BINARY_META_BYTES:
            raise InvalidArgument(
                f"{name} binary metadata is {len(data):,} bytes (limit {MAX_BINARY_META_BYTES})"
            )
        try:
            meta = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise InvalidArgument(f"{name} binary metadata is not valid JSON") from None
        cached = _binary_meta(name, meta)
        if len(_meta_cache) < _META_CACHE_ENTRIES and len(data) <= _CACHED_KEY_BYTES:
            _meta_cache[data] = cached
    return _array_from(name, cached, binary)


def _binary_meta(name: str, meta: Any) -> tuple[tuple[int, ...] | None, Any]:
    """``(shape, little-endian dtype)`` from a binary value's JSON metadata."""
    import numpy as np

    if not isinstance(meta, dict):
        raise InvalidArgument(f"{name} binary metadata must be a JSON object")
    fmt = meta.get("binary_format", "raw")
    if fmt == "pickle":
        raise InvalidArgument(
            f"{name} payload is a pickle; pickle is refused (never unpickled). "
            "Send raw little-endian bytes with binary_format='raw'."
        )
    if fmt != "raw":
        raise InvalidArgument(f"{name} binary_format {shorten(fmt)} is not supported (use 'raw')")
    dtype = meta.get("dtype", "float32")
    if dtype not in TENSOR_DTYPES:
        raise InvalidArgument(f"{name} dtype {shorten(dtype)} is not one of {', '.join(TENSOR_DTYPES)}")
    return (_shape(meta["shape"]) if "shape" in meta else None, np.dtype(dtype).newbyteorder("<"))


def _array_from(name: str, meta: tuple[tuple[int, ...] | None, Any], binary: Any):
    import numpy as np

    shape, dt = meta
    if len(binary) % dt.itemsize:
        raise InvalidArgument(
            f"{name} payload of {len(binary)} bytes is not a whole number of {dt.name}"
        )
    arr = np.frombuffer(binary, dtype=dt)
    if shape is not None:
        if math.prod(shape) != arr.size:
            raise InvalidArgument(f"{name} payload has {arr.size} elements but shape {list(shape)}")
        try:
            arr = arr.reshape(shape)
        except ValueError:  # e.g. an empty payload with an absurd dimension: (2**40, 0)
            raise InvalidArgument(f"{name} shape {list(shape)} is not a valid array shape") from None
    if not dt.isnative:
        arr = arr.astype(dt.newbyteorder("="))
    return arr


def unpack_values(packed: bytes, blob: bytes) -> tuple[list[Any], list[int | None]]:
    """Decode a ``values_only`` batch reply (see ``BatchGetVariablesResponse.packed_values``):
    ``(values, mod_revisions)``, a mod_revision being None from servers that do not send it.

    One ``json.loads`` for the whole batch; arrays are read-only views into ``blob``.
    """
    try:
        items = json.loads(packed)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidArgument("packed batch reply is not valid JSON") from None
    out: list[Any] = []
    revs: list[int | None] = []
    append, append_rev = out.append, revs.append
    view = memoryview(blob)
    offset = 0
    for item in items:
        type_name, value = item[0], item[1]
        n = len(item)
        if type_name == "float":  # the common case first: one class check, no tuple lookup
            if value.__class__ is not float:
                value = _SPECIAL_IN[value] if value.__class__ is str else float(value)
            append(value)
            append_rev(item[2] if n == 3 else None)
            continue
        is_array = type_name in ("embedding", "tensor")
        if is_array and n >= 3:  # raw array: its bytes are the next item[2] bytes of the blob
            end = offset + item[2]
            append(_array_from(type_name, _binary_meta(type_name, value), view[offset:end]))
            offset = end
            append_rev(item[3] if n == 4 else None)
            continue
        append_rev(item[2] if n == 3 else None)
        append(_decode_json_array(type_name, value) if is_array else value)
    return out, revs
