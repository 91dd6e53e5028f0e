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
from .._patterns import MAX_PATTERN_LENGTH
from ..server.limits import Limits

__all__ = ["admit"]

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
