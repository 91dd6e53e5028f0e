"""Server-side encodings of domain objects into protobuf, and their bounded byte caches.

The store hands the servicer :class:`~..server.backends.base.StoredVariable` and
:class:`~..server.events.EventBatch` objects; this module turns them into ``Variable`` /
``WatchResponse`` messages. A variable state never changes once committed (a write makes a new
one), so its serialized ``Variable`` is cached by ``(id, mod_revision, codec)`` in a cache
bounded by entry count and total bytes; an event batch is encoded once per distinct selection
and codec for all the watchers that receive it (``batch.memo``).

"Codec": clients that send ``dspex-codec: raw`` read embeddings/tensors as raw bytes
(``binary_value``); v0.4.x clients get the JSON forms they understand.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from .. import _codec
from .._proto import snakepit_bridge_pb2 as pb
from ..server.backends.base import StoredVariable
from ..server.events import Event, EventBatch
from . import pbwire

_ARRAYS = ("embedding", "tensor")


class ByteCache:
    """``key -> bytes`` with LRU eviction bounded by entry count and total size."""

    def __init__(self, max_entries: int = 50_000, max_bytes: int = 64 << 20,
                 max_entry_bytes: int = 1 << 20) -> None:
        self._data: OrderedDict[Any, bytes] = OrderedDict()
        self.max_entries, self.max_bytes, self.max_entry_bytes = max_entries, max_bytes, max_entry_bytes
        self.size = 0

    def get(self, key: Any) -> bytes | None:
        data = self._data.get(key)
        if data is not None:
            self._data.move_to_end(key)
        return data

    def put(self, key: Any, data: bytes) -> None:
        if len(data) > self.max_entry_bytes:
            return  # large values are cheap to rebuild relative to their transfer; don't pin them
        old = self._data.pop(key, None)
        if old is not None:
            self.size -= len(old)
        self._data[key] = data
        self.size += len(data)
        while len(self._data) > self.max_entries or self.size > self.max_bytes:
            _, dropped = self._data.popitem(last=False)
            self.size -= len(dropped)

    def __len__(self) -> int:
        return len(self._data)


def _plain(var: StoredVariable, raw: bool) -> bool:
    """Whether the stored encoding is what this client reads (only arrays differ per codec)."""
    return raw or var.type not in _ARRAYS


def variable_message(var: StoredVariable, raw: bool) -> pb.Variable:
    msg = pb.Variable(
        id=var.id, name=var.name, type=var.type, constraints_json=var.constraints_json,
        metadata=var.metadata, version=var.version, mod_revision=var.mod_revision,
        create_revision=var.create_revision, session_id=var.session_id,
        source=pb.Variable.ELIXIR if var.source == "elixir" else pb.Variable.PYTHON,
        optimization_status=pb.OptimizationStatus(optimizing=False),
    )
    if _plain(var, raw):
        msg.value.type_url, msg.value.value, msg.binary_value = var.type_url, var.data, var.binary
    else:
        msg.value.type_url, msg.value.value, _ = _codec.encode(var.type, var.value, binary=False)
    msg.last_updated_at.FromNanoseconds(int(var.updated_at * 1e9))
    return msg


class Encoder:
    """Caches serialized variables for one server."""

    def __init__(self) -> None:
        self.variables = ByteCache()
        self.packed = ByteCache()

    def variable_bytes(self, var: StoredVariable, raw: bool) -> bytes:
        key = (var.id, var.mod_revision, _plain(var, raw))
        data = self.variables.get(key)
        if data is None:
            data = variable_message(var, raw).SerializeToString()
            self.variables.put(key, data)
        return data

    def packed_element(self, var: StoredVariable) -> bytes:
        """One element of a ``values_only`` reply: ``["<type>", <value JSON>, <mod_revision>]``
        or, for a raw array, ``["<type>", <binary metadata JSON>, <byte length>, <mod_revision>]``."""
        key = (var.id, var.mod_revision)
        element = self.packed.get(key)
        if element is None:
            element = b'["' + var.type.encode() + b'",' + var.data
            if var.type in _ARRAYS:  # raw bytes follow, even zero of them
                element += b"," + str(len(var.binary)).encode()
            element += b"," + str(var.mod_revision).encode() + b"]"
            self.packed.put(key, element)
        return element


def _event_message(ev: Event, raw: bool) -> pb.WatchEvent:
    var = ev.current
    msg = pb.WatchEvent(
        variable_id=var.id, name=var.name, kind=ev.kind, type=var.type, version=var.version,
        revision=ev.revision, source=ev.source, metadata=ev.metadata, principal=ev.principal,
        session_id=ev.session_id,
    )
    if ev.new is not None:
        _fill(msg.value, msg, "binary_value", ev.new, raw)
        if ev.kind in ("register", "initial"):
            msg.constraints_json = ev.new.constraints_json
    # The event has one ``type``, the variable's current one, and clients decode both values
    # as that type. A registration that replaced a variable of another type would make the old
    # value undecodable, and every watcher would retry that revision forever; it goes without.
    if ev.old is not None and ev.old.type == var.type:
        msg.has_old_value = True
        _fill(msg.old_value, msg, "old_binary_value", ev.old, raw)
    msg.timestamp.FromNanoseconds(int(ev.ts * 1e9))
    return msg


def _fill(target: Any, msg: Any, binary_field: str, var: StoredVariable, raw: bool) -> None:
    if _plain(var, raw):
        target.type_url, target.value = var.type_url, var.data
        if var.binary:
            setattr(msg, binary_field, var.binary)
    else:
        target.type_url, target.value, _ = _codec.encode(var.type, var.value, binary=False)


def event_bytes(ev: Event, raw: bool) -> bytes:
    return _event_message(ev, raw).SerializeToString()


def batch_response(store_id: str, batch: EventBatch, selected: tuple[int, ...] | None,
                   raw: bool, dependents: Callable[[str], frozenset[str]] | None = None) -> bytes:
    """The serialized ``WatchResponse`` of a batch for one selection, built once per selection
    and codec for all watchers of the batch: events are serialized once each, then joined.
    ``dependents`` (watches with ``include_upstream``): each event also carries the names that
    depend on its variable (``WatchEvent.dependents``, appended to the event's bytes)."""
    key = (selected, raw, dependents is not None)
    data = batch.memo.get(key)
    if data is None:
        events = batch.events if selected is None else [batch.events[i] for i in selected]
        parts = [pbwire.field_bytes(1, store_id.encode()), pbwire.field_varint(2, batch.revision)]
        for i, ev in enumerate(events):
            index = i if selected is None else selected[i]
            ev_key = ("ev", index, raw)
            ev_data = batch.memo.get(ev_key)
            if ev_data is None:
                ev_data = batch.memo[ev_key] = event_bytes(ev, raw)
            if dependents is not None:
                names = dependents(ev.name)
                if names:
                    ev_data += b"".join(pbwire.field_bytes(18, n.encode()) for n in sorted(names))
            parts.append(pbwire.field_bytes(3, ev_data))
        data = batch.memo[key] = b"".join(parts)
    return data


def control_response(store_id: str, revision: int, **flags: Any) -> bytes:
    """A ``WatchResponse`` without events: created / progress / canceled."""
    return pb.WatchResponse(store_id=store_id, revision=revision, **flags).SerializeToString()


def initial_response(store_id: str, revision: int, variables: list[StoredVariable], raw: bool) -> bytes:
    """A chunk of the snapshot: one ``initial`` event per variable, at ``revision``."""
    msg = pb.WatchResponse(store_id=store_id, revision=revision, initial=True)
    for var in variables:
        ev = Event("initial", revision, var.session_id, var, None, "", var.source, {}, var.updated_at)
        msg.events.append(_event_message(ev, raw))
    return msg.SerializeToString()
