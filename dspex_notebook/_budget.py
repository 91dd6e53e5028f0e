"""A per-request CPU budget, so that no single request can hold the server's event loop for long.

Every handler runs on the one event-loop thread (see ``_wire/servicer.py``), so a request that
does a lot of work delays every other caller, Ping included. Size limits (``server/limits.py``)
bound the bytes a request carries, but not the work: a 1 MiB list of ``[],[],...`` or a
pathological pattern costs far more per byte than a string. The work whose cost is not
proportional to bytes is therefore *charged* here, in abstract units that each cost at most
about 20 ns on the reference machine (2-core EPYC VM; see docs/server.md "Liveness"):

* matching a regex or glob: RE2 program size × (subject bytes + 1) (the worst case of RE2's
  linear-time automata: one step per instruction per byte);
* compiling a pattern: 16 units per program instruction;
* decoding a value: ¾ unit per JSON byte (strings: ≈ 14 ns per byte from parse to re-encode),
  ⅛ per raw binary byte;
* a JSON list/dict value: :data:`CONTAINER_UNITS` per container, :data:`ITEM_UNITS` per list
  item and :data:`ENTRY_UNITS` per dict entry (what ``json.loads`` + checks + ``json.dumps``
  cost, measured: ≈ 0.3 µs per list item, ≈ 1.8 µs per dict entry).

:func:`begin_request` gives the current request a fresh budget of :data:`REQUEST_UNITS`; the
servicer calls it (through ``_wire/admission.py``) before each handler. grpc.aio runs every
RPC in its own asyncio task, and a task has its own copy of the context, so a budget never
leaks from one request into another. Outside a request (client-side validation, direct
``Store`` use) :func:`charge` only applies the per-operation caps of the callers.
"""

from __future__ import annotations

from contextvars import ContextVar

from ._errors import ResourceLimitExceeded

__all__ = [
    "REQUEST_UNITS", "CONTAINER_UNITS", "ITEM_UNITS", "ENTRY_UNITS", "begin_request", "charge",
    "remaining",
]

#: units one request may spend: ≈ 50 ms of the worst-case work on the reference machine.
REQUEST_UNITS = 2_500_000
#: units charged per JSON list/dict walked item by item (≈ 1 µs each)
CONTAINER_UNITS = 50
#: units per item of a list, and per entry of a dict (parse, check and re-encode)
ITEM_UNITS = 15
ENTRY_UNITS = 90


class _Meter:
    __slots__ = ("left",)

    def __init__(self, units: int) -> None:
        self.left = units


_meter: ContextVar[_Meter | None] = ContextVar("dspex_request_budget", default=None)


def begin_request(units: int = REQUEST_UNITS) -> None:
    """Give the request running in this context (one grpc.aio task) a fresh budget."""
    _meter.set(_Meter(units))


def charge(units: int, what: str) -> None:
    """Spend ``units`` of the current request's budget.

    Raises:
        ResourceLimitExceeded: the request has spent more than :data:`REQUEST_UNITS`.
    """
    meter = _meter.get()
    if meter is None:
        return
    meter.left -= units
    if meter.left < 0:
        raise ResourceLimitExceeded(
            f"{what}: this request needs more work than one request may do (a budget of "
            f"{REQUEST_UNITS:,} units, about 50 ms); send fewer or smaller values, or simpler "
            "patterns, per call"
        )


def remaining() -> int | None:
    """Units left in the current request's budget (None outside a request)."""
    meter = _meter.get()
    return None if meter is None else meter.left
