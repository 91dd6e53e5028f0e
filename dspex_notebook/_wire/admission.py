"""Request admission: the checks every request passes before its handler runs.

:func:`admit` is called once per RPC by the servicer (after authentication). It

* gives the request a fresh work budget (:func:`dspex_notebook._budget.begin_request`), and
* walks the parsed request and applies :class:`~dspex_notebook.server.limits.Limits` to every
  field a caller controls: identifiers (session ids, names, variable identifiers, the keys of
  update maps) are at most ``max_name_length`` characters → INVALID_ARGUMENT; batches (update
  maps, identifier lists, registrations) hold at most ``max_batch`` entries and metadata maps
  at most ``max_metadata_entries`` → RESOURCE_EXHAUSTED; ``constraints_json`` (and an access
  ``rules_json``) is at most ``max_constraints_bytes``; a glob ``pattern`` at most
  ``MAX_PATTERN_LENGTH`` characters; any other string at most ``max_text_length``.

So the store only ever sees bounded input, and an over-long identifier is refused as such
instead of being looked up (NOT_FOUND) and echoed back. Values (``google.protobuf.Any`` and
binary bytes) are left to the servicer's per-value check, because a non-atomic batch reports
a bad value as that entry's error rather than refusing the whole request.

The walk is driven by the message descriptors, planned once per message type, so a new field
is covered by the generic rules without touching this file.
"""

from __future__ import annotations

from typing import Any

from .. import _budget
from .._errors import shorten
from .._patterns import MAX_PATTERN_LENGTH
from ..server.limits import Limits

__all__ = ["admit", "check_fields", "request_bound"]

#: string fields that name something (checked as identifiers), and how errors call them
_IDENTIFIERS = {
    "session_id": "session id",
    "as_session": "session id",
    "variable_identifier": "variable identifier",
    "variable_id": "variable id",
    "name": "name",
    "from_variable": "variable identifier",
    "to_variable": "variable identifier",
    "tool_name": "tool name",
    "optimizer_id": "optimizer id",
    "worker_id": "worker id",
}
#: maps whose keys are variable identifiers and whose size is a batch
_BATCH_MAPS = frozenset({"updates", "binary_updates", "parameters", "binary_parameters"})
#: maps of free-form string pairs
_METADATA_MAPS = frozenset({"metadata", "update_metadata"})
#: messages checked elsewhere (values) or harmless (timestamps)
_OPAQUE = frozenset({"google.protobuf.Any", "google.protobuf.Timestamp"})

# descriptor full name -> [(field name, check kind)]
_plans: dict[str, list[tuple[str, str]]] = {}


def _plan(descriptor: Any) -> list[tuple[str, str]]:
    plan = _plans.get(descriptor.full_name)
    if plan is not None:
        return plan
    plan = []
    for field in descriptor.fields:
        message = field.message_type
        if message is not None and message.GetOptions().map_entry:
            if field.name in _BATCH_MAPS:
                plan.append((field.name, "batch_map"))
            elif field.name in _METADATA_MAPS:
                plan.append((field.name, "metadata"))
            elif message.fields_by_name["value"].message_type is not None:
                plan.append((field.name, "message_map"))
            else:
                plan.append((field.name, "string_map"))
        elif message is not None:
            if message.full_name in _OPAQUE:
                continue
            plan.append((field.name, "messages" if field.is_repeated else "message"))
        elif field.type == field.TYPE_STRING:
            if field.is_repeated:
                plan.append((field.name, "identifiers"))
            elif field.name in _IDENTIFIERS:
                plan.append((field.name, "identifier"))
            elif field.name == "constraints_json":
                plan.append((field.name, "constraints"))
            elif field.name == "pattern":
                plan.append((field.name, "pattern"))
            elif field.name == "rules_json":
                plan.append((field.name, "rules"))
            else:
                plan.append((field.name, "text"))
    _plans[descriptor.full_name] = plan
    return plan


def admit(request: Any, limits: Limits) -> None:
    """Start the request's work budget and check every caller-controlled field of ``request``.

    Raises:
        InvalidArgument: an over-long identifier, pattern or text field.
        ResourceLimitExceeded: a batch, metadata map or constraints document over its limit.
    """
    _budget.begin_request()
    _check(request, limits)


def check_fields(request: Any, limits: Limits) -> None:
    """:func:`admit` without starting a budget (for a request admitted in a worker thread,
    whose budget the loop started)."""
    _check(request, limits)


# ----------------------------------------------------------------------------------------------
# the largest body a request type can have and still be admitted

#: bytes of a field's tag, length prefix and a numeric value, at most
_FIELD_OVERHEAD = 16
#: characters are counted by :func:`_check`; a character is at most 4 bytes of UTF-8
_UTF8 = 4


