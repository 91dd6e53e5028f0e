"""Protobuf messages <-> Python values and :class:`~dspex_notebook._types.Variable`."""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

from .. import _codec
from .._constraints import validate
from .._proto import snakepit_bridge_pb2 as pb
from .._types import VariableUpdate

_UTC = _dt.UTC
SOURCE_NAMES = {pb.Variable.ELIXIR: "elixir", pb.Variable.PYTHON: "python"}


def set_any(target: Any, type_url: str, data: bytes) -> None:
    """Fill a ``google.protobuf.Any`` field in place (no Pack: the value is raw JSON bytes)."""
    target.type_url = type_url
    target.value = data


def value_of(var: pb.Variable) -> Any:
    """Decode a Variable message's value into its declared Python type."""
    url_type, raw = _codec.decode(var.value.type_url, var.value.value, var.binary_value)
    declared = var.type
    if url_type == declared or declared not in _codec.TYPE_NAMES_SET:
        return raw
    return validate(declared, raw, {}, var.name)  # e.g. an old server's integer for a float


def timestamp_to_datetime(ts: Any) -> _dt.datetime | None:
    if not ts.seconds and not ts.nanos:
        return None
    return _dt.datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, _UTC)


def _constraints(text: str) -> dict[str, Any]:
    try:
        loaded = json.loads(text) if text else {}
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _any_value(type_name: str, any_value: Any, binary: bytes, name: str) -> Any:
    url_type, raw = _codec.decode(any_value.type_url, any_value.value, binary)
    if url_type == type_name or type_name not in _codec.TYPE_NAMES_SET:
        return raw
    return validate(type_name, raw, {}, name)


def update_from_pb(ev: pb.WatchEvent) -> VariableUpdate:
    """A decoded watch event (values of deleted variables decode from ``old_value``)."""
    value = _any_value(ev.type, ev.value, ev.binary_value, ev.name) if ev.value.type_url else None
    old = (_any_value(ev.type, ev.old_value, ev.old_binary_value, ev.name)
           if ev.has_old_value and ev.old_value.type_url else None)
    constraints = _constraints(ev.constraints_json) if ev.kind in ("register", "initial") else None
    return VariableUpdate(
        variable_id=ev.variable_id, name=ev.name, value=value, old_value=old, kind=ev.kind,
        revision=ev.revision, version=ev.version, type=ev.type, metadata=dict(ev.metadata),
        timestamp=timestamp_to_datetime(ev.timestamp), source=ev.source, constraints=constraints,
        upstream_of=tuple(ev.dependents),
    )


def variable_from_pb(var: pb.Variable) -> Any:
    from .._types import Variable

    constraints = _constraints(var.constraints_json)
    return Variable(
        id=var.id,
        name=var.name,
        type=var.type,
        value=value_of(var),
        constraints=constraints,
        metadata=dict(var.metadata),
        version=var.version,
        mod_revision=var.mod_revision,
        create_revision=var.create_revision,
        source=SOURCE_NAMES.get(var.source, "python"),
        updated_at=timestamp_to_datetime(var.last_updated_at),
        optimizing=var.optimization_status.optimizing,
        session_id=var.session_id,
    )
