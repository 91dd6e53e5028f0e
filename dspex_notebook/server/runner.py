"""Run the server: embedded in a background thread, or in the foreground (``dspex-notebook serve``).

Both share :func:`_serve`: open the backend, start grpc.aio on the given address, write the
runtime file, wait for the stop signal, then stop gracefully and close the store.

Security defaults: bind to 127.0.0.1; every call must carry ``authorization: Bearer <token>``
(a random token is generated unless one is given); binding a non-loopback address without an
explicit token is refused.
"""

from __future__ import annotations

import asyncio
import atexit
import ipaddress
import logging
import os
import pathlib
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .. import __version__, _runtime
from .backends import Backend, MemoryBackend, SQLiteBackend
from .limits import Limits
from .store import Store

log = logging.getLogger("dspex_notebook.server")

MEMORY = ":memory:"


def open_backend(db: str | os.PathLike[str] | None, etcd: list[str] | None = None,
                 etcd_prefix: str = "/dspex/") -> Backend:
    """``etcd`` endpoints → the etcd backend (several servers, docs/scale-out.md); else
    ``None`` → the default SQLite file, ``":memory:"`` → in-memory, else a SQLite path."""
    if etcd:
        from .backends.etcd import EtcdBackend

        return EtcdBackend(etcd, etcd_prefix)
    if db is None:
        db = _runtime.default_db_path()
    if os.fspath(db) == MEMORY:
        return MemoryBackend()
    return SQLiteBackend(db)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(a[4][0]).is_loopback for a in socket.getaddrinfo(host, None))
        except OSError:
            return False


#: how to make a token file (printed when one is missing)
MAKE_TOKEN_FILE = ("umask 077; python -c 'import secrets; print(secrets.token_urlsafe(32))' "
                   "> {path}")


def read_token_file(path: str | os.PathLike[str], what: str = "token file") -> str:
    """The token in ``path`` (plain text, surrounding whitespace ignored).

    Raises:
        ValueError: the file is missing, unreadable or empty; one line saying how to fix it.
    """
    shown = os.fspath(path)
    try:
        token = pathlib.Path(path).read_text().strip()
    except FileNotFoundError:
        raise ValueError(f"{what} {shown!r} does not exist; create one with: "
                         + MAKE_TOKEN_FILE.format(path=shown)) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ValueError(f"{what} {shown!r} cannot be read: {reason}") from None
    if not token:
        raise ValueError(f"{what} {shown!r} is empty; put a token in it: "
                         + MAKE_TOKEN_FILE.format(path=shown))
    return token


@dataclass
class ServerConfig:
    db: str | os.PathLike[str] | None = None
    host: str = "127.0.0.1"
    port: int = 0
    token: str | None = None
    write_runtime_file: bool = True
    runtime_dir: pathlib.Path | None = None
    limits: Limits = field(default_factory=Limits)
    #: keep the change log of at least this many recent revisions (None: keep all), see Store
    retain_revisions: int | None = None
    #: several principals (``server/principals.py``); None: one principal, "owner", whose
    #: token is ``token`` (or a random one)
    principals: list[Any] | None = None
    #: also compact what was committed more than this many seconds ago (None: no age limit)
    retain_seconds: float | None = None
    #: etcd client endpoints: the store is in etcd, shared with other servers (``db`` unused)
    etcd: list[str] | None = None
    #: the key prefix of this store in etcd (several stores may share one etcd)
    etcd_prefix: str = "/dspex/"
    #: (etcd) wait for a linearizable etcd read before each request; False: serve from this
    #: server's view as its watch has brought it (faster; may lag, docs/scale-out.md)
    linearizable: bool = True

    def check(self) -> None:
        if isinstance(self.port, bool) or not isinstance(self.port, int) \
                or not 0 <= self.port <= 65535:
            # grpc would silently take the port modulo 65536 (99999 -> 34463, -5 -> 65531)
            raise ValueError(f"port {self.port!r} is not a TCP port: use 1-65535, or 0 for any "
                             "free port")
        if self.retain_revisions is not None and self.retain_revisions < 1:
            raise ValueError(f"--retain-revisions must be at least 1, got {self.retain_revisions}")
        if self.etcd is not None:
            from .._wire.etcd_client import channel_target

            if not self.etcd:
                raise ValueError("--etcd needs at least one host:port endpoint")
            channel_target(self.etcd)  # InvalidArgument (a ValueError) naming a bad endpoint
            if not (self.etcd_prefix.startswith("/") and self.etcd_prefix.endswith("/")):
                raise ValueError(f"--etcd-prefix must start and end with '/', got "
                                 f"{self.etcd_prefix!r}")
        if self.retain_seconds is not None and not self.retain_seconds > 0:
            raise ValueError(f"--retain-seconds must be more than 0, got {self.retain_seconds}")
        if not is_loopback(self.host) and not self.token and not self.principals:
            raise ValueError(
                f"refusing to bind {self.host!r} (not loopback) without a token: pass --token-file"
            )


