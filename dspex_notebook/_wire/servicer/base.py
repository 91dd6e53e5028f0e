"""What every handler shares: authentication, the codec flag, and error → status mapping.

Every unary handler goes through :func:`rpc` and every streaming one through :func:`stream`:

* the caller is authenticated (``authorization: Bearer <token>`` → principal, else
  UNAUTHENTICATED), before anything else, also for undecodable requests;
* the caller's codec is noted (``dspex-codec: raw``: it reads raw binary arrays; v0.4.x clients
  don't, so they get the JSON forms they understand);
* a :class:`DspexError` becomes its status code (one table, ``status.py``) with the exact class
  in the trailing metadata, and any other exception INTERNAL, without killing the server.

Unary handler bodies are plain functions (no awaits): the store is in memory and a commit is a
single short transaction, so a handler never yields mid-write and writes are serialized.

Large requests keep the loop free (docs/server.md, "Liveness"): a body larger than any
admissible request of its type is refused unparsed; one over :data:`OFFLOAD_BYTES` is parsed
and admitted in a worker thread, and a write's values are decoded, validated and encoded there
too (``rpc(prepare=...)``, ``server/prepared.py``); only staging and the commit run on the loop.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, TypeVar

import grpc

from ..._budget import begin_request
from ..._errors import (
    AuthenticationError,
    DspexError,
    InvalidArgument,
    Unsupported,
)
from ...server.backends.base import StaleView
from ...server.store import STALE_RETRIES, Store
from ..admission import admit, check_fields
from ..encode import Encoder
from ..status import CODEC_KEY, abort_args

log = logging.getLogger("dspex_notebook.server")
_T = TypeVar("_T")



class MalformedRequest:
    """A request body that did not parse (see :func:`lenient_deserializer`), or (``size``)
    one larger than any admissible request of its type.

    grpc.aio answers a deserializer exception with UNKNOWN "Unexpected DecodeError" (and logs an
    error); handing the failure to the handler instead lets it authenticate the caller first and
    then answer INVALID_ARGUMENT, like any other bad input.
    """

    __slots__ = ("type_name", "reason", "size")

    def __init__(self, type_name: str, reason: str, size: int = 0) -> None:
        self.type_name, self.reason, self.size = type_name, reason, size


class Unparsed:
    """A request body over :data:`OFFLOAD_BYTES`: :func:`rpc` parses and admits it (and
    prepares its values) in a worker thread rather than on the event loop."""

    __slots__ = ("parse", "data")

    def __init__(self, parse: Callable[[bytes], Any], data: bytes) -> None:
        self.parse, self.data = parse, data


#: request bodies larger than this are parsed, admitted and prepared off the event loop:
#: ≈ 1-4 ms of work for the costliest kinds of content (JSON dict entries, tiny fields)
OFFLOAD_BYTES = 16 * 1024
#: large requests worked on in threads at once (more wait their turn: their buffers and the
#: GIL are shared, and the loop must still get its share)
PARALLEL_HEAVY = 2


def lenient_deserializer(message_class: Any,
                         bound: tuple[int, str] | None = None) -> Callable[[bytes], Any]:
    """``message_class.FromString`` that returns a :class:`MalformedRequest` instead of
    raising, refuses a body over ``bound`` (``admission.request_bound``: bytes, limits) unparsed,
    and leaves one over :data:`OFFLOAD_BYTES` :class:`Unparsed` for :func:`rpc`."""
    parse = message_class.FromString
    type_name = message_class.DESCRIPTOR.full_name

    def lenient(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception as exc:  # DecodeError, or whatever the parser raises on garbage
            return MalformedRequest(type_name, str(exc) or type(exc).__name__)

    most, rules = bound or (0, "")

    def deserialize(data: bytes) -> Any:
        size = len(data)
        if most and size > most:
            return MalformedRequest(type_name, f"{rules}: at most {most} bytes", size)
        if size > OFFLOAD_BYTES:
            return Unparsed(lenient, data)
        return lenient(data)

    return deserialize


class ServicerBase:
    """State shared by the handler groups: the store, tokens, encoder."""

    def __init__(self, store: Store, tokens: Mapping[str, str], version: str) -> None:
        self.store = store
        self._tokens = dict(tokens)  # token -> principal
        self._version = version
        # The (single) token's header value, so the common case is one string compare.
        self._fast = {f"Bearer {t}": p for t, p in self._tokens.items()}
        self.encoder = Encoder()
        self._heavy: asyncio.Semaphore | None = None
        #: several servers write the store (etcd): see :func:`_shared_call`
        self.shared = bool(getattr(store.backend, "shared", False))

    def _caller(self, context: grpc.aio.ServicerContext) -> tuple[str, bool]:
        auth = None
        raw = False
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                auth = value
            elif key == CODEC_KEY:
                raw = value == "raw"
        if not self._tokens:
            return "anonymous", raw
        if auth is not None:
            principal = self._fast.get(auth)
            if principal is not None:
                return principal, raw
            presented = auth.removeprefix("Bearer ").encode()
            for token, principal in self._tokens.items():
                if hmac.compare_digest(presented, token.encode()):
                    return principal, raw
        raise AuthenticationError(
            "missing or wrong token: send gRPC metadata 'authorization: Bearer <token>' "
            "(the token is in the server's runtime file or --token-file)"
        )

    def _check_request(self, request: Any) -> None:
        """Refuse undecodable requests and, before any handler work, every field past its
        limit (``admission.py``: identifiers, names, metadata, counts, sizes)."""
        if isinstance(request, MalformedRequest):
            _refuse_malformed(request)
        admit(request, self.store.limits)

    def _parse_and_check(self, unparsed: Unparsed) -> Any:
        """(Worker thread) :meth:`_check_request` for an :class:`Unparsed` body; the loop
        started its work budget."""
        request = unparsed.parse(unparsed.data)
        if isinstance(request, MalformedRequest):
            _refuse_malformed(request)
        check_fields(request, self.store.limits)
        return request

    async def off_loop(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)`` in a worker thread, at most :data:`PARALLEL_HEAVY` at once per
        server, in the caller's context (its work budget)."""
        if self._heavy is None:
            self._heavy = asyncio.Semaphore(PARALLEL_HEAVY)
        async with self._heavy:
            return await asyncio.to_thread(fn, *args)


