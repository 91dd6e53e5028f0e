"""Finding a server, starting one, and finding it again after it restarted or went away.

:func:`connect` (behind :meth:`SessionContext.connect`, the CLI and ``%load_ext``) looks, in
order, at:

1. the ``address``/``token`` arguments;
2. the environment: ``DSPEX_ADDRESS`` with ``DSPEX_TOKEN`` or ``DSPEX_TOKEN_FILE``;
3. the runtime files of running local servers (``dspex-notebook list``) — only those serving the
   **requested store** (``db``; the default store when none is named). A server of another store
   is never used, however recently it started: its variables are not the ones asked for;
4. else it starts an embedded server for that store in this process (when ``start_server``).

A token that is not given is taken from the runtime file of the server at that address (a
local server publishes it there, mode 0600).

Each context keeps a :class:`Locator` (the wire layer's :class:`~._wire.client.Recovery`). When
a call fails because the server went away or refused the token, the locator re-reads the
runtime files: a server restarted with a new token, or another process's new server for the
same store, is picked up, and a context allowed to start servers starts an embedded one for the
same store. The call is then retried once and one line says what happened. If nothing helps,
the error says what to do.

``address`` may name several servers (``"a:1,b:2"``, a list, ``DSPEX_ADDRESS`` with commas):
the context uses the first that answers, and when its server goes away the locator moves to the
next one of the list and sets the session up there (:mod:`._addresses`).
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import _runtime
from ._addresses import Addresses, Rotation, joined, parse_addresses, same_address, server_at
from ._errors import AuthenticationError, DspexError, SessionNotFoundError, Unsupported
from ._wire.client import Bridge, Recovery, channel_target, insecure_channel
from ._wire.status import BridgeUnavailable

if TYPE_CHECKING:
    from ._session import SessionContext

log = logging.getLogger("dspex_notebook")

MEMORY = ":memory:"

#: How a hint names a setting, per caller: the Python API, the CLI, the notebook extension.
_HINTS = {
    "python": {"db": "db=PATH", "address": "address='HOST:PORT'", "token": "token=..."},
    "cli": {"db": "--db PATH", "address": "--address HOST:PORT", "token": "--token-file FILE"},
    "magic": {"db": "%config DspexMagics.db = 'PATH'",
              "address": "%config DspexMagics.address = 'HOST:PORT'",
              "token": "%config DspexMagics.token_file = 'FILE'"},
}

#: How errors name the address setting, per caller.
_ADDRESS_SETTING = {"python": "address", "cli": "--address", "magic": "DspexMagics.address"}


# ----------------------------------------------------------------------------------------------
# stores, addresses, runtime files


def store_key(db: str | os.PathLike[str] | None) -> str:
    """The store a client asks for: an absolute path (the default store for None) or
    ``":memory:"``."""
    if db is None:
        db = _runtime.default_db_path()
    path = os.fspath(db)
    return MEMORY if path == MEMORY else os.path.abspath(path)


def same_store(a: str | None, b: str | None) -> bool:
    """Whether two store paths name one file (symlinks resolved); in-memory stores are never
    the same store as anything (each belongs to one server)."""
    if not a or not b or MEMORY in (a, b):
        return False
    return os.path.realpath(a) == os.path.realpath(b)


def is_default_store(store: str | None) -> bool:
    return same_store(store, str(_runtime.default_db_path()))


def servers_for_store(store: str) -> list[dict[str, Any]]:
    """Running servers (runtime files) that serve ``store``, newest first."""
    return [info for info in _runtime.list_servers() if same_store(info.get("db"), store)]


def token_from_env_file() -> str | None:
    path = os.environ.get("DSPEX_TOKEN_FILE")
    if not path:
        return None
    from .server.runner import read_token_file

    return read_token_file(path, "DSPEX_TOKEN_FILE")


def describe_store(store: str | None) -> str:
    if store == MEMORY:
        return "in memory"
    if not store:
        return "store unknown"
    return ("default store " if is_default_store(store) else "store ") + store


def serve_command(store: str) -> str:
    """The command that starts a standalone server for ``store``."""
    if store == MEMORY:
        return "dspex-notebook serve --memory"
    return "dspex-notebook serve" + ("" if is_default_store(store) else f" --db {store}")


def running_servers_text() -> str:
    """``"127.0.0.1:5 (store /a.sqlite3), ..."`` or ``"none"``."""
    servers = _runtime.list_servers()
    if not servers:
        return "none"
    return ", ".join(f"{i['address']} ({describe_store(i.get('db'))})" for i in servers)


# ----------------------------------------------------------------------------------------------
# the locator


@dataclass
class Endpoint:
    """A server a context talks to, as far as this machine can tell."""

    address: str
    token: str | None
    store: str | None = None  # path, ":memory:" or None (not known: no runtime file)
    pid: int | None = None
    embedded: Any = None  # the EmbeddedServer, when this process started it

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> Endpoint:
        return cls(str(info["address"]), info.get("token"), info.get("db"), info.get("pid"))


class Locator(Recovery):
    """How a context found its server, and how it finds it again (see the module docstring).

    Parameters:
        endpoint: the server in use.
        store: the store the client asked for (None: it named an address or a channel).
        may_start: start an embedded server for ``store`` when no server serves it any more.
        owns_channel: the channel is ours to replace and close (False for a caller's channel,
            whose token alone can be refreshed).
        via: who is asking (``python``, ``cli``, ``magic``): how hints name settings.
        notify: called with one line when the context moved to another server or token.
        rotation: several addresses to move along when the server goes away (None: one).
    """

    def __init__(self, endpoint: Endpoint, *, store: str | None, may_start: bool,
                 owns_channel: bool, via: str = "python",
                 notify: Callable[[str], None] | None = None,
                 rotation: Rotation | None = None) -> None:
        self.endpoint = endpoint
        self.store = store
        self.may_start = may_start
        self.owns_channel = owns_channel
        self.via = via if via in _HINTS else "python"
        self.notify = notify or log.warning
        self.rotation = rotation
        #: ``(session_id, metadata, create)`` of the session's initialization, repeated on a
        #: server the context moves to (set by :func:`connect`)
        self.session: tuple[str, dict[str, str], bool] | None = None
        self.started: list[Any] = []  # embedded servers this locator started (owner stops them)
        self.generation = 0
        self._lock: asyncio.Lock | None = None

    @classmethod
    def for_channel(cls, channel: Any, token: str | None) -> Locator:
        """A caller's own channel (``SessionContext(id, grpc.aio.insecure_channel(addr))``):
        its token can come from the runtime file of the server at that address."""
        return cls(Endpoint(channel_target(channel) or "", token), store=None, may_start=False,
                   owns_channel=False)

    def hint(self, key: str) -> str:
        return _HINTS[self.via][key]

    # -- recovery --------------------------------------------------------------------------

    async def recover(self, bridge: Bridge, error: DspexError, generation: int,
                      may_start: bool) -> bool:
        if self._lock is None:
            self._lock = asyncio.Lock()
        since = time.monotonic()
        async with self._lock:
            if self.generation != generation:
                return True  # another call recovered while this one waited
            if (self.rotation is not None and self.owns_channel
                    and not isinstance(error, AuthenticationError)):
                return await self._move(bridge, background=not may_start, since=since)
            found = self._find(bridge)
            if found is None and may_start and self.may_start and self.store is not None:
                found = await self._start()
            if found is None:
                return False
            before = self.endpoint
            moved = self.owns_channel and not same_address(found.address, before.address)
            old = bridge.rebind(insecure_channel(found.address) if moved else None, found.token)
            if old is not None:
                await old.close()
            self.endpoint = found
            self.generation += 1
        if moved:
            how = "started an embedded server" if found.embedded is not None else "found the server"
            self.notify(f"dspex_notebook: the server at {before.address} went away; {how} at "
                        f"{found.address} ({describe_store(found.store)}) and reconnected")
        elif before.token is None:
            log.debug("token for %s taken from its runtime file", found.address)
        else:
            self.notify(f"dspex_notebook: the server at {found.address} restarted with a new "
                        "token; reconnected with the token from its runtime file")
        return True

    async def _move(self, bridge: Bridge, *, background: bool, since: float) -> bool:
        """The server went away: move to the next address of the list that answers (see
        :mod:`._addresses`), its session set up as on the first one. A background caller (the
        watch stream, which retries by itself) reports failed probes to the log only."""
        rotation = self.rotation
        assert rotation is not None
        before = self.endpoint
        report = log.info if background else self.notify
        found = await rotation.search(lambda probe: self._init_on(probe, bridge), bridge.timeout,
                                      report, since)
        if found is None:
            return False
        old = bridge.rebind(found.probe.channel, found.token)
        if old is not None:
            await old.close()
        bridge.binary = found.probe.binary
        previous_store, bridge.store_id = bridge.store_id, found.probe.store_id
        info = found.info or {}
        self.endpoint = Endpoint(found.address, found.token, info.get("db"), info.get("pid"))
        self.generation += 1
        if same_address(found.address, before.address):
            log.info("dspex_notebook: reconnected to %s", found.address)
            return True
        if previous_store and previous_store == bridge.store_id:
            store = " (the same store)"
        elif previous_store:
            store = " (another store: watches relist)"
        else:
            store = f" ({describe_store(self.endpoint.store)})" if self.endpoint.store else ""
        what = (f"the server at {before.address} went away" if bridge.initialized
                else f"{before.address} did not answer")
        self.notify(f"dspex_notebook: {what}; moved to {found.address}{store} and reconnected")
        return True

    async def _init_on(self, probe: Bridge, bridge: Bridge) -> None:
        """Set the session up on ``probe``'s server as it was on the one that went away (not
        before it was: then the call being retried is that initialization)."""
        if not bridge.initialized or self.session is None:
            return
        session_id, metadata, create = self.session
        if create:
            await probe.initialize_session(session_id, metadata)
        else:
            await probe.get_session(session_id)

    def _find(self, bridge: Bridge) -> Endpoint | None:
        """A server that can answer instead: the requested store's (new) server, or the same
        address with another token; None when the runtime files offer nothing new."""
        if self.store is not None:
            infos = [] if self.store == MEMORY else servers_for_store(self.store)
        else:
            info = server_at(self.endpoint.address) if self.endpoint.address else None
            infos = [info] if info is not None else []
        for info in infos:
            candidate = Endpoint.from_info(info)
            if not candidate.token:
                continue
            if self.store is None:  # keep the address the caller named (or its channel's)
                candidate.address = self.endpoint.address
            if (candidate.token != bridge.token
                    or not same_address(candidate.address, self.endpoint.address)):
                return candidate
        return None

    async def _start(self) -> Endpoint | None:
        from .server.backends import StoreLocked
        from .server.runner import embedded_server

        assert self.store is not None
        try:
            srv = await asyncio.to_thread(embedded_server, self.store)
        except StoreLocked:
            # another process took the store a moment ago: wait (bounded) for its runtime file
            for _ in range(40):
                infos = servers_for_store(self.store)
                if infos:
                    return Endpoint.from_info(infos[0])
                await asyncio.sleep(0.05)
            return None
        self.started.append(srv)
        return Endpoint(srv.address, srv.token, self.store, os.getpid(), srv)

    def explain(self, error: DspexError) -> DspexError:
        if isinstance(error, BridgeUnavailable) and self.rotation is not None \
                and self.rotation.outcomes:
            return self.rotation.failure(error)
        where = self.endpoint.address or "the server"
        if isinstance(error, AuthenticationError):
            if self.endpoint.token is None:
                return AuthenticationError(
                    f"the server at {where} requires a token and none was given or found: pass "
                    f"{self.hint('token')}" + (
                        ", or make the channel with dspex_notebook.channel(address), which reads "
                        "it from the server's runtime file" if self.via == "python" else "")
                    + f" (no runtime file for {where} in {_runtime.runtime_dir()})")
            return AuthenticationError(
                f"the server at {where} refused the token: a wrong token, or the server "
                "restarted with a new one. A local server writes its token to its runtime file "
                "(`dspex-notebook list` shows them), which clients read when given no token; a "
                f"`serve --token-file FILE` server's token is in FILE ({self.hint('token')})")
        if isinstance(error, BridgeUnavailable) and self.store is not None:
            return BridgeUnavailable(
                f"{error}; no running server serves {describe_store(self.store)} any more "
                f"(start one: `{serve_command(self.store)}`; running servers: "
                f"{running_servers_text()})", error.code())
        return error


# ----------------------------------------------------------------------------------------------
# connect


async def connect(cls: type[SessionContext], session_id: str, *, address: Addresses | None,
                  token: str | None, db: str | os.PathLike[str] | None, start_server: bool,
                  metadata: Mapping[str, str] | None, options: dict[str, Any],
                  create: bool = True, via: str = "python",
                  notify: Callable[[str], None] | None = None) -> SessionContext:
    """Find or start a server (see the module docstring) and return an initialized context.

    ``create=False`` never creates the session: an unknown one raises
    :class:`SessionNotFoundError` naming the sessions that exist (what read-only commands use).
    ``address`` may list several servers (:func:`~._addresses.parse_addresses`); a malformed
    one is an :class:`InvalidArgument` naming the entry.
    """
    what = _ADDRESS_SETTING.get(via, "address")
    if address is None and os.environ.get("DSPEX_ADDRESS"):
        address, what = os.environ["DSPEX_ADDRESS"], "DSPEX_ADDRESS"
        token = token or os.environ.get("DSPEX_TOKEN") or token_from_env_file()
    hints = _HINTS.get(via, _HINTS["python"])
    if address is not None:
        addresses = parse_addresses(address, what)
        first = addresses[0]
        info = server_at(first)
        endpoint = Endpoint(first, token, info.get("db") if info else None,
                            info.get("pid") if info else None)
        if token is None and info is not None:
            endpoint.token = info.get("token")
        rotation = Rotation(addresses, token) if len(addresses) > 1 else None
        locator = Locator(endpoint, store=None, may_start=False, owns_channel=True, via=via,
                          notify=notify, rotation=rotation)
        return await _open(cls, session_id, endpoint, locator, metadata, options, create)

    store = store_key(db)
    if store == MEMORY:  # an in-memory store lives in one process: only this one's is ours
        from .server.runner import embedded_servers

        infos = [{"address": s.address, "token": s.token, "db": MEMORY, "pid": os.getpid()}
                 for s in embedded_servers() if os.fspath(s.config.db or "") == MEMORY]
    else:
        infos = servers_for_store(store)
    last_error: BaseException | None = None
    for info in infos:
        endpoint = Endpoint.from_info(info)
        locator = Locator(endpoint, store=store, may_start=start_server, owns_channel=True,
                          via=via, notify=notify)
        try:
            return await _open(cls, session_id, endpoint, locator, metadata, options, create)
        except BridgeUnavailable as exc:  # a server that is shutting down: try the next one
            last_error = exc
    if not start_server:
        raise BridgeUnavailable(
            f"no dspex-notebook server found for {describe_store(store)} and start_server=False;"
            f" running servers: {running_servers_text()}. Choose one by its store "
            f"({hints['db']}) or address ({hints['address']}), or start one: "
            f"`{serve_command(store)}`"
        ) from last_error
    from .server.runner import embedded_server

    srv = embedded_server(store)
    endpoint = Endpoint(srv.address, srv.token, store, os.getpid(), srv)
    locator = Locator(endpoint, store=store, may_start=True, owns_channel=True, via=via,
                      notify=notify)
    return await _open(cls, session_id, endpoint, locator, metadata, options, create)


async def _open(cls: type[SessionContext], session_id: str, endpoint: Endpoint, locator: Locator,
                metadata: Mapping[str, str] | None, options: dict[str, Any],
                create: bool) -> SessionContext:
    ctx = cls(session_id, insecure_channel(endpoint.address), token=endpoint.token,
              close_channel=True, **options)
    ctx._bridge.recovery = locator
    locator.session = (session_id, dict(metadata or {}), create)
    try:
        return await ctx.initialize(metadata, create=create)
    except BaseException:  # e.g. a refused token: do not leak the channel
        await ctx.close()
        raise


async def require_session(bridge: Bridge, session_id: str) -> None:
    """Check that the session exists without creating it.

    Raises:
        SessionNotFoundError: it does not; the message names the sessions that do, closest
            match first, and the server and store that were asked.
    """
    try:
        await bridge.get_session(session_id)
        return
    except SessionNotFoundError:
        pass
    try:
        existing = [s["session_id"] for s in await bridge.list_sessions()]
    except Unsupported:  # an older server: it cannot say
        existing = []
    close = difflib.get_close_matches(session_id, existing, n=max(1, len(existing)), cutoff=0.5)
    ordered = close + [s for s in existing if s not in close]
    shown = ", ".join(repr(s) for s in ordered[:10]) + (
        f" and {len(ordered) - 10} more" if len(ordered) > 10 else "")
    message = (f"session {session_id!r} not found on {where_text(bridge)}; "
               + (f"its sessions: {shown}" if ordered else "it has no sessions yet"))
    loc = bridge.recovery
    if isinstance(loc, Locator):  # the session may live on another store's server
        others = [i for i in _runtime.list_servers()
                  if not same_address(str(i.get("address", "")), loc.endpoint.address)]
        if others:
            listed = ", ".join(f"{i['address']} ({describe_store(i.get('db'))})" for i in others)
            message += (f". Other running servers: {listed} (choose one with {loc.hint('db')} "
                        f"or {loc.hint('address')})")
    raise SessionNotFoundError(message)


def where_text(bridge: Bridge) -> str:
    """``"127.0.0.1:5 (store /a.sqlite3)"``: the server a bridge talks to."""
    loc = bridge.recovery
    if not isinstance(loc, Locator):
        return "the server"
    ep = loc.endpoint
    store = ep.store if ep.store else (loc.store or None)
    extra = "embedded in this process, " if ep.pid == os.getpid() else ""
    listed = f"; one of {joined(loc.rotation.addresses)}" if loc.rotation is not None else ""
    return f"{ep.address or 'the server'} ({extra}{describe_store(store)}{listed})"


def describe(ctx: SessionContext) -> str:
    """One line naming the session, the server and its store (what the CLI and %load_ext
    print, so nobody wonders which server answered)."""
    return f"session {ctx.session_id!r} on {where_text(ctx._bridge)}"


def started_servers(ctx: SessionContext) -> list[Any]:
    """Embedded servers that ``ctx``'s locator started while recovering (the owner stops them)."""
    loc = ctx._bridge.recovery
    return list(loc.started) if isinstance(loc, Locator) else []


