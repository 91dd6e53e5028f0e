"""``%var dspy ...``: the DSPy integration from a notebook line.

    %var dspy [list]                              the DSPy-bound variables (as ``dspex-notebook dspy``)
    %var dspy sync PROGRAM [--prefix P] [--knobs temperature,max_tokens] [--no-follow]
    %var dspy push PROGRAM                        program -> variables (what changed)
    %var dspy pull PROGRAM                        variables -> program, now

PROGRAM is an expression in the notebook namespace (a ``dspy.Module``). The bridge runs on the
extension's IO thread, so the watch that keeps a synced program current lives there and the
cell returns at once. ``list`` needs no dspy; the others import it (a missing extra is a
one-line error).
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from ._listing import DSPyTable, dspy_rows

USAGE = """\
%var dspy [list]                      variables the DSPy integration made (parameters, results)
%var dspy sync PROGRAM [--prefix P] [--knobs temperature,max_tokens] [--no-follow]
                                      a variable per LM setting of PROGRAM's predictors, kept in sync
%var dspy push PROGRAM                write PROGRAM's changed settings to its variables
%var dspy pull PROGRAM                apply the variables to PROGRAM now"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ValueError(f"{self.prog}: {message}\n\n{USAGE}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise ValueError(message or USAGE)


def dspy_command(magics: Any, argv: list[str]) -> Any:
    """Run ``%var dspy ARGV`` for :class:`~dspex_notebook.notebook.magics.DspexMagics`."""
    from ..notebook.magics import DspexMagicError

    head = argv[0] if argv else "list"
    try:
        if head == "list":
            if len(argv) > 1:
                raise ValueError("usage: %var dspy list")
            return DSPyTable(dspy_rows(magics._run(magics._ctx.list_variables(None))))
        if head not in ("sync", "push", "pull"):
            raise ValueError(f"%var dspy: unknown command {head!r}\n\n{USAGE}")
        p = _Parser(prog=f"%var dspy {head}", add_help=False)
        p.add_argument("program")
        if head == "sync":
            p.add_argument("--prefix", default="")
            p.add_argument("--knobs", default="temperature,max_tokens")
            p.add_argument("--no-follow", action="store_true")
        ns = p.parse_args(argv[1:])
        try:
            program = magics._eval(ns.program)
        except Exception as exc:
            raise ValueError(f"%var dspy {head}: {ns.program}: {type(exc).__name__}: {exc}") from None
        bridge = _bridge(magics)
        if head == "sync":
            knobs = [k.strip() for k in ns.knobs.split(",") if k.strip()]
            mappings = magics._run(bridge.sync_dspy_parameters(
                program, ns.prefix, knobs=knobs, follow=not ns.no_follow))
            for name, target in mappings.items():
                print(f"{name} <-> {ns.program}.{target}")
            return mappings
        if head == "push":
            written = magics._run(bridge.push_dspy_parameters(program))
            print(", ".join(f"{k} = {v!r}" for k, v in written.items()) or "nothing changed")
            return written
        return magics._run(bridge.pull_dspy_parameters(program))
    except (ImportError, ValueError, TypeError, KeyError) as exc:
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise DspexMagicError(str(text)) from None


def _bridge(magics: Any) -> Any:
    """The magics' bridge, made on the IO loop (where the session and its watches live)."""
    bridge = getattr(magics, "_dspy_bridge", None)
    if bridge is None or bridge.session_context is not magics._ctx:
        from .bridge import DSPyOptimizationBridge

        async def make() -> Any:
            return DSPyOptimizationBridge(magics._ctx)

        bridge = magics._run(make())
        magics._dspy_bridge = bridge
    return bridge
