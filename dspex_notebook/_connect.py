"""Finding or starting a server for :meth:`SessionContext.connect`.

Where the server is found, in order: the ``address``/``token`` arguments; the environment
(``DSPEX_ADDRESS`` with ``DSPEX_TOKEN`` or ``DSPEX_TOKEN_FILE``); a running local server's
runtime file (``dspex-notebook list``) for the requested store; else an embedded server is
started in this process on ``127.0.0.1:<free port>`` when ``start_server`` is true.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._wire.client import insecure_channel
from ._wire.status import BridgeUnavailable

if TYPE_CHECKING:
    from ._session import SessionContext


def token_from_env_file() -> str | None:
    path = os.environ.get("DSPEX_TOKEN_FILE")
    if not path:
        return None
    with open(path) as fh:
        return fh.read().strip() or None


def candidates(address: str | None, token: str | None,
               db: str | os.PathLike[str] | None) -> tuple[list[tuple[str, str | None]], bool]:
    """``([(address, token), ...], explicit)``: where to try, and whether the caller named it."""
    from . import _runtime

    if address is None and os.environ.get("DSPEX_ADDRESS"):
        address = os.environ["DSPEX_ADDRESS"]
        token = token or os.environ.get("DSPEX_TOKEN") or token_from_env_file()
    if address is not None:
        return [(address, token)], True
    found = []
    for info in _runtime.list_servers():
        if db is None or os.path.abspath(os.fspath(db)) == info.get("db"):
            found.append((info["address"], info.get("token")))
    return found, False


async def connect(cls: type[SessionContext], session_id: str, *, address: str | None,
                  token: str | None, db: str | os.PathLike[str] | None, start_server: bool,
                  metadata: Mapping[str, str] | None, options: dict[str, Any]) -> SessionContext:
    from . import _runtime

    tries, explicit = candidates(address, token, db)
    last_error: BaseException | None = None
    for addr, tok in tries:
        ctx = cls(session_id, insecure_channel(addr), token=tok, close_channel=True, **options)
        try:
            return await ctx.initialize(metadata)
        except BridgeUnavailable as exc:
            last_error = exc
            await ctx.close()
            if explicit:
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
    ctx = cls(session_id, insecure_channel(srv.address), token=srv.token, close_channel=True,
              **options)
    return await ctx.initialize(metadata)
