"""The ``%var`` subcommands that show live widgets: argument parsing and construction only.

``%var widget NAME [NAME ...]`` (alias ``%var slider``) shows a
:class:`~dspex_notebook.widgets.VariablePanel`; ``%var optimize NAME`` (no ``--objective``) the
:class:`~dspex_notebook.widgets.OptimizationPanel` of NAME's run. The magics module dispatches
here, so that it stays a list of subcommands.
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from IPython.core.error import UsageError

from .._errors import DspexError

WIDGET_USAGE = "%var widget NAME [NAME ...] [--throttle-ms N] [--on-release]"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse would sys.exit()
        raise UsageError(f"{self.prog}: {message}\nusage: {self.usage}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise UsageError(message or f"usage: {self.usage}")


def _one_line(exc: DspexError) -> UsageError:
    from .magics import DspexMagicError

    return DspexMagicError(f"{type(exc).__name__}: {exc}")


def widget_panel(session: Any, argv: list[str], prog: str = "%var widget") -> Any:
    """``%var widget``: controls for the variables, bound both ways, with status lines."""
    from ..widgets import VariablePanel
    from .commands import NAME_RE

    p = _Parser(prog=prog, add_help=False, usage=WIDGET_USAGE)
    p.add_argument("names", nargs="+")
    p.add_argument("--throttle-ms", type=int, default=100)
    p.add_argument("--on-release", action="store_true",
                   help="write when the slider is released, not while dragging")
    ns = p.parse_args(argv)
    bad = [n for n in ns.names if not NAME_RE.match(n)]
    if bad:
        raise UsageError(f"{prog}: not variable names: {', '.join(bad)}")
    if ns.throttle_ms < 0:
        raise UsageError(f"{prog}: --throttle-ms must be >= 0, got {ns.throttle_ms}")
    try:
        return VariablePanel(session, ns.names, throttle_ms=ns.throttle_ms,
                             continuous_update=not ns.on_release)
    except DspexError as exc:
        raise _one_line(exc) from None


def optimization_panel(session: Any, name: str, timeout: float = 10.0) -> Any:
    """``%var optimize NAME`` without ``--objective``: the panel of NAME's current or last run
    (a second notebook sees the same run)."""
    from ..widgets import OptimizationPanel

    try:
        status = session.portal.run(session.context.get_optimization_status(name), timeout)
    except DspexError as exc:
        raise _one_line(exc) from None
    if not status.get("optimization_id"):
        raise UsageError(f"%var optimize {name}: {name!r} has no optimization run to show; "
                         "start one with --objective FUNC")
    return OptimizationPanel(session, name, timeout=timeout)


def history_scrubber(session: Any, name: str, limit: int, timeout: float = 10.0) -> Any:
    """``%var history NAME --scrubber``: a slider over the versions with a Restore button."""
    from ..widgets import HistoryScrubber

    if not 0 < limit <= 10_000:
        raise UsageError(f"%var history: --limit must be 1..10000, got {limit}")
    try:
        return HistoryScrubber(session, name, limit=limit, timeout=timeout)
    except DspexError as exc:
        raise _one_line(exc) from None