def request_bound(descriptor: Any, limits: Limits) -> tuple[int, str] | None:
    """An upper bound on the serialized size of an admissible ``descriptor`` message and the
    limits that make it (for the refusal), or None if it carries values (``Any``, bytes,
    documents: bounded by the message limit only).

    The servicer refuses a body over this bound before parsing it (``base.py``): parsing
    costs ≈ 36 ns per field in one C call that holds the GIL, so 8 MiB of a million
    tiny identifiers held the loop ≈ 0.13 s only to be refused by :func:`admit` afterwards.
    """
    kinds: set[str] = set()
    bound = _bound(descriptor, limits, 0, kinds)
    if bound is None:
        return None
    rules = {
        "identifier": f"names and identifiers ≤ {limits.max_name_length} characters",
        "identifiers": f"≤ {limits.max_batch} identifiers",
        "messages": f"≤ {limits.max_batch} entries",
        "text": f"text ≤ {limits.max_text_length} characters",
        "constraints": f"constraints_json ≤ {limits.max_constraints_bytes} characters",
        "rules": f"rules_json ≤ {limits.max_constraints_bytes} characters",
        "pattern": f"pattern ≤ {MAX_PATTERN_LENGTH} characters",
        "metadata": f"metadata ≤ {limits.max_metadata_entries} entries",
    }
    return bound, ", ".join(text for kind, text in rules.items() if kind in kinds)


def _bound(descriptor: Any, limits: Limits, depth: int, kinds: set[str]) -> int | None:
    if depth > 8:
        return None
    name_bytes = limits.max_name_length * _UTF8 + _FIELD_OVERHEAD
    total = 0
    planned = dict(_plan(descriptor))
    for field in descriptor.fields:
        kind = planned.get(field.name)
        if field.type == field.TYPE_BYTES or field.name == "document_json":
            return None
        message = field.message_type
        if kind is None:
            if message is not None and message.full_name == "google.protobuf.Timestamp":
                total += 2 * _FIELD_OVERHEAD
            elif message is not None:  # an Any, a value
                return None
            else:  # a number or bool (a packed repeated one would need a count limit)
                if field.is_repeated:
                    return None
                total += _FIELD_OVERHEAD
            continue
        kinds.add("messages" if kind in ("message_map", "string_map") else kind)
        if kind == "identifier":
            total += name_bytes
        elif kind == "text":
            total += limits.max_text_length * _UTF8 + _FIELD_OVERHEAD
        elif kind in ("constraints", "rules"):
            total += limits.max_constraints_bytes * _UTF8 + _FIELD_OVERHEAD
        elif kind == "pattern":
            total += MAX_PATTERN_LENGTH * _UTF8 + _FIELD_OVERHEAD
        elif kind == "identifiers":
            total += limits.max_batch * name_bytes
        elif kind == "metadata":
            total += limits.max_metadata_entries * (
                name_bytes + limits.max_metadata_value_length * _UTF8 + 2 * _FIELD_OVERHEAD)
        elif kind == "string_map":
            total += limits.max_batch * 2 * (limits.max_text_length * _UTF8 + _FIELD_OVERHEAD)
        else:  # messages, message maps, a message, batch maps
            inner = message.fields_by_name["value"].message_type if kind in (
                "message_map", "batch_map") else message
            if kind == "batch_map" or inner is None:
                return None
            one = _bound(inner, limits, depth + 1, kinds)
            if one is None:
                return None
            count = 1 if kind == "message" else limits.max_batch
            total += count * (one + name_bytes + _FIELD_OVERHEAD)
    return total


def _check(msg: Any, limits: Limits) -> None:
    for name, kind in _plan(msg.DESCRIPTOR):
        value = getattr(msg, name)
        if kind == "identifier":
            if len(value) > limits.max_name_length:
                limits.check_identifier(_IDENTIFIERS[name], value)
        elif kind == "text":
            limits.check_text(name.replace("_", " "), value)
        elif kind == "constraints":
            limits.check_constraints_json(value, getattr(msg, "name", ""))
        elif kind == "pattern":
            limits.check_text("pattern", value, MAX_PATTERN_LENGTH)
        elif kind == "rules":
            limits.check_text("rules_json", value, limits.max_constraints_bytes)
        elif kind == "identifiers":
            limits.check_count(name.replace("_", " "), len(value))
            for item in value:
                if len(item) > limits.max_name_length:
                    limits.check_identifier("variable identifier", item)
        elif kind == "batch_map":
            limits.check_count(name.replace("_", " "), len(value))
            for key in value:
                if len(key) > limits.max_name_length:
                    limits.check_identifier("variable identifier", key)
        elif kind == "metadata":
            limits.check_metadata(value)
        elif kind == "string_map":
            limits.check_count(name.replace("_", " "), len(value))
            for key, item in value.items():
                limits.check_text(f"{name.replace('_', ' ')} key", key)
                limits.check_text(f"{name.replace('_', ' ')}[{shorten(key, 40)}]", item)
        elif kind == "message_map":
            limits.check_count(name.replace("_", " "), len(value))
            for item in value.values():
                _check(item, limits)
        elif kind == "messages":
            limits.check_count(name.replace("_", " "), len(value))
            for item in value:
                _check(item, limits)
        elif kind == "message" and msg.HasField(name):
            _check(value, limits)
