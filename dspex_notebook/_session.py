"""SessionContext: the async Python API of variables-api-spec.md.

A facade over small parts, each with its own module: :class:`~._wire.client.Bridge` (the RPCs),
:class:`~._cache.VariableCache` (values, TTL + eviction, revisions), :class:`~._catalog.Catalog`
(what the client knows about each variable, so writes are encoded with the right type and
validated locally before a round trip), :class:`~._watch.WatchHub` (one watch stream that keeps
the cache coherent and feeds :class:`~._watch.Watch` objects), and ``_connect`` (finding or
starting a server).

Concurrency: many tasks on one event loop may share a SessionContext (cache operations are
synchronous, so no task ever sees a half-updated cache). The channel is bound to the loop that
first uses it; using the context from another loop raises a clear RuntimeError (in Jupyter the
notebook layer runs it on its own IO thread).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ._cache import MISS, VariableCache
from ._catalog import Catalog
from ._connect import Locator, require_session
from ._constraints import canonical_type, validate
from ._dependencies import DependencyMethods
from ._errors import (
    ConstraintViolation,
    DspexError,
    InvalidArgument,
    VariableExistsError,
    VariableNotFoundError,
    VariableTypeError,
)
from ._history_api import HistoryMethods
from ._optimization_api import OptimizationMethods
from ._permissions import PermissionsMixin
from ._types import Variable
from ._values import VariableSpec, infer_type
from ._watch import Clock, Watch, WatchHub
from ._wire.client import Bridge

__all__ = ["SessionContext", "infer_type"]

_NONFINITE_TYPES = ("float", "embedding", "tensor")


class SessionContext(OptimizationMethods, HistoryMethods, DependencyMethods,
                     PermissionsMixin):
    """A session on a dspex/snakepit bridge server, with typed, cached, watchable variables.

    Parameters:
        session_id: the server-side session to use (created by :meth:`initialize`).
        channel: a ``grpc.aio`` channel to the server.
        token: bearer token sent with every call (omit if ``channel`` already adds it).
        timeout: seconds per call before :class:`BridgeUnavailable` (None: no deadline).
        cache_ttl: seconds a read value stays cached while no watch keeps it exact (0 disables).
        cache_max_size: cached values kept before evicting.
        coherent_cache: open the session's watch stream at :meth:`initialize`, so that writes
            by other clients update this cache within one event delivery (docs/watch.md).
        close_channel: close ``channel`` in :meth:`close` (contexts made by :meth:`connect` do).
        clock: time source of watches' throttle/debounce and reconnect backoff (tests).

    Use :meth:`connect` to find or start a server and get an initialized context::

        async with await SessionContext.connect("my-session") as session:
            await session.register_variable("temperature", "float", 0.7,
                                            constraints={"min": 0.0, "max": 2.0})
            await session.get_variable("temperature")
    """

    def __init__(self, session_id: str, channel: Any, *, token: str | None = None,
                 timeout: float | None = 30.0, cache_ttl: float = 1.0,
                 cache_max_size: int = 1000, coherent_cache: bool = True,
                 close_channel: bool = False, clock: Clock | None = None) -> None:
        if not isinstance(session_id, str) or not session_id:
            raise ValueError("session_id must be a non-empty string")
        self.session_id = session_id
        self._bridge = Bridge(channel, token, timeout)
        # a caller's own channel may lack the token: take it from the server's runtime file
        self._bridge.recovery = Locator.for_channel(channel, token)
        self._cache = VariableCache(cache_ttl, cache_max_size)
        self._catalog = Catalog()
        self._cache.key_of = self._catalog.key
        self._hub = WatchHub(self, clock=clock)
        self._coherent = coherent_cache
        self._owns_channel = close_channel
        self._closed = False
        # name -> [read seconds, reads, write seconds, writes] (round trips of this client)
        self._latency: dict[str, list[float]] = {}
        #: the newest store revision this client has seen in a reply (a watch without
        #: include_initial starts after it)
        self.last_revision = 0
        self._drivers: dict[str, Any] = {}  # variable -> RunDriver of a run this client drives
        self._objectives: dict[str, Callable[[Any], Any]] = {}

    # ------------------------------------------------------------------------------------------
    # lifecycle

    @classmethod
    async def connect(
        cls, session_id: str = "default", *, address: str | Sequence[str] | None = None,
        token: str | None = None, db: str | os.PathLike[str] | None = None,
        start_server: bool = True, metadata: Mapping[str, str] | None = None, **options: Any,
    ) -> SessionContext:
        """Connect to a server and return an initialized context.

        Where the server is found, in order: ``address``/``token`` arguments; the environment
        (``DSPEX_ADDRESS`` with ``DSPEX_TOKEN`` or ``DSPEX_TOKEN_FILE``); a running local server's
        runtime file (``dspex-notebook list``); else an embedded server is started in this
        process on ``127.0.0.1:<free port>`` over ``db`` (default store file) when
        ``start_server`` is true. ``options`` go to the constructor (``cache_ttl``, ...).
        ``address`` may name several servers (``"a:1,b:2"`` or a list): the first that answers
        is used, and the context moves along the list when its server goes away.

        Raises:
            BridgeUnavailable: no server could be reached or started.
            AccessDenied: the token was refused.
        """
        from ._connect import connect

        return await connect(cls, session_id, address=address, token=token, db=db,
                             start_server=start_server, metadata=metadata, options=options)

    async def initialize(self, metadata: Mapping[str, str] | None = None, *,
                         create: bool = True) -> SessionContext:
        """Check the server (and its codec), create the session if it does not exist, and open
        the watch stream that keeps the cache coherent (``coherent_cache``).

        ``create=False`` only checks that the session exists (read-only tools).

        Raises:
            SessionNotFoundError: ``create=False`` and no such session; the message names the
                sessions that exist, closest match first.
        """
        await self._bridge.ping("dspex_notebook")
        if create:
            await self._bridge.initialize_session(self.session_id, dict(metadata or {}))
        else:
            await require_session(self._bridge, self.session_id)
        if self._coherent and self._cache.ttl > 0:
            self._hub.start()
        return self

    async def close(self) -> None:
        """Close watches, and the channel if this context opened it. The session's data stays on
        the server."""
        if self._closed:
            return
        self._closed = True
        for driver in self._drivers.values():  # the server ends them as abandoned (lease)
            driver.cancel()
        await self._hub.close()
        self._bridge.closed = True  # later calls raise a clear RuntimeError
        self._cache.clear()
        if self._owns_channel:
            await self._bridge.close()

    async def cleanup(self) -> int:
        """Delete the session and all its variables on the server; return how many."""
        self._cache.clear()
        self._catalog.clear()
        return await self._bridge.cleanup_session(self.session_id)

    async def __aenter__(self) -> SessionContext:
        """``async with SessionContext(id, channel) as session``: initialized on entry."""
        if not self._bridge.initialized:
            await self.initialize()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def ping(self) -> dict[str, Any]:
        """Round trip to the server: ``message``, ``server_time``, ``store_id``, ``revision``."""
        return await self._bridge.ping("ping")

    async def get_session_info(self) -> dict[str, Any]:
        """``session_id``, ``metadata``, ``created_at``, ``variable_count``, ``last_accessed_at``."""
        return await self._bridge.get_session(self.session_id)

    @property
    def cache(self) -> VariableCache:
        """This client's :class:`VariableCache` (``get_batch``, ``subscribe_invalidation``,
        ``invalidate_pattern``, ...)."""
        return self._cache

    @property
    def watch_status(self) -> str:
        """The session's watch stream: ``idle``, ``connecting``, ``live``, ``reconnecting``,
        ``unsupported`` (an old server) or ``closed``."""
        return self._hub.status

    def on_watch_status(self, callback: Callable[[str], Any]) -> Callable[[], None]:
        """Call ``callback(status)`` whenever :attr:`watch_status` changes (on this context's
        loop); returns a function that removes the callback."""
        return self._hub.add_listener(callback)

    def known_names(self) -> list[str]:
        """Names of the variables this client has seen (no round trip; for completion)."""
        return self._catalog.names()

    def cached_value(self, name: str) -> Any:
        """The cached value of ``name`` or :data:`dspex_notebook._cache.MISS`, synchronously
        and without a round trip (for sync callers such as magics and widget callbacks)."""
        return self._cache.get(self._catalog.key(name) if "#" in name else name)

    # ------------------------------------------------------------------------------------------
    # bookkeeping

    def _remember(self, var: Variable, ident: str | None = None) -> None:
        if var.session_id and var.session_id != self.session_id:
            return  # another session's variable (by id): never cached under our names
        self._catalog.learn(var.id, var.name, var.type, var.constraints, ident)

    def _put(self, ident: str, value: Any, mod_revision: int, read_revision: int) -> None:
        """Cache ``value`` under the variable's name.

        ``ident`` resolves through the catalog; an unknown one is cached only when it is a
        name of a dspex server (whose ids always contain ``#``, which names cannot), since an
        entry under an unknown id could not be found by a later write through the name.
        """
        if read_revision > self.last_revision:
            self.last_revision = read_revision
        known = self._catalog.get(ident)
        if known is not None:
            self._cache.put(known.name, value, mod_revision, read_revision)
        elif self._bridge.binary and "#" not in ident:
            self._cache.put(ident, value, mod_revision, read_revision)
        else:
            self._cache.invalidate(ident)

    def _wrote(self, ident: str, revision: int) -> None:
        """A write of ``ident`` at ``revision`` whose value we do not cache."""
        if revision > self.last_revision:
            self.last_revision = revision
        key = self._catalog.key(ident)
        self._cache.note_revision(key, revision)
        self._cache.invalidate(key)

    def _timed(self, key: str, started: float, write: bool) -> None:
        entry = self._latency.get(key)
        if entry is None:
            entry = self._latency[key] = [0.0, 0.0, 0.0, 0.0]
        i = 2 if write else 0
        entry[i] += time.perf_counter() - started
        entry[i + 1] += 1

    async def _prepare_fresh(self, ident: str, value: Any,
                             type_hint: str | None = None) -> tuple[str, Any, bool]:
        """:meth:`_prepare`, re-reading the variable's type and constraints once when the local
        copy refuses the value (another client may have re-registered it meanwhile)."""
        try:
            return self._prepare(ident, value, type_hint)
        except (VariableTypeError, ConstraintViolation):
            if ident not in self._catalog:
                raise
            await self.get_variable_info(ident)
            return self._prepare(ident, value, type_hint)

    def _prepare(self, ident: str, value: Any, type_hint: str | None = None) -> tuple[str, Any, bool]:
        """``(type, value_to_send, canonical)``: validated locally when the type is known."""
        known = self._catalog.get(ident)
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
            # the cache is keyed by name; only ids (which always contain "#") need mapping
            value = self._cache.get(self._catalog.key(name) if "#" in name else name)
            if value is not MISS:
                return value
        known = self._catalog.get(name)  # then only the value needs decoding
        started = time.perf_counter()
        try:
            got, mod_rev, rev = await self._bridge.get_variable(self.session_id, name,
                                                                value_only=known is not None)
        except VariableNotFoundError:
            if default is not None:
                return default
            raise
        if known is None:
            self._remember(got, name)
            got = got.value
        self._timed(self._catalog.key(name), started, False)
        self._put(name, got, mod_rev, rev)
        return got

    async def get_variable_info(self, name: str) -> Variable:
        """The full :class:`Variable` (value, type, constraints, version, ...) from the server."""
        var, mod_rev, rev = await self._bridge.get_variable(self.session_id, name)
        self._remember(var, name)
        self._put(name, var.value, mod_rev, rev)
        return var

    async def get_variables(self, names: Iterable[str], defaults: Mapping[str, Any] | None = None,
                            include_metadata: bool = False,
                            include_stats: bool = False, *,
                            at_revision: int | None = None) -> dict[str, Any]:
        """Return several variables in one round trip, as one consistent snapshot.

        Served from the cache only when every value is cached and all were current at one
        common revision (so an atomic batch is never seen half applied); else all are fetched
        together.

        Parameters:
            names: variable names or ids.
            defaults: per-name values for variables that do not exist.
            include_metadata: return ``{"value": v, "metadata": {...}}`` per name instead of
                the bare value (always read from the server).
            include_stats: add ``"stats"`` (as :meth:`get_variable_stats`) per name; implies
                the ``{"value": ...}`` form.
            at_revision: read the variables as they were at this store revision (a write's
                revision, ``session.last_revision``, a history entry's ``revision``) instead of
                now: one consistent snapshot from the server's change log, never cached.
                ``include_stats`` is not available for past revisions.

        Raises:
            VariableNotFoundError: some names do not exist (at that revision) and have no
                default (all are named).
            Compacted (a LookupError): ``at_revision`` is older than the server keeps
                (``serve --retain-revisions``); the message names the oldest revision kept.
            InvalidArgument: ``at_revision`` is negative or ahead of the store.
        """
        if at_revision is not None:
            if include_stats:
                raise InvalidArgument("include_stats is not available with at_revision")
            from ._transfer import variables_at

            return await variables_at(self, names, at_revision, defaults, include_metadata)
        names = list(names)
        defaults = defaults or {}
        result: dict[str, Any] = {}
        missing: list[str] = []
        if include_metadata or include_stats:
            found, missing, rev = await self._bridge.get_variables(self.session_id, names)
            for ident, var in found.items():
                self._remember(var, ident)
                self._put(ident, var.value, var.mod_revision, rev)
                result[ident] = {"value": var.value}
                if include_metadata:
                    result[ident]["metadata"] = var.as_dict()
            if include_stats and found:
                stats = await self._stats_for(list(found))
                for ident in found:
                    result[ident]["stats"] = stats[ident]
        else:
            cache, catalog = self._cache, self._catalog
            if cache.ttl > 0:
                keys = [catalog.key(n) for n in names]
                hit = cache.get_consistent(keys)
                if hit is not None:
                    return {n: hit[k] for n, k in zip(names, keys, strict=True)}
                cache.count_misses(keys)
            found, missing, rev, mod_revs = await self._bridge.get_values(self.session_id, names)
            if cache.ttl > 0:
                for ident, value in found.items():
                    self._put(ident, value, mod_revs[ident], rev)
            if not missing:  # already keyed by ``names`` in their order
                return found
            result.update(found)
        absent = [n for n in missing if n not in defaults]
        if absent:
            raise VariableNotFoundError(f"Variables not found in session {self.session_id!r}: "
                                        f"{', '.join(repr(n) for n in absent)}")
        wrapped = include_metadata or include_stats
        for ident in missing:
            result[ident] = ({"value": defaults[ident], "metadata": None,
                              **({"stats": None} if include_stats else {})} if wrapped
                             else defaults[ident])
        return {ident: result[ident] for ident in names}

    async def list_variables(self, pattern: str | None = None) -> list[Variable]:
        """All variables of the session in registration order; ``pattern`` is a glob (``temp*``)."""
        variables = await self._bridge.list_variables(self.session_id, pattern or "")
        for var in variables:
            self._remember(var)
        return variables

    # ------------------------------------------------------------------------------------------
    # writes

    async def register_variable(
        self, name: str, type: str, initial_value: Any,
        constraints: Mapping[str, Any] | None = None, metadata: Mapping[str, str] | None = None,
        dependencies: Iterable[str] | None = None,
        *, replace: bool = False,
    ) -> str:
        """Create a variable and return its id.

        Parameters:
            name: unique within the session (letters, digits, ``_ . : / -``).
            type: ``float integer string boolean choice module embedding tensor list dict``.
            initial_value: checked against the type and ``constraints``.
            constraints: per-type rules, e.g. ``{"min": 0.0, "max": 2.0}`` (see docs/types.md).
            metadata: free-form string pairs stored with the variable.
            dependencies: ids or names of variables this one depends on (edges of type
                ``data``, in the same commit as the registration; with ``replace``, they
                replace the variable's own). See :meth:`add_dependency`.
            replace: replace an existing variable of that name instead of failing.

        Raises:
            VariableTypeError (TypeError and ValueError): the value is not of that type.
            ConstraintViolation (ValueError): the value breaks a constraint.
            InvalidArgument (ValueError): unknown type or constraint, bad name.
            VariableExistsError (ValueError): the name is taken and ``replace`` is false.
        """
        if isinstance(dependencies, str):
            raise InvalidArgument("dependencies must be a list of variable ids or names, "
                                  f"got the string {dependencies!r}")
        spec = VariableSpec.checked(name, type, initial_value, constraints, metadata, replace)
        var = await self._bridge.register_variable(self.session_id, spec,
                                                   list(dependencies or ()))
        if isinstance(var, str):  # an old server returns only the id
            self._catalog.forget(name)
            self._cache.invalidate(name)
            return var
        self._registered([var])
        return var.id

    def _registered(self, created: list[Variable]) -> None:
        for var in created:
            self._catalog.forget(var.name)  # a replaced variable's old id and type go
            self._remember(var)
            self.last_revision = max(self.last_revision, var.mod_revision)
            self._cache.put(var.name, var.value, var.mod_revision, var.mod_revision)

    async def register_variables(self, variables: list[Mapping[str, Any]]) -> dict[str, str]:
        """Register several variables atomically (all or none); return ``{name: id}``.

        Each item has ``name``, ``type``, ``initial_value`` and optionally ``constraints``,
        ``metadata``, ``replace``.
        """
        specs = [VariableSpec.from_mapping(item) for item in variables]
        created, _rev = await self._bridge.register_variables(self.session_id, specs)
        self._registered(created)
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
        specs = [VariableSpec.from_mapping(item) for item in registrations]
        to_send = {ident: (await self._prepare_fresh(ident, value))[:2]
                   for ident, value in (updates or {}).items()}
        created, rev = await self._bridge.register_variables(self.session_id, specs, to_send,
                                                             dict(metadata or {}))
        for ident in to_send:
            self._wrote(ident, rev)
        self._registered(created)
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
        try:
            type_name, send, canonical = await self._prepare_fresh(name, value, type_hint)
        except VariableTypeError as exc:
            if type_hint is not None or name in self._catalog:
                raise
            raise VariableTypeError(f"{exc}; pass type_hint= to choose the type") from None
        started = time.perf_counter()
        try:
            version, rev = await self._bridge.set_variable(
                self.session_id, name, type_name, send, dict(metadata or {}), expected_version
            )
        except VariableNotFoundError:
            self._catalog.forget(name)
            self._cache.invalidate(name)
            if not create_if_missing:
                raise
            try:
                await self.register_variable(name, type_hint or infer_type(value), value,
                                             metadata=metadata)
                return 0
            except VariableExistsError:  # someone registered it meanwhile: set theirs
                return await self.set_variable(name, value, metadata,
                                               expected_version=expected_version)
        self._timed(self._catalog.key(name), started, True)
        if canonical:
            self._put(name, send, rev, rev)
        else:
            self._wrote(name, rev)
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
        rev = 0
        if to_send:
            errors, _versions, rev = await self._bridge.set_variables(
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
                self._put(ident, send, rev, rev)
            else:
                self._wrote(ident, rev)
        return {ident: results[ident] for ident in updates}

    @staticmethod
    def _atomic_failure(updates: Mapping[str, Any], errors: dict[str, Any]) -> dict[str, bool | str]:
        failed = ", ".join(repr(k) for k in errors)
        return {
            ident: errors.get(ident, f"not applied: the atomic batch was rejected ({failed} failed)")
            for ident in updates
        }

    async def delete_variable(self, name: str, force: bool = False) -> None:
        """Delete a variable (its history is kept on the server).

        Refused while other variables depend on it, unless ``force``, which removes those
        dependencies in the same commit (its own dependencies always go with it).

        Raises:
            VariableNotFoundError: no such variable.
            InvalidArgument (a ValueError): others depend on it (named) and not ``force``.
        """
        key = self._catalog.key(name)
        try:
            rev = await self._bridge.delete_variable(self.session_id, name, force)
            self.last_revision = max(self.last_revision, rev)
            self._cache.note_revision(key, rev)
        finally:
            self._cache.invalidate(key)
            self._catalog.forget(name)

    # ------------------------------------------------------------------------------------------
    # watches

    def watch_variable(self, name: str, include_initial: bool = True,
                       filter_fn: Callable[[Any, Any], bool] | None = None, throttle_ms: int = 0,
                       *, debounce_ms: int = 0, include_upstream: bool = False) -> Watch:
        """Watch one variable: a :class:`Watch` yielding :class:`VariableUpdate` objects.

        Parameters:
            name: variable name or id (it need not exist yet).
            include_initial: first yield the current value (kind ``"initial"``).
            filter_fn: ``filter_fn(old_value, new_value) -> bool``; writes it refuses are
                skipped (initial, register, resync and delete updates always pass).
            throttle_ms: at most one update per this many ms (coalesced to the latest value,
                the final value always arrives).
            debounce_ms: deliver only after this many ms without a change.
            include_upstream: also the changes of the variables it depends on (transitively),
                marked with ``update.upstream_of`` (``update.name`` is the one that changed).

        Use ``async for update in session.watch_variable("x")`` (``async with`` or
        :meth:`Watch.aclose` to stop) or ``asyncio.create_task(session.watch_variable("x"))``
        with :meth:`Watch.on_update`; :meth:`cancel_watch` stops either.
        """
        return Watch(self._hub_for([name], include_initial), [name],
                     include_initial=include_initial, filter_fn=filter_fn,
                     throttle_ms=throttle_ms, debounce_ms=debounce_ms,
                     include_upstream=include_upstream)

    def watch_variables(self, names: Iterable[str], include_initial: bool = True,
                        filter_fn: Callable[[str, Any, Any], bool] | None = None,
                        throttle_ms: int = 0, debounce_ms: int = 0, *,
                        include_upstream: bool = False) -> Watch:
        """Watch several variables; as :meth:`watch_variable` but ``filter_fn(name, old,
        new)``, and throttle/debounce apply per variable."""
        names = list(names)
        return Watch(self._hub_for(names, include_initial), names,
                     include_initial=include_initial, filter_fn=filter_fn,
                     filter_with_name=True, throttle_ms=throttle_ms, debounce_ms=debounce_ms,
                     include_upstream=include_upstream)

    def _hub_for(self, names: list[str], include_initial: bool) -> Any:
        """The session's watch hub, or for ids not known as this session's (another
        session's variables, reached by id where their rules give ``observe``) a stream of
        their own (``_direct_watch.py``), which ends with AccessDenied when access ends."""
        if any("#" in n and n not in self._catalog for n in names):
            from ._direct_watch import DirectFeed

            return DirectFeed(self, self._hub._clock, self._hub._backoff, include_initial)
        return self._hub

    def cancel_watch(self, watch_task: Watch | asyncio.Task[Any]) -> None:
        """Stop a watch: a :class:`Watch`, or a task that runs one (``create_task(watch)``) or
        iterates watches it created (those are closed, and the task is cancelled)."""
        if isinstance(watch_task, Watch):
            watch_task.close()
            return
        if isinstance(watch_task, asyncio.Task):
            for watch in self._hub.watches_of(watch_task):
                watch._shutdown()
            watch_task.cancel()
            return
        raise TypeError(f"cancel_watch takes a Watch or an asyncio.Task, got {type(watch_task).__name__}")

    # ------------------------------------------------------------------------------------------
    # statistics and cache

    async def _stats_for(self, idents: list[str]) -> dict[str, dict[str, Any]]:
        server, missing, _watchers = await self._bridge.get_variable_stats(self.session_id, idents)
        if missing:
            raise VariableNotFoundError(f"Variables not found in session {self.session_id!r}: "
                                        f"{', '.join(repr(n) for n in missing)}")
        return {ident: self._stats_entry(entry) for ident, entry in server.items()}

    def _stats_entry(self, server: dict[str, Any]) -> dict[str, Any]:
        name = server["name"]
        hits, misses = self._cache.key_hits(name), self._cache.key_misses(name)
        lat = self._latency.get(name, [0.0, 0.0, 0.0, 0.0])
        return {
            "read_count": server["read_count"], "write_count": server["write_count"],
            "cache_hits": hits, "cache_misses": misses,
            "cache_hit_rate": hits / (hits + misses) if hits + misses else 0.0,
            "avg_read_latency_ms": 1000 * lat[0] / lat[1] if lat[1] else 0.0,
            "avg_write_latency_ms": 1000 * lat[2] / lat[3] if lat[3] else 0.0,
            "total_optimization_time_s": 0.0,
            "watchers": server["watchers"], "version": server["version"],
            "history_length": server["history_length"],
        }

    async def get_variable_stats(self, variable: str | None = None) -> dict[str, Any]:
        """Access statistics of one variable, or totals over the session's variables.

        ``read_count``, ``write_count``, ``watchers``, ``version`` and ``history_length`` come
        from the server (every client, since the server started); ``cache_hits``,
        ``cache_misses``, ``cache_hit_rate`` and the ``avg_*_latency_ms`` round trips are this
        client's. ``total_optimization_time_s`` counts server-held optimization runs (none yet:
        0.0). Without ``variable`` the totals also carry ``variables`` (per name) and
        ``watchers`` (open watch streams on the session).

        Raises:
            VariableNotFoundError: no such variable.
        """
        if variable is not None:
            return (await self._stats_for([variable]))[variable]
        server, _missing, watchers = await self._bridge.get_variable_stats(self.session_id, [])
        per = {name: self._stats_entry(entry) for name, entry in server.items()}
        hits, misses = self._cache.hits, self._cache.misses
        lat = [sum(v[i] for v in self._latency.values()) for i in range(4)]
        return {
            "read_count": sum(s["read_count"] for s in per.values()),
            "write_count": sum(s["write_count"] for s in per.values()),
            "cache_hits": hits, "cache_misses": misses,
            "cache_hit_rate": hits / (hits + misses) if hits + misses else 0.0,
            "avg_read_latency_ms": 1000 * lat[0] / lat[1] if lat[1] else 0.0,
            "avg_write_latency_ms": 1000 * lat[2] / lat[3] if lat[3] else 0.0,
            "total_optimization_time_s": 0.0,
            "watchers": watchers,
            "history_length": sum(s["history_length"] for s in per.values()),
            "variables": per,
        }

    def get_cache_info(self) -> dict[str, Any]:
        """``size``, ``ttl``, ``max_size``, ``eviction_policy``, ``hits``, ``misses``,
        ``hit_rate``, ``eviction_count`` and ``coherent`` of this client's cache."""
        return self._cache.info()

    def set_cache_config(self, ttl: float | None = None, max_size: int | None = None,
                         eviction_policy: str | None = None) -> None:
        """Change the cache: ``ttl`` seconds (0 disables), ``max_size``, ``'lru'|'lfu'|'fifo'``."""
        self._cache.configure(ttl, max_size, eviction_policy)

    def __getattr__(self, name: str) -> Any:
        # only for names that are not defined: spec methods not built yet raise Unsupported
        # ("not available yet") instead of AttributeError; anything else is a real typo
        from ._planned import method

        return method(type(self).__name__, name)

    def __repr__(self) -> str:
        return (f"<SessionContext session_id={self.session_id!r} cached={len(self._cache)} "
                f"watch={self._hub.status}>")


def _unaliased(value: Any) -> Any:
    """A value that may be cached after a write: never the caller's own mutable array (they
    may keep changing it), but a read-only copy, like the arrays decoded from the server."""
    flags = getattr(value, "flags", None)
    if flags is not None and flags.writeable:
        value = value.copy()
        value.flags.writeable = False
    return value
