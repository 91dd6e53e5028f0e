"""SessionContext: the async Python API of variables-api-spec.md.

A facade over three parts: :class:`~dspex_notebook._wire.client.Bridge` (the RPCs),
:class:`~dspex_notebook._cache.ValueCache` (values, TTL + eviction) and a small table of what it
knows about each variable (id, name, type, constraints) so that writes are encoded with the right
type and validated locally before a round trip.

Concurrency: many tasks on one event loop may share a SessionContext (cache operations are
synchronous, so no task ever sees a half-updated cache). The channel is bound to the loop that
first uses it; using the context from another loop raises a clear RuntimeError (in Jupyter the
notebook layer runs it on its own IO thread).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from ._cache import MISS, ValueCache
from ._constraints import canonical_type, check_constraints, validate
from ._errors import (
    ConstraintViolation,
    DspexError,
    InvalidArgument,
    VariableExistsError,
    VariableNotFoundError,
    VariableTypeError,
)
from ._types import Variable
from ._wire.client import Bridge, insecure_channel
from ._wire.status import BridgeUnavailable

__all__ = ["SessionContext", "infer_type"]


class _Known:
    """What the client knows about one variable: enough to encode and validate a write."""

    __slots__ = ("id", "name", "type", "constraints")

    def __init__(self, id: str, name: str, type: str, constraints: dict[str, Any]) -> None:
        self.id, self.name, self.type, self.constraints = id, name, type, constraints


def infer_type(value: Any) -> str:
    """Guess a variable type from a Python value (used by ``create_if_missing`` and sets of
    variables this client has not seen yet).

    Raises:
        VariableTypeError: no variable type fits the value.
    """
    import numbers

    if isinstance(value, bool) or type(value).__name__ in ("bool_", "bool"):  # numpy 1 / 2
        return "boolean"
    if isinstance(value, numbers.Integral):
        return "integer"
    if isinstance(value, numbers.Real):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "dict"
    if isinstance(value, (list, tuple)):
        return "list"
    ndim = getattr(value, "ndim", None)
    if ndim is not None and hasattr(value, "dtype"):
        return "embedding" if ndim == 1 and value.dtype.kind == "f" else "tensor"
    raise VariableTypeError(
        f"cannot infer a variable type for a {type(value).__name__}; pass type_hint="
    )


class SessionContext:
    """A session on a dspex/snakepit bridge server, with typed, cached variables.

    Parameters:
        session_id: the server-side session to use (created by :meth:`initialize`).
        channel: a ``grpc.aio`` channel to the server.
        token: bearer token sent with every call (omit if ``channel`` already adds it).
        timeout: seconds per call before :class:`BridgeUnavailable` (None: no deadline).
        cache_ttl: seconds a read value stays cached (0 disables the cache).
        cache_max_size: cached values kept before evicting.

    Use :meth:`connect` to find or start a server and get an initialized context::

        async with await SessionContext.connect("my-session") as session:
            await session.register_variable("temperature", "float", 0.7,
                                            constraints={"min": 0.0, "max": 2.0})
            await session.get_variable("temperature")
    """

    def __init__(self, session_id: str, channel: Any, *, token: str | None = None,
                 timeout: float | None = 30.0, cache_ttl: float = 1.0,
                 cache_max_size: int = 1000) -> None:
        if not isinstance(session_id, str) or not session_id:
            raise ValueError("session_id must be a non-empty string")
        self.session_id = session_id
        self._bridge = Bridge(channel, token, timeout)
        self._cache = ValueCache(cache_ttl, cache_max_size)
        self._known: dict[str, _Known] = {}  # by name and by id
        self._owns_channel = False
        self._closed = False
        self._writes = 0  # write generation, see _cache_value

    # ------------------------------------------------------------------------------------------
    # lifecycle

    @classmethod
    async def connect(
        cls, session_id: str = "default", *, address: str | None = None,
        token: str | None = None, db: str | os.PathLike[str] | None = None,
        start_server: bool = True, metadata: Mapping[str, str] | None = None, **options: Any,
    ) -> SessionContext:
        """Connect to a server and return an initialized context.

        Where the server is found, in order: ``address``/``token`` arguments; the environment
        (``DSPEX_ADDRESS`` with ``DSPEX_TOKEN`` or ``DSPEX_TOKEN_FILE``); a running local server's
        runtime file (``dspex-notebook list``); else an embedded server is started in this
        process on ``127.0.0.1:<free port>`` over ``db`` (default store file) when
        ``start_server`` is true.

        Raises:
            BridgeUnavailable: no server could be reached or started.
            AccessDenied: the token was refused.
        """
        from . import _runtime

        candidates: list[tuple[str, str | None]] = []
        if address is None and os.environ.get("DSPEX_ADDRESS"):
            address = os.environ["DSPEX_ADDRESS"]
            token = token or os.environ.get("DSPEX_TOKEN") or _token_from_env_file()
        if address is not None:
            candidates.append((address, token))
        else:
            for info in _runtime.list_servers():
                if db is None or os.path.abspath(os.fspath(db)) == info.get("db"):
                    candidates.append((info["address"], info.get("token")))
        last_error: BaseException | None = None
        for addr, tok in candidates:
            ctx = cls(session_id, insecure_channel(addr), token=tok, **options)
            ctx._owns_channel = True
            try:
                return await ctx.initialize(metadata)
            except BridgeUnavailable as exc:
                last_error = exc
                await ctx.close()
                if address is not None:
                    raise
            except BaseException:  # e.g. a refused token: do not leak the channel
                await ctx.close()
                raise
        if not start_server:
            raise BridgeUnavailable(
                "no dspex-notebook server found (no address given, none in DSPEX_ADDRESS, no "
                f"runtime file in {_runtime.runtime_dir()}) and start_server=False"
            ) from last_error
        from .server.runner import embedded_server

        srv = embedded_server(db)
        ctx = cls(session_id, insecure_channel(srv.address), token=srv.token, **options)
        ctx._owns_channel = True
        return await ctx.initialize(metadata)

    async def initialize(self, metadata: Mapping[str, str] | None = None) -> SessionContext:
        """Check the server (and its codec) and create the session if it does not exist."""
        await self._bridge.ping("dspex_notebook")
        await self._bridge.initialize_session(self.session_id, dict(metadata or {}))
        return self

    async def close(self) -> None:
        """Close the channel if this context opened it. The session's data stays on the server."""
        if self._closed:
            return
        self._closed = True
        self._bridge.closed = True  # later calls raise a clear RuntimeError
        self._cache.clear()
        if self._owns_channel:
            await self._bridge.close()

    async def cleanup(self) -> int:
        """Delete the session and all its variables on the server; return how many."""
        self._cache.clear()
        self._known.clear()
        return await self._bridge.cleanup_session(self.session_id)

    async def __aenter__(self) -> SessionContext:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def ping(self) -> dict[str, Any]:
        """Round trip to the server: ``message``, ``server_time``, ``store_id``, ``revision``."""
        return await self._bridge.ping("ping")

    async def get_session_info(self) -> dict[str, Any]:
        """``session_id``, ``metadata``, ``created_at``, ``variable_count``, ``last_accessed_at``."""
        return await self._bridge.get_session(self.session_id)

    # ------------------------------------------------------------------------------------------
    # bookkeeping

    def _learn(self, var: Variable, ident: str | None = None) -> None:
        known = _Known(var.id, var.name, var.type, var.constraints)
        self._known[var.name] = self._known[var.id] = known
        if ident is not None:
            self._known[ident] = known

    def _forget(self, ident: str) -> None:
        """:meth:`_invalidate`, and forget the variable's id, name and type too."""
        self._invalidate(ident)
        known = self._known.pop(ident, None)
        if known is not None:
            self._known.pop(known.id, None)
            self._known.pop(known.name, None)

    def _cache_value(self, ident: str, value: Any, since: int | None = None) -> None:
        """Cache ``value`` under ``ident`` (a name or an id).

        Only variables whose id and name are known are cached, so a later write through either
        identifier can invalidate both. ``since`` is the write generation a read started at: if
        a write began meanwhile, the read's (possibly older) value is not cached.
        """
        known = self._known.get(ident)
        if known is None or (since is not None and since != self._writes):
            self._cache.invalidate(ident)
            return
        self._cache.invalidate(known.name if ident == known.id else known.id)
        self._cache.put(ident, value)

    def _invalidate(self, ident: str) -> None:
        """Drop cached values under ``ident`` and its other identifier (name <-> id)."""
        known = self._known.get(ident)
        self._cache.invalidate(ident, *((known.id, known.name) if known is not None else ()))

    def _start_write(self) -> None:
        self._writes += 1  # reads in flight from before this write will not cache their result

    async def _prepare_fresh(self, ident: str, value: Any,
                             type_hint: str | None = None) -> tuple[str, Any, bool]:
        """:meth:`_prepare`, re-reading the variable's type and constraints once when the local
        copy refuses the value (another client may have re-registered it meanwhile)."""
        try:
            return self._prepare(ident, value, type_hint)
        except (VariableTypeError, ConstraintViolation):
            if ident not in self._known:
                raise
            await self.get_variable_info(ident)
            return self._prepare(ident, value, type_hint)

    def _prepare(self, ident: str, value: Any, type_hint: str | None = None) -> tuple[str, Any, bool]:
        """``(type, value_to_send, canonical)``: validated locally when the type is known."""
        known = self._known.get(ident)
        if known is None:
            type_name = canonical_type(type_hint) if type_hint else infer_type(value)
            # canonical form of the guessed type (numpy scalars, tuples, ...), so that it can be
            # encoded; the constraints are unknown here and left to the server.
            lenient = {"allow_nonfinite": True} if type_name in _NONFINITE_TYPES else {}
            return type_name, validate(type_name, value, lenient, ident), False
        send = validate(known.type, value, known.constraints, known.name)
        return known.type, _unaliased(send), True

    # ------------------------------------------------------------------------------------------
    # reads

    async def get_variable(self, name: str, default: Any = None, bypass_cache: bool = False) -> Any:
        """Return a variable's value, from the cache when fresh.

        Parameters:
            name: variable name or id.
            default: returned when the variable does not exist; ``None`` means raise.
            bypass_cache: always ask the server.

        Raises:
            VariableNotFoundError (a KeyError): no such variable and no default.
            BridgeUnavailable (a grpc.RpcError): the server could not be reached.
        """
        if not bypass_cache:
            value = self._cache.get(name)
            if value is not MISS:
                return value
        known = name in self._known  # then only the value needs decoding
        since = self._writes
        try:
            var = await self._bridge.get_variable(self.session_id, name, value_only=known)
        except VariableNotFoundError:
            if default is not None:
                return default
            raise
        if known:
            self._cache_value(name, var, since)
            return var
        self._learn(var, name)
        self._cache_value(name, var.value, since)
        return var.value

    async def get_variable_info(self, name: str) -> Variable:
        """The full :class:`Variable` (value, type, constraints, version, ...) from the server."""
        since = self._writes
        var = await self._bridge.get_variable(self.session_id, name)
        self._learn(var, name)
        self._cache_value(name, var.value, since)
        return var

    async def get_variables(self, names: Iterable[str], defaults: Mapping[str, Any] | None = None,
                            include_metadata: bool = False) -> dict[str, Any]:
        """Return several variables in one round trip (cached ones need none).

        Parameters:
            names: variable names or ids.
            defaults: per-name values for variables that do not exist.
            include_metadata: return ``{"value": v, "metadata": {...}}`` per name instead of
                the bare value (always read from the server).

        Raises:
            VariableNotFoundError: some names do not exist and have no default (all are named).
        """
        names = list(names)
        defaults = defaults or {}
        result: dict[str, Any] = {}
        missing: list[str] = []
        since = self._writes
        if include_metadata:
            found, missing = await self._bridge.get_variables(self.session_id, names)
            for ident, var in found.items():
                self._learn(var, ident)
                self._cache_value(ident, var.value, since)
                result[ident] = {"value": var.value, "metadata": var.as_dict()}
        else:
            cache = self._cache
            if cache.ttl > 0:
                to_fetch = []
                for ident in names:
                    value = cache.get(ident)
                    if value is MISS:
                        to_fetch.append(ident)
                    else:
                        result[ident] = value
            else:
                to_fetch = names
            if to_fetch:
                found, missing = await self._bridge.get_values(self.session_id, to_fetch)
                result.update(found)
                if cache.ttl > 0:
                    for ident, value in found.items():
                        self._cache_value(ident, value, since)
        absent = [n for n in missing if n not in defaults]
        if absent:
            raise VariableNotFoundError(f"Variables not found: {', '.join(absent)}")
        for ident in missing:
            result[ident] = (
                {"value": defaults[ident], "metadata": None} if include_metadata else defaults[ident]
            )
        return {ident: result[ident] for ident in names}

    async def list_variables(self, pattern: str | None = None) -> list[Variable]:
        """All variables of the session in registration order; ``pattern`` is a glob (``temp*``)."""
        variables = await self._bridge.list_variables(self.session_id, pattern or "")
        for var in variables:
            self._learn(var)
        return variables

    # ------------------------------------------------------------------------------------------
    # writes

    async def register_variable(
        self, name: str, type: str, initial_value: Any,
        constraints: Mapping[str, Any] | None = None, metadata: Mapping[str, str] | None = None,
        *, replace: bool = False,
    ) -> str:
        """Create a variable and return its id.

        Parameters:
            name: unique within the session (letters, digits, ``_ . : / -``).
            type: ``float integer string boolean choice module embedding tensor list dict``.
            initial_value: checked against the type and ``constraints``.
            constraints: per-type rules, e.g. ``{"min": 0.0, "max": 2.0}`` (see docs/types.md).
            metadata: free-form string pairs stored with the variable.
            replace: replace an existing variable of that name instead of failing.

        Raises:
            VariableTypeError (TypeError and ValueError): the value is not of that type.
            ConstraintViolation (ValueError): the value breaks a constraint.
            InvalidArgument (ValueError): unknown type or constraint, bad name.
            VariableExistsError (ValueError): the name is taken and ``replace`` is false.
        """
        spec = self._check_spec(name, type, initial_value, constraints)
        self._start_write()
        var = await self._bridge.register_variable(
            self.session_id, name, spec[0], spec[2], spec[1], dict(metadata or {}), replace
        )
        self._forget(name)  # a replaced variable's old id, type and cached values go
        if isinstance(var, str):  # an old server returns only the id
            return var
        self._learn(var)
        self._cache_value(name, var.value)
        return var.id

    @staticmethod
    def _check_spec(name: str, type_name: Any, value: Any, constraints: Any) -> tuple[str, dict, Any]:
        type_name = canonical_type(type_name)
        cons = check_constraints(type_name, constraints, name)
        return type_name, cons, validate(type_name, value, cons, name)

    def _spec(self, item: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(item) - {"name", "type", "initial_value", "constraints", "metadata", "replace"}
        if unknown:
            raise InvalidArgument(f"unknown keys {sorted(unknown)} in variable spec {item.get('name')!r}")
        missing = {"name", "type", "initial_value"} - set(item)
        if missing:
            raise InvalidArgument(f"variable spec {item.get('name')!r} lacks {sorted(missing)}")
        type_name, cons, value = self._check_spec(
            item["name"], item["type"], item["initial_value"], item.get("constraints")
        )
        return {"name": item["name"], "type": type_name, "value": value, "constraints": cons,
                "metadata": dict(item.get("metadata") or {}), "replace": item.get("replace", False)}

    async def register_variables(self, variables: list[Mapping[str, Any]]) -> dict[str, str]:
        """Register several variables atomically (all or none); return ``{name: id}``.

        Each item has ``name``, ``type``, ``initial_value`` and optionally ``constraints``,
        ``metadata``, ``replace``.
        """
        specs = [self._spec(item) for item in variables]
        self._start_write()
        created = await self._bridge.register_variables(self.session_id, specs)
        for var in created:
            self._forget(var.name)
            self._learn(var)
            self._cache_value(var.name, var.value)
        return {var.name: var.id for var in created}

    async def apply_batch(self, registrations: list[Mapping[str, Any]],
                          updates: Mapping[str, Any] | None = None,
                          metadata: Mapping[str, str] | None = None) -> dict[str, str]:
        """Register ``registrations`` (as :meth:`register_variables`) and apply ``updates``
        (name -> value) in one server transaction: everything or nothing, one revision.

        Returns ``{name: "registered" | "updated"}``.

        Raises:
            DspexError: the first problem found (locally or on the server); nothing was applied.
        """
        specs = [self._spec(item) for item in registrations]
        to_send = {ident: (await self._prepare_fresh(ident, value))[:2]
                   for ident, value in (updates or {}).items()}
        self._start_write()
        created = await self._bridge.register_variables(self.session_id, specs, to_send,
                                                        dict(metadata or {}))
        for ident in to_send:
            self._invalidate(ident)
        for var in created:
            self._forget(var.name)
            self._learn(var)
            self._cache_value(var.name, var.value)
        return {**{v.name: "registered" for v in created}, **{k: "updated" for k in to_send}}

    async def set_variable(
        self, name: str, value: Any, metadata: Mapping[str, str] | None = None,
        create_if_missing: bool = False, type_hint: str | None = None,
        *, expected_version: int | None = None,
    ) -> int:
        """Write a new value; return the variable's new version.

        Parameters:
            name: variable name or id.
            value: checked on the server (and locally first when the type is known).
            metadata: string pairs recorded with this update (e.g. ``{"reason": "ui"}``).
            create_if_missing: register the variable when it does not exist.
            type_hint: the type to register with; inferred from ``value`` when omitted.
            expected_version: only write if the variable is at this version (optimistic lock).

        Raises:
            VariableNotFoundError (KeyError): no such variable and not ``create_if_missing``.
            VariableTypeError / ConstraintViolation (ValueError): the value is refused.
            VersionConflict (ValueError): ``expected_version`` did not match.
            AccessDenied (PermissionError): the caller may not write it.
        """
        type_name, send, canonical = await self._prepare_fresh(name, value, type_hint)
        self._start_write()
        try:
            version = await self._bridge.set_variable(
                self.session_id, name, type_name, send, dict(metadata or {}), expected_version
            )
        except VariableNotFoundError:
            self._forget(name)
            if not create_if_missing:
                raise
            try:
                await self.register_variable(name, type_hint or infer_type(value), value,
                                             metadata=metadata)
                return 0
            except VariableExistsError:  # someone registered it meanwhile: set theirs
                return await self.set_variable(name, value, metadata,
                                               expected_version=expected_version)
        if canonical:
            self._cache_value(name, send)
        else:
            self._invalidate(name)
        return version

    async def update_variables(self, updates: Mapping[str, Any],
                               metadata: Mapping[str, str] | None = None,
                               atomic: bool = True) -> dict[str, bool | str]:
        """Write several variables in one round trip.

        Returns ``{name: True | error message}``. With ``atomic=True`` (default) either every
        update is applied, as one revision, or none is: then the failing names carry their error
        and the others say they were not applied.
        """
        results: dict[str, bool | str] = {}
        to_send: dict[str, tuple[str, Any]] = {}
        canonical: dict[str, bool] = {}
        for ident, value in updates.items():
            try:
                type_name, send, canonical[ident] = await self._prepare_fresh(ident, value)
                to_send[ident] = (type_name, send)
            except DspexError as exc:
                results[ident] = str(exc)
        if results and atomic:
            return self._atomic_failure(updates, results)
        if to_send:
            self._start_write()
            _ok, errors, _versions = await self._bridge.set_variables(
                self.session_id, to_send, dict(metadata or {}), atomic
            )
            results.update(errors)
            if errors and atomic:
                return self._atomic_failure(updates, results)
        for ident, (_type, send) in to_send.items():
            if ident in results:
                continue
            results[ident] = True
            if canonical[ident]:
                self._cache_value(ident, send)
            else:
                self._invalidate(ident)
        return {ident: results[ident] for ident in updates}

    @staticmethod
    def _atomic_failure(updates: Mapping[str, Any], errors: dict[str, Any]) -> dict[str, bool | str]:
        failed = ", ".join(repr(k) for k in errors)
        return {
            ident: errors.get(ident, f"not applied: the atomic batch was rejected ({failed} failed)")
            for ident in updates
        }

    async def delete_variable(self, name: str) -> None:
        """Delete a variable (its history is kept on the server).

        Raises:
            VariableNotFoundError: no such variable.
        """
        self._start_write()
        try:
            await self._bridge.delete_variable(self.session_id, name)
        finally:
            self._forget(name)

    # ------------------------------------------------------------------------------------------
    # cache

    def get_cache_info(self) -> dict[str, Any]:
        """``size``, ``ttl``, ``max_size``, ``eviction_policy``, ``hits``, ``misses``,
        ``hit_rate``, ``eviction_count`` of this client's cache."""
        return self._cache.info()

    def set_cache_config(self, ttl: float | None = None, max_size: int | None = None,
                         eviction_policy: str | None = None) -> None:
        """Change the cache: ``ttl`` seconds (0 disables), ``max_size``, ``'lru'|'lfu'|'fifo'``."""
        self._cache.configure(ttl, max_size, eviction_policy)

    def __repr__(self) -> str:
        return f"<SessionContext session_id={self.session_id!r} cached={len(self._cache)}>"


_NONFINITE_TYPES = ("float", "embedding", "tensor")


def _unaliased(value: Any) -> Any:
    """A value that may be cached after a write: never the caller's own mutable array (they
    may keep changing it), but a read-only copy, like the arrays decoded from the server."""
    flags = getattr(value, "flags", None)
    if flags is not None and flags.writeable:
        value = value.copy()
        value.flags.writeable = False
    return value


def _token_from_env_file() -> str | None:
    path = os.environ.get("DSPEX_TOKEN_FILE")
    if not path:
        return None
    with open(path) as fh:
        return fh.read().strip() or None

