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
"""

from __future__ import annotations

import functools
import hmac
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import grpc

from ..._errors import AuthenticationError, DspexError, InvalidArgument, Unsupported
from ...server.backends.base import StaleView
from ...server.store import STALE_RETRIES, Store
from ..admission import admit
from ..encode import Encoder
from ..status import CODEC_KEY, abort_args

log = logging.getLogger("dspex_notebook.server")



class MalformedRequest:
    """A request body that did not parse (see :func:`lenient_deserializer`).

    grpc.aio answers a deserializer exception with UNKNOWN "Unexpected DecodeError" (and logs an
    error); handing the failure to the handler instead lets it authenticate the caller first and
    then answer INVALID_ARGUMENT, like any other bad input.
    """

    __slots__ = ("type_name", "reason")

    def __init__(self, type_name: str, reason: str) -> None:
        self.type_name, self.reason = type_name, reason


def lenient_deserializer(message_class: Any) -> Callable[[bytes], Any]:
    """``message_class.FromString`` that returns a :class:`MalformedRequest` instead of raising."""
    parse = message_class.FromString
    type_name = message_class.DESCRIPTOR.full_name

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception as exc:  # DecodeError, or whatever the parser raises on garbage
            return MalformedRequest(type_name, str(exc) or type(exc).__name__)

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
            raise InvalidArgument(f"request is not a valid {request.type_name}: {request.reason}")
        admit(request, self.store.limits)


async def _abort(context: grpc.aio.ServicerContext, exc: DspexError) -> None:
    code, details, trailing = abort_args(exc)
    context.set_trailing_metadata(trailing)
    await context.abort(code, details)


def rpc(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A unary handler ``fn(self, request, principal, raw) -> reply``; ``fn`` may be a
    coroutine function (work moved off the loop, e.g. an optimizer's suggestion)."""
    awaits = inspect.iscoroutinefunction(fn)

    @functools.wraps(fn)
    async def handler(self: ServicerBase, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            principal, raw = self._caller(context)
            self._check_request(request)
            if self.shared:
                return await _shared_call(self, fn, awaits, request, principal, raw)
            reply = fn(self, request, principal, raw)
            return (await reply) if awaits else reply
        except DspexError as exc:
            # the traceback's frames hold the request (maybe megabytes): let go of them now
            # instead of waiting for the garbage collector to break the exception's cycle
            request = None  # noqa: F841
            exc.__traceback__ = None
            await _abort(context, exc)
        except Exception:  # bad input must never take the server down
            log.exception("internal error in %s", fn.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {fn.__name__}")

    return handler


async def _shared_call(self: ServicerBase, fn: Callable[..., Any], awaits: bool, request: Any,
                       principal: str, raw: bool) -> Any:
    """A handler on a store several servers write (etcd): read only after the view holds
    every write acknowledged before the call (:meth:`Store.read_barrier`), and stage a plain
    handler again when its commit met another server's newer write (:class:`StaleView`)."""
    if self.store.linearizable:
        await self.store.read_barrier()
    pipelined = getattr(type(self), "_shared_" + fn.__name__, None)
    if pipelined is not None:  # a hot write with a commit that does not hold the loop
        return await pipelined(self, request, principal, raw)
    for attempt in range(STALE_RETRIES):
        try:
            reply = fn(self, request, principal, raw)
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
        try:
            principal, raw = self._caller(context)
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

    return handler


def unsupported(what: str) -> Callable[..., Any]:
    """A handler that answers UNIMPLEMENTED (after authenticating) with a clear message."""

    @rpc
    def handler(self: ServicerBase, request: Any, principal: str, raw: bool) -> Any:
        raise Unsupported(f"{what} is not supported by this dspex-notebook server")

    return handler
