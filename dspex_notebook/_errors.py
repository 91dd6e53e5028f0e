"""The exception tree shared by client and server.

Every error this package raises on purpose is a :class:`DspexError`. The leaves also subclass
the builtin exception that ``variables-api-spec.md`` promises, so code written against the spec
(``except KeyError``, ``except ValueError``, ``except PermissionError``) keeps working.

``BridgeUnavailable`` (communication failures) lives in ``dspex_notebook._wire.status`` because
it is also a ``grpc.RpcError`` and only ``_wire`` may import grpc.
"""

from __future__ import annotations

import reprlib
from typing import Any

#: how much of a caller's input an error message may quote (see :func:`shorten`)
QUOTE_LIMIT = 80


def shorten(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)``, cut to ``limit`` characters with an ellipsis.

    Error messages quote what the caller sent so that they can be acted on, but never more than
    this: an over-long identifier or value must not come back (or into logs) in full. The repr
    is built by :mod:`reprlib`, which looks at the first few items only, so quoting a 16 MiB
    value or a million-item list costs nothing.
    """
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = QUOTE_LIMIT
_REPR.maxlong = 40
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 8
_REPR.maxlevel = 3


def a_or_an(word: str) -> str:
    """``"a float"``, ``"an integer"``, ``"an embedding"``: for messages."""
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


class DspexError(Exception):
    """Base class of every error raised deliberately by dspex_notebook."""

    #: Stable name sent on the wire (trailing metadata ``dspex-error``) so the client re-raises
    #: the same class the server raised.
    kind = "DspexError"

    def __str__(self) -> str:  # KeyError's __str__ would quote the message; keep it readable.
        return str(self.args[0]) if self.args else self.kind


class InvalidArgument(DspexError, ValueError):
    """A request was malformed: unknown type, bad constraint spec, bad name, bad pattern."""

    kind = "InvalidArgument"


class VariableNotFoundError(DspexError, KeyError):
    """No variable with that name or id exists in the session."""

    kind = "VariableNotFoundError"


class SessionNotFoundError(DspexError, KeyError):
    """The session does not exist (or was cleaned up)."""

    kind = "SessionNotFoundError"


class VariableExistsError(DspexError, ValueError):
    """A variable of that name is already registered in the session."""

    kind = "VariableExistsError"


class VariableTypeError(DspexError, TypeError, ValueError):
    """A value does not have the variable's type.

    Both ``TypeError`` (what the spec raises on register) and ``ValueError`` (what it raises on
    set for the same mismatch).
    """

    kind = "VariableTypeError"


class ConstraintViolation(DspexError, ValueError):
    """A value has the right type but breaks one of the variable's constraints."""

    kind = "ConstraintViolation"


class VersionConflict(DspexError, ValueError):
    """``expected_version`` did not match the variable's current version (optimistic locking)."""

    kind = "VersionConflict"


class OptimizationConflict(DspexError, ValueError):
    """The variable is already being optimized (or is locked by a running optimization)."""

    kind = "OptimizationConflict"


class AccessDenied(DspexError, PermissionError):
    """The caller may not do this: wrong or missing token, or no permission on the variable."""

    kind = "AccessDenied"


class AuthenticationError(AccessDenied):
    """The call carried no valid ``authorization: Bearer <token>`` (gRPC UNAUTHENTICATED)."""

    kind = "AuthenticationError"


class Unsupported(DspexError, NotImplementedError):
    """The server does not implement this RPC (e.g. an older snakepit server)."""

    kind = "Unsupported"


class ResourceLimitExceeded(DspexError, ValueError):
    """A request exceeds a configured size or count limit."""

    kind = "ResourceLimitExceeded"


class Compacted(DspexError, LookupError):
    """The requested revision is below the store's compaction watermark: that part of the
    change log is gone (a watch resumes by relisting; see docs/watch.md)."""

    kind = "Compacted"

    def __init__(self, message: str, compact_revision: int = 0) -> None:
        super().__init__(message)
        self.compact_revision = compact_revision


ERROR_KINDS: dict[str, type[DspexError]] = {
    cls.kind: cls
    for cls in (
        DspexError,
        InvalidArgument,
        VariableNotFoundError,
        SessionNotFoundError,
        VariableExistsError,
        VariableTypeError,
        ConstraintViolation,
        VersionConflict,
        OptimizationConflict,
        AccessDenied,
        AuthenticationError,
        Unsupported,
        ResourceLimitExceeded,
        Compacted,
    )
}
