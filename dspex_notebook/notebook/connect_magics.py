"""``%var connect``: say which server the notebook's session uses, or move it to others.

A mixin of :class:`~.magics.DspexMagics` (which dispatches to it); the switch itself is
:func:`.extension.reconnect`, which owns the extension's state.
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from IPython.core.error import UsageError

from .. import _connect
from .._addresses import parse_addresses
from .._errors import DspexError

USAGE = """\
%var connect                          which session, server and store this notebook uses
%var connect HOST:PORT[,HOST:PORT ...] [--session S] [--token-file F]
                                      move `session` to that server; several: the first that
                                      answers, and the next one whenever its server goes away
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}\n\n{USAGE}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise UsageError(message or USAGE)


class ConnectMagics:
    """The ``connect`` sub-command (needs ``_ctx``, ``token``, ``token_file`` and ``quiet`` of
    the magics)."""

    _ctx: Any
    token: Any
    token_file: Any
    quiet: Any

    def connect(self, argv: list[str]) -> None:
        """``%var connect [ADDRESSES] [--session S] [--token-file F]``: print the line that
        names the session, the server and its store (after moving there, with ADDRESSES)."""
        from .magics import DspexMagicError

        p = _Parser(prog="%var connect", add_help=False)
        p.add_argument("addresses", nargs="*", metavar="HOST:PORT[,...]")
        p.add_argument("--session", default=None)
        p.add_argument("--token-file", default=None)
        ns = p.parse_args(argv)
        if not ns.addresses:
            if ns.session or ns.token_file:
                raise UsageError(f"%var connect: --session and --token-file need an address\n\n"
                                 f"{USAGE}")
            print(f"dspex_notebook: {_connect.describe(self._ctx)}")
            return None
        try:
            addresses = parse_addresses(ns.addresses, "%var connect")
        except DspexError as exc:
            raise DspexMagicError(str(exc)) from None
        token = self.token
        try:
            if ns.token_file or (token is None and self.token_file):
                from ..server.runner import read_token_file

                source = "--token-file" if ns.token_file else "DspexMagics.token_file"
                token = read_token_file(ns.token_file or self.token_file, source)
        except ValueError as exc:
            raise DspexMagicError(f"%var connect: {exc}") from None
        from .extension import reconnect

        line = reconnect(addresses, ns.session, token)
        if not self.quiet:
            print(f"dspex_notebook: {line}")
        return None
