"""The export document: its format, and turning it into checked, encoded variables.

An export is one JSON document (``format: "dspex-notebook/export"``, ``version: 1``); the
client turns it into YAML, parquet or pickle and back (``dspex_notebook/io/``), so the server
only ever parses JSON. Layout (docs/api.md, "Export and import")::

    {"format": "dspex-notebook/export", "version": 1,
     "exported_at": 1767225600.0, "store_id": "...", "session_id": "s", "revision": 42,
     "pattern": null, "include_history": true,
     "variables": [
       {"name": "temperature", "type": "float", "value": 0.7,
        "constraints": {"min": 0.0, "max": 2.0}, "metadata": {"description": "..."},
        "version": 3, "updated_at": 1767225500.5, "source": "python",
        "id": "var_temperature#7", "create_revision": 7,              # informational
        "history": [{"version": 0, "op": "register", "value": 0.5, "updated_at": ...,
                     "updated_by": "owner", "metadata": {}, "revision": 7}, ...]},  # optional
       ...],
     "dependencies": [...],   # optional section: present only when the server has some
     "rules": [...]}          # optional section: access rules, likewise

Values are the wire's JSON (floats that are not finite as ``"NaN"``, ``"Infinity"``,
``"-Infinity"``); ``embedding``/``tensor`` values are ``{"dtype", "shape", "base64"}`` with the
raw little-endian C-order bytes, so dtype, shape and every bit survive. Unknown keys are
ignored (a later version may add some); a document of a newer ``version`` is refused.

Everything here is pure (no store, no loop), so the servicer runs it in a worker thread: a
16 MiB document never holds the event loop.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass, field
from typing import Any

from .. import _budget, _codec
from .._constraints import canonical_type, check_constraints, validate
from .._errors import DspexError, InvalidArgument, ResourceLimitExceeded, shorten
from .._names import check_name
from .limits import Limits

FORMAT = "dspex-notebook/export"
VERSION = 1
#: optional sections a document may carry (dependencies and access rules land separately)
SECTIONS = ("dependencies", "rules")
#: work units a document's decoding may spend off the loop (≈ 2 s of the worst-case work)
DOCUMENT_UNITS = 100_000_000
#: history entries in one document (all variables together)
MAX_HISTORY_ENTRIES = 100_000
_ARRAYS = ("embedding", "tensor")
_URL = "type.googleapis.com/snakepit."


# ----------------------------------------------------------------------------------------------
# values


def value_to_doc(type_name: str, type_url: str, data: bytes, binary: bytes) -> Any:
    """A stored value (its wire encoding) as the document's JSON-able form."""
    if type_name in _ARRAYS:
        _, arr = _codec.decode(type_url, data, binary)
        _, meta, raw = _codec.encode(type_name, arr)
        doc = json.loads(meta)
        return {"dtype": doc["dtype"], "shape": doc["shape"],
                "base64": base64.b64encode(raw).decode("ascii")}
    return json.loads(data)


