"""Protobuf messages <-> Python values and :class:`~dspex_notebook._types.Variable`."""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

from .. import _codec
from .._constraints import validate
from .._proto import snakepit_bridge_pb2 as pb

_UTC = _dt.UTC
SOURCE_NAMES = {pb.Variable.ELIXIR: "elixir", pb.Variable.PYTHON: "python"}


def set_any(target: Any, type_url: str, data: bytes) -> None:
    """Fill a ``google.protobuf.Any`` field in place (no Pack: the value is raw JSON bytes)."""
    target.type_url = type_url
    target.value = data


def encode_value(type_name: str, value: Any, binary: bool = True) -> tuple[str, bytes, bytes]:
    return _codec.encode(type_name, value, binary=binary)


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


def variable_from_pb(var: pb.Variable) -> Any:
    from .._types import Variable

    try:
        constraints = json.loads(var.constraints_json) if var.constraints_json else {}
    except ValueError:
        constraints = {}
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
    )