def channel(address: str | None = None, *, db: str | os.PathLike[str] | None = None) -> Any:
    """A ``grpc.aio`` channel to a local server that sends its token with every call.

    For code written against the spec (``SessionContext(session_id, channel)``)::

        channel = dspex_notebook.channel("127.0.0.1:50051")      # inside a coroutine
        session = SessionContext("session_123", channel)

    Parameters:
        address: ``host:port`` of a running local server; None: the server of ``db`` (the
            default store when ``db`` is None too).
        db: the store whose server to use when no address is given.

    Returns:
        a channel whose calls carry ``authorization: Bearer <token>``, the token read from the
        server's runtime file (mode 0600, written by every local server).

    Raises:
        AuthenticationError: no running server's runtime file has that address or store (then
            pass ``token=`` to :class:`SessionContext` yourself).
    """
    if address is not None:
        info = server_at(address)
        what = f"at {address}"
    else:
        store = store_key(db)
        infos = servers_for_store(store)
        info = infos[0] if infos else None
        what = f"for {describe_store(store)}"
        address = str(info["address"]) if info else ""
    if info is None or not info.get("token"):
        raise AuthenticationError(
            f"no running dspex-notebook server {what} has a runtime file in "
            f"{_runtime.runtime_dir()} (running servers: {running_servers_text()}); for a server "
            "elsewhere pass its token yourself: SessionContext(session_id, "
            "grpc.aio.insecure_channel(address), token=...)")
    return insecure_channel(address, str(info["token"]))
