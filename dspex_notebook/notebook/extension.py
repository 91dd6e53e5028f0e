"""``%load_ext dspex_notebook``: connect, publish ``session``, register the magics.

Load: start the IO thread, connect on it (configured address, environment, the runtime file of
a running server of the configured store — the default store unless ``DspexMagics.db`` says
otherwise — or a new embedded server), create the session, put a
:class:`~.proxy.NotebookSession` in the user namespace, register ``%var``/``%%var``, and print
one line naming the session, the server and its store (``DspexMagics.quiet`` hides it). A
failure is one line too. When the server goes away later, the next call finds or starts one
for the same store and says so (``_connect.Locator``).

``%var connect A,B`` (:func:`reconnect`) moves the published ``session`` to other servers: a
new context is connected first (the old one stays if that fails), then it replaces the old one
inside the same ``session`` object, and the old one is closed.

Unload (``%unload_ext``, ``%reload_ext``, kernel shutdown via ``atexit``): close the session,
stop an embedded server this extension started, stop the IO thread. Nothing is left running.
"""

from __future__ import annotations

import atexit
import os
from typing import Any

from .. import _connect
from .._errors import DspexError
from .._loop import Portal
from .._session import SessionContext
from .magics import DspexMagicError, DspexMagics, complete_var, var_matcher
from .proxy import NotebookSession

_state: dict[str, Any] = {}


def current_session() -> NotebookSession | None:
    """The notebook's session proxy, or None when the extension is not loaded."""
    return _state.get("session")


def load_ipython_extension(ip: Any) -> None:
    if _state:
        unload_ipython_extension(ip)
    from ..server import runner

    magics = DspexMagics(shell=ip)
    before = set(runner.embedded_servers())
    portal: Portal | None = None
    try:
        token = magics.token
        if token is None and magics.token_file:
            token = runner.read_token_file(magics.token_file, "DspexMagics.token_file")
        portal = Portal()
        ctx = portal.run(
            _connect.connect(
                SessionContext, magics.session_id, address=magics.address, token=token,
                db=magics.db, start_server=magics.start_server,
                metadata={"client": "ipython", "pid": str(os.getpid())}, options={},
                via="magic", notify=print,
            ),
            timeout=max(magics.timeout, 30.0),
        )
    except BaseException as exc:
        if portal is not None:
            portal.close()
        if magics in ip.configurables:
            ip.configurables.remove(magics)
        if isinstance(exc, (DspexError, OSError, ValueError, TimeoutError)):
            # one line in the notebook, not a 59-line traceback; the cause stays attached
            raise DspexMagicError(f"%load_ext dspex_notebook: {type(exc).__name__}: {exc}") from exc
        raise
    started = [s for s in runner.embedded_servers() if s not in before]
    if not magics.quiet:
        print(f"dspex_notebook: {_connect.describe(ctx)}")
    try:  # learn the session's variable names now, so tab completion offers them at once
        portal.run(ctx.list_variables(), timeout=magics.timeout)
    except Exception:  # completion is a convenience; a slow list must not fail the load
        pass
    session = NotebookSession(ctx, portal)
    magics.notebook_session = session
    ip.register_magics(magics)
    if not getattr(ip, "_dspex_completer", False):  # hooks cannot be removed: add once
        for key in ("%var", "%%var"):
            ip.set_hook("complete_command", complete_var, str_key=key)
        ip._dspex_completer = True
    completer = getattr(ip, "Completer", None)
    if completer is not None and var_matcher not in completer.custom_matchers:
        completer.custom_matchers.insert(0, var_matcher)  # before Jedi, which it suppresses
    ip.user_ns[magics.namespace_name] = session
    _state.update(ip=ip, magics=magics, session=session, portal=portal, servers=started,
                  name=magics.namespace_name)
    atexit.register(_shutdown)


def reconnect(addresses: list[str], session_id: str | None, token: str | None) -> str:
    """Connect the notebook's ``session`` to the first of ``addresses`` that answers (the
    session ``session_id``, or the current one's) and return the line that says where.

    Live displays (``%var watch``, widget and optimization panels) belonged to the old
    connection and are stopped; embedded servers this extension started keep running until it
    is unloaded.

    Raises:
        DspexMagicError: no server answered, or it refused the token; ``session`` is unchanged.
    """
    session: NotebookSession = _state["session"]
    magics: DspexMagics = _state["magics"]
    portal: Portal = _state["portal"]
    try:
        ctx = portal.run(
            _connect.connect(
                SessionContext, session_id or session.session_id, address=addresses,
                token=token, db=None, start_server=False,
                metadata={"client": "ipython", "pid": str(os.getpid())}, options={},
                via="magic", notify=print,
            ),
            timeout=max(magics.timeout, 30.0),
        )
    except (DspexError, OSError, ValueError, TimeoutError) as exc:
        raise DspexMagicError(f"%var connect: {type(exc).__name__}: {exc}") from exc
    old = session.context
    magics.stop_views()
    _state["servers"] = [*_state.get("servers", ()), *_connect.started_servers(old)]
    session.context = ctx
    try:
        portal.run(old.close(), timeout=5.0)
    except Exception:  # the old server is typically gone: nothing to tell it
        pass
    try:  # the new session's names, for tab completion
        portal.run(ctx.list_variables(), timeout=magics.timeout)
    except Exception:
        pass
    return _connect.describe(ctx)


def unload_ipython_extension(ip: Any) -> None:
    name = _state.get("name")
    session = _state.get("session")
    if name and ip.user_ns.get(name) is session:
        del ip.user_ns[name]
    magics_manager = ip.magics_manager
    for kind in ("line", "cell"):
        magics_manager.magics[kind].pop("var", None)
    completer = getattr(ip, "Completer", None)
    if completer is not None and var_matcher in completer.custom_matchers:
        completer.custom_matchers.remove(var_matcher)
    magics = _state.get("magics")
    if magics is not None and magics in ip.configurables:  # Magics() appended it; it holds the session
        ip.configurables.remove(magics)
    _shutdown()


def _shutdown() -> None:
    """Close the session, stop servers we started and the IO thread (idempotent)."""
    if not _state:
        return
    state = dict(_state)
    _state.clear()
    atexit.unregister(_shutdown)
    portal: Portal = state["portal"]
    session: NotebookSession = state["session"]
    # servers started when the first one went away (see _connect.Locator) are ours too
    servers = [*state.get("servers", ()), *_connect.started_servers(session.context)]
    state["magics"].stop_views()
    try:
        portal.run(session.context.close(), timeout=5.0)
    except Exception:  # the server may already be gone at kernel shutdown
        pass
    portal.close()  # an old `session` kept by the user must not restart the IO thread
    from ..server import runner

    for server in servers:
        runner.stop_embedded(server)
