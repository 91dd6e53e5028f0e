"""Size and count limits the server enforces, so bad or huge input is refused, not crashed on.

Transport-free: ``_wire/admission.py`` walks each request and calls the ``check_*`` methods
below before the handler runs; the servicer checks each value with :meth:`Limits.check_value`
before decoding it. Past a size or count limit the answer is RESOURCE_EXHAUSTED
(:class:`ResourceLimitExceeded`); malformed input (an over-long name or identifier, a
constraints document that is not JSON) is INVALID_ARGUMENT. Error messages quote at most 80
characters of what the caller sent.

The defaults bound the work of the most expensive accepted request of each kind (about 50 ms
on a 2-core machine, together with the per-request work budget of :mod:`dspex_notebook._budget`);
most of that work runs in a worker thread, not on the event loop (docs/server.md, "Liveness").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._errors import InvalidArgument, ResourceLimitExceeded, shorten


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-server limits. Exceeding one gives RESOURCE_EXHAUSTED or INVALID_ARGUMENT."""

    #: one request or reply on the wire (parsing 16 MiB of tiny fields takes ≈ 0.1 s)
    max_message_bytes: int = 16 * 1024 * 1024
    #: one value: type_url + JSON + raw binary bytes
    max_value_bytes: int = 8 * 1024 * 1024
    #: the JSON text of one value (every type but raw binary arrays, whose JSON is metadata):
    #: structured JSON costs ≈ 150 ns per byte to parse, check and re-encode
    max_json_value_bytes: int = 256 * 1024
    #: variable names, session ids, variable identifiers, metadata keys
    max_name_length: int = 256
    max_metadata_entries: int = 64
    max_metadata_value_length: int = 4096
    #: one variable's ``constraints_json`` document
    max_constraints_bytes: int = 64 * 1024
    #: registrations + updates in one batch; identifiers in one GetVariables
    max_batch: int = 500
    max_variables_per_session: int = 10_000
    max_sessions: int = 10_000
    #: dependency edges of one session (its graph is one document, rewritten by each edit:
    #: ≈ 15 ms of the loop per edit at this size, docs/api.md "Dependencies")
    max_edges_per_session: int = 2000
    #: the JSON of one edge's metadata
    max_edge_metadata_bytes: int = 2048
    #: free text with no other limit (a Ping message, an unclassified string field)
    max_text_length: int = 4096

    def check_metadata(self, metadata: Mapping[str, Any]) -> None:
        if len(metadata) > self.max_metadata_entries:
            raise ResourceLimitExceeded(
                f"metadata has {len(metadata)} entries (limit {self.max_metadata_entries})"
            )
        for key, value in metadata.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise InvalidArgument(
                    f"metadata must map strings to strings, got {shorten(key)}: {shorten(value)}"
                )
            if len(key) > self.max_name_length or len(value) > self.max_metadata_value_length:
                raise ResourceLimitExceeded(
                    f"metadata entry {shorten(key, 40)} is too long (key limit {self.max_name_length},"
                    f" value limit {self.max_metadata_value_length})"
                )

    def check_identifier(self, what: str, value: Any) -> None:
        """A name, session id or variable identifier: a string of at most
        :attr:`max_name_length` characters (INVALID_ARGUMENT otherwise, before any lookup, so
        an over-long identifier is never answered NOT_FOUND nor echoed back in full)."""
        if not isinstance(value, str):
            raise InvalidArgument(f"{what} must be a string, got {type(value).__name__}")
        if len(value) > self.max_name_length:
            raise InvalidArgument(
                f"{what} is {len(value)} characters long (limit {self.max_name_length}): "
                f"{shorten(value)}"
            )

    def check_text(self, what: str, value: str, limit: int | None = None) -> None:
        limit = self.max_text_length if limit is None else limit
        if len(value) > limit:
            raise InvalidArgument(f"{what} is {len(value)} characters long (limit {limit})")

    def check_count(self, what: str, count: int) -> None:
        """A batch (registrations + updates, identifiers to read) of at most :attr:`max_batch`."""
        if count > self.max_batch:
            raise ResourceLimitExceeded(f"{what} has {count} entries (limit {self.max_batch})")

    def check_constraints_json(self, text: str, name: str) -> None:
        if len(text) > self.max_constraints_bytes:
            raise ResourceLimitExceeded(
                f"{shorten(name)}: constraints_json is {len(text)} bytes "
                f"(limit {self.max_constraints_bytes})"
            )

    def check_value(self, size: int, json_size: int) -> None:
        """Refuse an oversize value before any parsing work.

        Parameters:
            size: the whole value as received: every part counts, the type_url too (a 12 MiB
                type_url is as big as a 12 MiB value), the JSON bytes and the raw binary bytes.
                The servicer passes the ``Any``'s ``ByteSize()``, which does not copy the
                type_url out of the message, plus the binary's length.
            json_size: the JSON bytes alone: they have the tighter :attr:`max_json_value_bytes`
                because parsing and checking JSON costs far more per byte than copying raw
                arrays.
        """
        if size > self.max_value_bytes:
            raise ResourceLimitExceeded(
                f"a value of {size} bytes (type_url + JSON + binary) exceeds the limit of "
                f"{self.max_value_bytes}"
            )
        if json_size > self.max_json_value_bytes:
            raise ResourceLimitExceeded(
                f"a value whose JSON is {json_size} bytes exceeds the limit of "
                f"{self.max_json_value_bytes} for JSON (send large arrays as embedding/tensor "
                "raw binary values)"
            )