class _Running:
    """State of a started server (filled in by :func:`_serve`)."""

    address: str = ""
    port: int = 0
    token: str = ""
    store_id: str = ""
    db: str = ""
    runtime_file: pathlib.Path | None = None
    store: Store | None = None


#: 10 ms steps a stopping server waits for its watch handlers to return
STREAMS_WAIT_STEPS = 200


async def _serve(cfg: ServerConfig, stop: asyncio.Event, ready: Any, state: _Running) -> None:
    from .._wire.server import start_grpc_server  # grpc lives behind _wire
    from .access import Rights
    from .principals import tokens_and_rights

    if cfg.principals:
        # the runtime file (mode 0600, for local clients) carries the first principal's token
        tokens, rights = tokens_and_rights(cfg.principals)
        token = cfg.principals[0].token
    else:
        token = cfg.token or secrets.token_urlsafe(32)
        tokens, rights = {token: "owner"}, Rights()
    # a backend may block on the network (etcd): open it off the loop
    backend = await asyncio.to_thread(open_backend, cfg.db, cfg.etcd, cfg.etcd_prefix)
    try:
        store = Store(backend, cfg.limits, retain_revisions=cfg.retain_revisions, rights=rights,
                      retain_seconds=cfg.retain_seconds)
    except BaseException:
        backend.close()
        raise
    store.linearizable = cfg.linearizable
    store.attach(asyncio.get_running_loop())
    if getattr(backend, "shared", False):
        def fatal(message: str) -> None:  # the view can no longer follow: stop serving it
            log.error("stopping: %s", message)
            stop.set()

        backend.on_fatal = fatal  # type: ignore[attr-defined]
    state.store = store
    try:
        server, port = await start_grpc_server(
            store, cfg.host, cfg.port, tokens, f"dspex-notebook/{__version__}", cfg.limits
        )
    except BaseException:
        store.close()
        raise
    host = cfg.host if ":" not in cfg.host else f"[{cfg.host}]"
    state.address, state.port, state.token = f"{host}:{port}", port, token
    state.store_id = store.store_id
    state.db = str(getattr(backend, "path", None) or getattr(backend, "url", MEMORY))
    try:
        if cfg.write_runtime_file:
            state.runtime_file = _runtime.write_runtime_file(
                {"address": state.address, "token": token, "pid": os.getpid(), "db": state.db,
                 "store_id": store.store_id, "version": __version__, "started_at": time.time()},
                cfg.runtime_dir,
            )
        ready(None)
        await stop.wait()
    finally:
        if state.runtime_file is not None:
            state.runtime_file.unlink(missing_ok=True)
        # end open watch streams first, so their handlers return instead of being torn down
        # by the server's stop (which grpc reports as GeneratorExit tracebacks)
        store.hub.close()
        for _ in range(STREAMS_WAIT_STEPS):  # bounded: ≤ 2 s (a stuck stream is then torn down)
            if not store.open_streams:
                break
            await asyncio.sleep(0.01)
        await server.stop(0.5)
        store.close()


class EmbeddedServer:
    """A server in a daemon thread of this process, on ``127.0.0.1:0`` by default.

    Example::

        with EmbeddedServer(":memory:") as srv:
            print(srv.address, srv.token)

    Parameters:
        db: SQLite path, ``":memory:"``, or None for the default store file.
        host, port: where to listen (loopback, any free port by default).
        token: bearer token callers must send; generated when None.
        write_runtime_file: publish address + token for other local processes.
        principals: several principals (``server/principals.py``) instead of one token;
            ``token`` is then the first principal's.
        etcd, etcd_prefix, linearizable: the store in etcd instead (``db`` unused), shared
            with every server given the same endpoints and prefix (docs/scale-out.md).
    """

    def __init__(self, db: str | os.PathLike[str] | None = None, *, host: str = "127.0.0.1",
                 port: int = 0, token: str | None = None, write_runtime_file: bool = True,
                 runtime_dir: pathlib.Path | None = None, limits: Limits | None = None,
                 retain_revisions: int | None = None, principals: list[Any] | None = None,
                 retain_seconds: float | None = None, etcd: list[str] | None = None,
                 etcd_prefix: str = "/dspex/", linearizable: bool = True) -> None:
        self.config = ServerConfig(db, host, port, token, write_runtime_file, runtime_dir,
                                   limits or Limits(), retain_revisions, principals,
                                   retain_seconds, etcd, etcd_prefix, linearizable)
        self.config.check()
        self._state = _Running()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    @property
    def address(self) -> str:
        return self._state.address

    @property
    def token(self) -> str:
        return self._state.token

    @property
    def store_id(self) -> str:
        return self._state.store_id

    @property
    def runtime_file(self) -> pathlib.Path | None:
        return self._state.runtime_file

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def call(self, fn: Any, *args: Any, timeout: float = 10.0) -> Any:
        """Run ``fn(store, *args)`` on the server's loop thread and return its result (for
        administration and tests, e.g. ``srv.call(Store.compact, revision)``)."""
        import concurrent.futures

        loop, store = self._loop, self._state.store
        if loop is None or store is None or not self.running:
            raise RuntimeError("the embedded server is not running")
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(store, *args))
            except BaseException as exc:
                future.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return future.result(timeout)

    def start(self, timeout: float = 30.0) -> EmbeddedServer:
        """Start serving; return once the port is bound (raises what startup raised)."""
        if self.running:
            return self
        started = threading.Event()
        outcome: list[BaseException | None] = []

        def ready(exc: BaseException | None) -> None:
            outcome.append(exc)
            started.set()

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._stop = asyncio.Event()
            try:
                loop.run_until_complete(_serve(self.config, self._stop, ready, self._state))
            except BaseException as exc:  # report startup failures to start()
                if not started.is_set():
                    ready(exc)
                else:
                    log.exception("embedded server stopped with an error")
            finally:
                loop.close()

        self._thread = threading.Thread(target=main, name="dspex-server", daemon=True)
        self._thread.start()
        if not started.wait(timeout):
            raise TimeoutError(f"embedded server did not start within {timeout}s")
        if outcome and outcome[0] is not None:
            self._thread.join()
            self._thread = None
            raise outcome[0]
        atexit.register(self.stop)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving, remove the runtime file, close the store. Idempotent."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None or loop is None or stop is None:
            return
        if thread.is_alive():
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # loop already closed
                pass
            thread.join(timeout)
        self._thread = None
        atexit.unregister(self.stop)

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"address={self.address!r}" if self.running else "stopped"
        return f"<EmbeddedServer {state} db={self.config.db!r}>"