def _refuse_malformed(request: MalformedRequest) -> None:
    if request.size:  # some field must be past its limit, or the body is not this message
        raise InvalidArgument(
            f"request is not a valid {request.type_name}: it is {request.size} bytes, more than "
            f"its fields may hold within the server's limits ({request.reason}; "
            "docs/server.md, \"Limits\")")
    raise InvalidArgument(f"request is not a valid {request.type_name}: {request.reason}")


class Deferred:
    """A reply to build after the commit: in a worker thread for a large request (its parts
    are immutable committed state), inline otherwise."""

    __slots__ = ("build",)

    def __init__(self, build: Callable[[], Any]) -> None:
        self.build = build


async def _abort(context: grpc.aio.ServicerContext, exc: DspexError) -> None:
    code, details, trailing = abort_args(exc)
    context.set_trailing_metadata(trailing)
    await context.abort(code, details)


def rpc(fn: Callable[..., Any] | None = None, *,
        prepare: Callable[..., Callable[[], Any]] | None = None) -> Any:
    """A unary handler ``fn(self, request, principal, raw) -> reply``; ``fn`` may be a
    coroutine function (work moved off the loop, e.g. an optimizer's suggestion).

    A request body over :data:`OFFLOAD_BYTES` is parsed and admitted in a worker thread. With
    ``prepare(self, request, principal) -> thunk`` (a write's values: decode, validate,
    encode, ``server/prepared.py``) the handler is ``fn(self, request, principal, raw,
    prepared)`` where ``prepared = thunk()``, run in the worker thread for a large request and
    inline otherwise; a :class:`Deferred` reply is built the same way.
    """
    if fn is None:
        return functools.partial(rpc, prepare=prepare)
    awaits = inspect.iscoroutinefunction(fn)

    @functools.wraps(fn)
    async def handler(self: ServicerBase, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            principal, raw = self._caller(context)
            heavy = request.__class__ is Unparsed
            if heavy:
                begin_request()
                request = await self.off_loop(self._parse_and_check, request)
            else:
                self._check_request(request)
            extra: tuple[Any, ...] = ()
            thunk = None
            if prepare is not None:
                thunk = prepare(self, request, principal)
                extra = ((await self.off_loop(thunk)) if heavy else thunk(),)
            if self.shared:
                reply = await _shared_call(self, fn, awaits, request, principal, raw, extra)
            else:
                reply = fn(self, request, principal, raw, *extra)
                if awaits:
                    reply = await reply
            if reply.__class__ is Deferred:
                reply = (await self.off_loop(reply.build)) if heavy else reply.build()
            return reply
        except DspexError as exc:
            # the traceback's frames hold the request (maybe megabytes): let go of them now
            # instead of waiting for the garbage collector to break the exception's cycle
            request = extra = thunk = None  # type: ignore[assignment]  # noqa: F841
            exc.__traceback__ = None
            await _abort(context, exc)
        except Exception:  # bad input must never take the server down
            log.exception("internal error in %s", fn.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {fn.__name__}")

    return handler


async def _shared_call(self: ServicerBase, fn: Callable[..., Any], awaits: bool, request: Any,
                       principal: str, raw: bool, extra: tuple[Any, ...]) -> Any:
    """A handler on a store several servers write (etcd): read only after the view holds
    every write acknowledged before the call (:meth:`Store.read_barrier`), and stage a plain
    handler again when its commit met another server's newer write (:class:`StaleView`)."""
    if self.store.linearizable:
        await self.store.read_barrier()
    pipelined = getattr(type(self), "_shared_" + fn.__name__, None)
    if pipelined is not None:  # a hot write with a commit that does not hold the loop
        return await pipelined(self, request, principal, raw, *extra)
    for attempt in range(STALE_RETRIES):
        try:
            reply = fn(self, request, principal, raw, *extra)
            return (await reply) if awaits else reply
        except StaleView:
            if awaits or attempt == STALE_RETRIES - 1:
                raise
    raise AssertionError("unreachable")


def stream(fn: Callable[..., AsyncIterator[Any]]) -> Callable[..., Any]:
    """A server-streaming handler ``fn(self, request, principal, raw, context)`` (async gen)."""

    @functools.wraps(fn)
    async def handler(self: ServicerBase, request: Any,
                      context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        self.store.open_streams += 1  # a stopping server waits for them (runner.py)
        try:
            principal, raw = self._caller(context)
            if request.__class__ is Unparsed:
                begin_request()
                request = await self.off_loop(self._parse_and_check, request)
            else:
                self._check_request(request)
            if self.shared:  # a client moving here must not find this server behind its
                await self.store.read_barrier()  # last revision (it would resync for nothing)
            async for message in fn(self, request, principal, raw, context):
                yield message
        except DspexError as exc:
            # the traceback's frames hold the request (maybe megabytes): let go of them now
            # instead of waiting for the garbage collector to break the exception's cycle
            request = None  # noqa: F841
            exc.__traceback__ = None
            await _abort(context, exc)
        except Exception:
            log.exception("internal error in %s", fn.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {fn.__name__}")
        finally:
            self.store.open_streams -= 1

    return handler


def unsupported(what: str) -> Callable[..., Any]:
    """A handler that answers UNIMPLEMENTED (after authenticating) with a clear message."""

    @rpc
    def handler(self: ServicerBase, request: Any, principal: str, raw: bool) -> Any:
        raise Unsupported(f"{what} is not supported by this dspex-notebook server")

    return handler