def value_from_doc(type_name: str, value: Any, where: str) -> Any:
    """The document form of a value back to the raw Python value (not yet validated)."""
    try:
        if type_name in _ARRAYS:
            if not isinstance(value, dict) or not {"dtype", "shape", "base64"} <= value.keys():
                raise InvalidArgument(f"a {type_name} value must be an object with dtype, shape "
                                      f"and base64, got {shorten(value)}")
            try:
                raw = base64.b64decode(value["base64"], validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise InvalidArgument("base64 is not valid base64") from None
            meta = json.dumps({"shape": value["shape"], "dtype": value["dtype"],
                               "binary_format": "raw"}).encode()
            return _codec.decode(f"{_URL}{type_name}.binary", meta, raw)[1]
        if type_name == "float" and isinstance(value, float) and not math.isfinite(value):
            return value  # YAML's .nan/.inf arrive as floats
        return _codec.decode(f"{_URL}{type_name}", json.dumps(value, allow_nan=False).encode())[1]
    except DspexError as exc:
        raise type(exc)(f"{where}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"{where}: {exc}") from None


# ----------------------------------------------------------------------------------------------
# import: a document into checked entries


@dataclass(slots=True)
class Encoded:
    """One value of a document, validated and in its wire encoding."""

    value: Any
    type_url: str
    data: bytes
    binary: bytes


@dataclass(slots=True)
class HistoryEntry:
    version: int
    op: str
    value: Encoded
    updated_at: float
    updated_by: str
    metadata: dict[str, str]


@dataclass(slots=True)
class Entry:
    """One variable of a document. ``error`` set: the entry could not be read (reported per
    variable, nothing of it is written)."""

    name: str
    type: str = ""
    value: Encoded | None = None
    raw_value: Any = None  # before validation (merge combines it with the target's value)
    constraints: dict[str, Any] = field(default_factory=dict)
    constraints_json: str = "{}"
    metadata: dict[str, str] = field(default_factory=dict)
    version: int = 0
    updated_at: float | None = None
    source: str = "python"
    history: list[HistoryEntry] = field(default_factory=list)
    error: str = ""


@dataclass(slots=True)
class Document:
    entries: list[Entry]
    sections: dict[str, Any]  # optional sections present in the document
    session_id: str = ""
    revision: int = 0


def encode_checked(limits: Limits, type_name: str, raw: Any, constraints: dict[str, Any],
                   name: str) -> Encoded:
    value = validate(type_name, raw, constraints, name)
    type_url, data, binary = _codec.encode(type_name, value)
    limits.check_value(len(type_url) + len(data) + len(binary),
                       0 if type_name in _ARRAYS else len(data))
    return Encoded(value, type_url, data, binary)


def parse(data: bytes, limits: Limits) -> Document:
    """Parse and check an export document (run off the loop: :data:`DOCUMENT_UNITS`).

    Raises:
        InvalidArgument: not JSON, not an export document, a newer version, or a malformed
            part; the message says where (line and column, or the path of the part).
        ResourceLimitExceeded: more variables or history entries than allowed.
    """
    _budget.begin_request(DOCUMENT_UNITS)
    try:
        doc = json.loads(data)
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"the export document is not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"the export document is not valid JSON: line {exc.lineno} column "
                              f"{exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise InvalidArgument("the export document is nested too deeply") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InvalidArgument(f"not a dspex-notebook export document (expected \"format\": "
                              f"{FORMAT!r} at the top level)")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InvalidArgument(f"export document: \"version\" must be a positive integer, got "
                              f"{shorten(version)}")
    if version > VERSION:
        raise InvalidArgument(f"export document version {version} is newer than this server "
                              f"reads ({VERSION}); upgrade dspex-notebook")
    variables = doc.get("variables")
    if not isinstance(variables, list):
        raise InvalidArgument("export document: \"variables\" must be a list")
    if len(variables) > limits.max_variables_per_session:
        raise ResourceLimitExceeded(f"export document has {len(variables)} variables (limit "
                                    f"{limits.max_variables_per_session} per session)")
    sections = {}
    for key in SECTIONS:
        if doc.get(key) is not None:
            if not isinstance(doc[key], list):
                raise InvalidArgument(f"export document: \"{key}\" must be a list")
            sections[key] = doc[key]
    entries: list[Entry] = []
    seen: set[str] = set()
    history_total = 0
    for i, item in enumerate(variables):
        where = f"variables[{i}]"
        if not isinstance(item, dict):
            raise InvalidArgument(f"{where} must be an object, got {shorten(item)}")
        try:
            name = check_name(item.get("name"))
        except DspexError as exc:
            raise InvalidArgument(f"{where}.name: {exc}") from None
        if name in seen:
            raise InvalidArgument(f"{where}: variable {name!r} appears twice in the document")
        seen.add(name)
        history = item.get("history")
        history_total += len(history) if isinstance(history, list) else 0
        if history_total > MAX_HISTORY_ENTRIES:
            raise ResourceLimitExceeded(f"export document has more than {MAX_HISTORY_ENTRIES} "
                                        "history entries")
        entries.append(_entry(item, f"{where} ({name!r})", limits))
    session_id = doc.get("session_id")
    revision = doc.get("revision")
    return Document(entries, sections, session_id if isinstance(session_id, str) else "",
                    revision if isinstance(revision, int) else 0)


def _entry(item: dict[str, Any], where: str, limits: Limits) -> Entry:
    entry = Entry(item["name"])
    try:
        type_name = item.get("type")
        if not isinstance(type_name, str):
            raise InvalidArgument(f"{where}.type: must be a type name, got {shorten(type_name)}")
        entry.type = canonical_type(type_name)
        constraints = item.get("constraints") or {}
        if not isinstance(constraints, dict):
            raise InvalidArgument(f"{where}.constraints: must be an object")
        entry.constraints_json = json.dumps(constraints, sort_keys=True)
        limits.check_constraints_json(entry.constraints_json, entry.name)
        entry.constraints = check_constraints(entry.type, constraints, entry.name)
        entry.constraints_json = json.dumps(entry.constraints, sort_keys=True)
        metadata = item.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise InvalidArgument(f"{where}.metadata: must be an object of strings")
        try:
            limits.check_metadata(metadata)
        except DspexError as exc:
            raise type(exc)(f"{where}.metadata: {exc}") from None
        entry.metadata = dict(metadata)
        entry.version = _int(item.get("version", 0), f"{where}.version")
        entry.updated_at = _time(item.get("updated_at"), f"{where}.updated_at")
        source = item.get("source", "python")
        entry.source = source if isinstance(source, str) and len(source) <= 64 else "python"
        if "value" not in item:
            raise InvalidArgument(f"{where}: no \"value\"")
        entry.raw_value = value_from_doc(entry.type, item["value"], f"{where}.value")
        entry.value = encode_checked(limits, entry.type, entry.raw_value, constraints, entry.name)
        entry.history = _history(item.get("history"), entry, where, limits)
    except DspexError as exc:
        entry.error = str(exc)
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
        # a checker met a shape it does not expect: malformed input, not a server fault
        entry.error = f"{where}: malformed: {type(exc).__name__}: {str(exc)[:200]}"
    return entry


def _history(raw: Any, entry: Entry, where: str, limits: Limits) -> list[HistoryEntry]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidArgument(f"{where}.history: must be a list")
    out: list[HistoryEntry] = []
    for j, h in enumerate(raw):
        at = f"{where}.history[{j}]"
        if not isinstance(h, dict):
            raise InvalidArgument(f"{at}: must be an object")
        version = _int(h.get("version"), f"{at}.version")
        op = h.get("op", "set")
        if op not in ("register", "set"):
            raise InvalidArgument(f"{at}.op: must be 'register' or 'set', got {shorten(op)}")
        metadata = h.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise InvalidArgument(f"{at}.metadata: must be an object of strings")
        limits.check_metadata(metadata)
        by = h.get("updated_by", "")
        raw_value = value_from_doc(entry.type, h.get("value"), f"{at}.value")
        value = encode_checked(limits, entry.type, raw_value, entry.constraints, entry.name)
        out.append(HistoryEntry(version, op, value, _time(h.get("updated_at"), f"{at}.updated_at")
                                or 0.0, by if isinstance(by, str) else "", dict(metadata)))
    out.sort(key=lambda h: h.version)
    versions = [h.version for h in out]
    if len(set(versions)) != len(versions):
        raise InvalidArgument(f"{where}.history: a version appears twice")
    if out and versions[-1] > entry.version:
        raise InvalidArgument(f"{where}.history: version {versions[-1]} is newer than the "
                              f"variable's version {entry.version}")
    return out


def _int(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**31:
        raise InvalidArgument(f"{where}: must be an integer 0..2^31-1, got {shorten(value)}")
    return value


def _time(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidArgument(f"{where}: must be seconds since the epoch, got {shorten(value)}")
    return float(value)


# ----------------------------------------------------------------------------------------------
# export: variables into a document


def build(store_id: str, session_id: str, revision: int, pattern: str, variables: list[Any],
          history: dict[str, list[Any]] | None, sections: dict[str, Any],
          exported_at: float) -> bytes:
    """The export document of ``variables`` (StoredVariables) and their ``history`` rows
    (oldest first) as UTF-8 JSON. Pure: the servicer runs it in a worker thread."""
    items = []
    for var in variables:
        item: dict[str, Any] = {
            "name": var.name, "type": var.type,
            "value": value_to_doc(var.type, var.type_url, var.data, var.binary),
            "constraints": json.loads(var.constraints_json) if var.constraints_json else {},
            "metadata": dict(var.metadata), "version": var.version,
            "updated_at": var.updated_at, "source": var.source, "id": var.id,
            "create_revision": var.create_revision,
        }
        rows = None if history is None else history.get(var.id, [])
        if rows is not None:
            item["history"] = [
                {"version": r.version, "op": r.op,
                 "value": value_to_doc(var.type, r.type_url, r.data, r.binary),
                 "updated_at": r.ts, "updated_by": r.changed_by, "metadata": dict(r.metadata),
                 "revision": r.revision}
                for r in rows
            ]
        items.append(item)
    doc: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "exported_at": exported_at, "store_id": store_id,
        "session_id": session_id, "revision": revision, "pattern": pattern or None,
        "include_history": history is not None, "variables": items, **sections,
    }
    return json.dumps(doc, indent=1, allow_nan=False, ensure_ascii=False).encode()