def tune_malloc() -> bool:
    """Keep large buffers in glibc's heap instead of mmap/munmap per allocation.

    A multi-megabyte reply (1000 embeddings = 3 MB) otherwise gets fresh pages from the kernel
    on every call: ~1,300 page faults and 4-5 ms just to serialize it, against ~0.6 ms with
    these thresholds (measured, docs/performance.md). Only the standalone server process does
    this; an embedded server leaves its host process (your kernel) alone. Returns whether the
    settings were applied (glibc only).
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
        # Hostile input (docs/server.md, "Memory"): refused multi-MiB requests still pass through
        # grpc and protobuf as transient buffers. Two arenas and a 32 MiB trim threshold bound
        # what glibc keeps of them (with 256 MiB, a second pass of tests/reliability grew the
        # process by 70-100 MB; now by less than 50), while replies of a few MB still reuse
        # heap pages.
        return bool(libc.mallopt(m_mmap_threshold, 64 << 20)) and bool(
            libc.mallopt(m_trim_threshold, 32 << 20)) and bool(libc.mallopt(m_arena_max, 2))
    except (OSError, AttributeError):  # not glibc (e.g. musl): keep the defaults
        return False


#: seconds a thread holding the GIL runs before one waiting for it may take over (Python's
#: default is 5 ms); see :func:`tune_switching`
SWITCH_INTERVAL = 0.001


def tune_switching() -> None:
    """Let the event loop take the GIL back from a worker thread sooner.

    Large requests are parsed, checked and encoded in worker threads (``_wire/servicer/
    base.py``) so that the loop stays free, but a worker running Python code gives the GIL up
    only every switch interval, and an answer to even a Ping takes several hand-offs between
    the loop and grpc's threads: with the default 5 ms, a Ping waited up to 30-40 ms while
    a 256 KiB JSON value was being checked. Only the standalone server process does this (an
    embedded server leaves its host process alone).
    """
    import sys

    sys.setswitchinterval(SWITCH_INTERVAL)


def serve_forever(cfg: ServerConfig, on_ready: Any = None) -> None:
    """Run in the foreground until SIGINT/SIGTERM (``dspex-notebook serve``)."""
    import signal

    cfg.check()
    tune_malloc()
    tune_switching()
    state = _Running()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await _serve(cfg, stop, lambda _: on_ready and on_ready(state), state)

    asyncio.run(main())


_embedded: dict[str, EmbeddedServer] = {}
_embedded_lock = threading.Lock()


def embedded_server(db: str | os.PathLike[str] | None = None) -> EmbeddedServer:
    """The process-wide embedded server for ``db`` (default store file), started on first use."""
    if db is None:
        db = _runtime.default_db_path()  # resolved now: DSPEX_DB may have changed since last time
    key = MEMORY if os.fspath(db) == MEMORY else os.path.abspath(os.fspath(db))
    with _embedded_lock:
        srv = _embedded.get(key)
        if srv is None or not srv.running:
            srv = _embedded[key] = EmbeddedServer(db).start()
        return srv


def embedded_servers() -> list[EmbeddedServer]:
    """The embedded servers this process started with :func:`embedded_server` (running)."""
    with _embedded_lock:
        return [s for s in _embedded.values() if s.running]


def stop_embedded(server: EmbeddedServer) -> None:
    """Stop an embedded server and forget it (the next :func:`embedded_server` starts anew)."""
    server.stop()
    with _embedded_lock:
        for key, value in list(_embedded.items()):
            if value is server:
                del _embedded[key]
