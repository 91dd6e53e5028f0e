"""``%var export``, ``%var import`` and ``%var restore``: parse, call the session, display.

A mixin of :class:`~.magics.DspexMagics` (which dispatches to these methods), kept apart so
the magics module stays one sitting long.
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from IPython.core.error import UsageError

from .._display import ChangeSummary
from .._errors import DspexError
from ..io import FORMATS, format_for_path, read_file

USAGE = """\
%var export [--format json|yaml|parquet|pickle] [--history] [--pattern REGEX] [FILE]
                                      export the session (to FILE, or shown as text)
%var import FILE [--format F] [--strategy replace|keep|merge] [--dry-run] [--allow-pickle]
                                      import a file as one write (--dry-run: only report)
%var restore REV [--dry-run]          set every variable back to its value at revision REV
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}\n\n{USAGE}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise UsageError(message or USAGE)


class TransferMagics:
    """The export/import/restore sub-commands (needs ``_run`` and ``_ctx`` of the magics)."""

    _run: Any
    _ctx: Any

    def export(self, argv: list[str]) -> Any:
        p = _Parser(prog="%var export", add_help=False)
        p.add_argument("file", nargs="?")
        p.add_argument("--format", choices=FORMATS)
        p.add_argument("--history", action="store_true", help="include each variable's history")
        p.add_argument("--pattern", help="regular expression searched in names")
        ns = p.parse_args(argv)
        fmt = format_for_path(ns.file, ns.format)
        if ns.file is None and fmt in ("parquet", "pickle"):
            raise UsageError(f"%var export --format {fmt} needs a FILE to write")
        data = self._run(self._ctx.export_variables(fmt, ns.history, True, ns.pattern))
        if ns.file is None:
            print(data.decode("utf-8"))
            return None
        try:
            with open(ns.file, "wb") as f:
                f.write(data)
        except OSError as exc:
            from .magics import DspexMagicError

            raise DspexMagicError(f"%var export: cannot write {ns.file}: {exc.strerror}") from None
        print(f"wrote {len(data)} bytes ({fmt}) to {ns.file}")
        return None

    def import_(self, argv: list[str]) -> ChangeSummary:
        p = _Parser(prog="%var import", add_help=False)
        p.add_argument("file")
        p.add_argument("--format", choices=FORMATS)
        p.add_argument("--strategy", choices=("replace", "keep", "merge"), default="replace")
        p.add_argument("--dry-run", action="store_true")
        p.add_argument("--allow-pickle", action="store_true")
        ns = p.parse_args(argv)
        try:
            data = read_file(ns.file)
        except DspexError as exc:
            from .magics import DspexMagicError, magic_text

            raise DspexMagicError(magic_text(exc)) from None
        summary = self._run(self._ctx.import_variables(
            data, format_for_path(ns.file, ns.format), ns.strategy, ns.dry_run,
            allow_pickle=ns.allow_pickle))
        return ChangeSummary(f"import {ns.file}", summary)

    def restore(self, argv: list[str]) -> ChangeSummary:
        p = _Parser(prog="%var restore", add_help=False)
        p.add_argument("revision", type=int)
        p.add_argument("--dry-run", action="store_true")
        ns = p.parse_args(argv)
        summary = self._run(self._ctx.restore_session(ns.revision, ns.dry_run))
        return ChangeSummary(f"restore to revision {ns.revision}", summary)
