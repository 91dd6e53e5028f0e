"""The one table between gRPC status codes and the DspexError tree.

The server aborts with ``abort_args(exc)`` (status code + message + trailing metadata
``dspex-error: <kind>`` so the client can re-raise the exact class); the client turns any
``grpc.aio.AioRpcError`` into an exception with :func:`error_from_rpc`.

Servers that do not send ``dspex-error`` (snakepit v0.4.x) are mapped by code, and by text where
v0.4.3 used INTERNAL for validation failures (wire-contract.md 1.5).
"""

from __future__ import annotations

import grpc

from .._errors import ERROR_KINDS, ConstraintViolation, DspexError, SessionNotFoundError

S = grpc.StatusCode
ERROR_KEY = "dspex-error"
#: request metadata by which a client says it reads raw binary arrays (v0.4.x clients do not)
CODEC_KEY = "dspex-codec"


class BridgeUnavailable(DspexError, ConnectionError, grpc.RpcError):
    """The server could not be reached, or the call timed out or was cut off.

    Also a ``grpc.RpcError``: ``e.code()`` / ``e.details()`` work as in the spec's retry example.
    """

    kind = "BridgeUnavailable"

    def __init__(self, message: str, code: grpc.StatusCode = S.UNAVAILABLE) -> None:
        super().__init__(message)
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return str(self)


ERROR_KINDS[BridgeUnavailable.kind] = BridgeUnavailable

#: exception kind -> status code (server side).
CODE_OF_KIND: dict[str, grpc.StatusCode] = {
    "DspexError": S.INTERNAL,
    "InvalidArgument": S.INVALID_ARGUMENT,
    "VariableNotFoundError": S.NOT_FOUND,
    "SessionNotFoundError": S.NOT_FOUND,
    "VariableExistsError": S.ALREADY_EXISTS,
    "VariableTypeError": S.INVALID_ARGUMENT,
    "ConstraintViolation": S.INVALID_ARGUMENT,
    "VersionConflict": S.FAILED_PRECONDITION,
    "OptimizationConflict": S.FAILED_PRECONDITION,
    "AccessDenied": S.PERMISSION_DENIED,
    "AuthenticationError": S.UNAUTHENTICATED,
    "Unsupported": S.UNIMPLEMENTED,
    "ResourceLimitExceeded": S.RESOURCE_EXHAUSTED,
    "StoreLocked": S.FAILED_PRECONDITION,
    "StoreUnavailable": S.UNAVAILABLE,  # etcd did not answer (_wire/etcd_client.py)
    "BridgeUnavailable": S.UNAVAILABLE,
    "Compacted": S.OUT_OF_RANGE,
}

#: status code -> exception kind, for servers that do not say which (client side).
KIND_OF_CODE: dict[grpc.StatusCode, str] = {
    S.INVALID_ARGUMENT: "InvalidArgument",
    S.NOT_FOUND: "VariableNotFoundError",
    S.ALREADY_EXISTS: "VariableExistsError",
    S.FAILED_PRECONDITION: "VersionConflict",
    S.PERMISSION_DENIED: "AccessDenied",
    S.UNAUTHENTICATED: "AuthenticationError",
    S.UNIMPLEMENTED: "Unsupported",
    S.RESOURCE_EXHAUSTED: "ResourceLimitExceeded",
    S.UNAVAILABLE: "BridgeUnavailable",
    S.DEADLINE_EXCEEDED: "BridgeUnavailable",
    S.CANCELLED: "BridgeUnavailable",
    S.OUT_OF_RANGE: "Compacted",
}

# Wording of v0.4.3's validation failures, which it sent as INTERNAL.
_OLD_VALIDATION_WORDS = ("must be", "above", "below", "Unknown type", "Invalid constraints",
                         "not one of", "invalid", "expected")


def abort_args(exc: DspexError) -> tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]]:
    """``(code, details, trailing_metadata)`` for ``context.abort`` on the server."""
    kind = getattr(exc, "kind", "DspexError")
    return CODE_OF_KIND.get(kind, S.INTERNAL), str(exc), ((ERROR_KEY, kind),)


def error_from_rpc(err: grpc.RpcError, what: str = "") -> DspexError:
    """Translate a failed call into the matching :class:`DspexError` subclass."""
    code = err.code() if callable(getattr(err, "code", None)) else S.UNKNOWN
    details = (err.details() if callable(getattr(err, "details", None)) else "") or ""
    kind = None
    trailing = err.trailing_metadata() if callable(getattr(err, "trailing_metadata", None)) else None
    for key, value in trailing or ():
        if key == ERROR_KEY:
            kind = value
    if kind is None:
        kind = KIND_OF_CODE.get(code)
        if code == S.NOT_FOUND and details.startswith("Session not found"):
            kind = SessionNotFoundError.kind
        elif code in (S.INTERNAL, S.UNKNOWN) and "not found" in details.lower():
            kind = "VariableNotFoundError"
        elif code == S.INTERNAL and any(w in details for w in _OLD_VALIDATION_WORDS):
            kind = ConstraintViolation.kind
    cls = ERROR_KINDS.get(kind or "", DspexError)
    if cls is BridgeUnavailable:
        where = f" during {what}" if what else ""
        return BridgeUnavailable(f"bridge unavailable{where}: {code.name}: {details}", code)
    if cls is DspexError:
        return DspexError(f"{what} failed: {code.name}: {details}" if what else details)
    return cls(details)
