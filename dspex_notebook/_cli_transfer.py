"""``dspex-notebook export``, ``import`` and ``restore`` (the parsers and what they run).

    dspex-notebook export [FILE|-] [--format F] [--history] [--pattern REGEX] [--session S] ...
    dspex-notebook import FILE|- [--format F] [--strategy replace|keep|merge] [--dry-run]
                          [--allow-pickle] [--json] [--session S] ...
    dspex-notebook restore REV [--dry-run] [--json] [--session S] ...

``export`` writes to FILE (the format from its suffix unless ``--format``), or to stdout.
``import`` and ``restore`` print what changed per variable (``--json``: the summary object)
and exit 1 when an import has errors (nothing was imported then).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from .io import FORMATS, format_for_path, read_file


def _export(args: argparse.Namespace, client: Callable[..., int]) -> int:
    async def work(ctx: Any) -> int:
        to_stdout = args.file in (None, "-")
        fmt = format_for_path(None if to_stdout else args.file, args.format)
        data = await ctx.export_variables(fmt, args.history, True, args.pattern)
        if to_stdout:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            with open(args.file, "wb") as f:
                f.write(data)
            if not args.quiet:
                print(f"dspex-notebook export: wrote {len(data)} bytes ({fmt}) to {args.file}",
                      file=sys.stderr)
        return 0

    return client(args, work)


def _import(args: argparse.Namespace, client: Callable[..., int]) -> int:
    from ._display import ChangeSummary

    async def work(ctx: Any) -> int:
        if args.file == "-":
            data = sys.stdin.buffer.read()
        else:
            data = read_file(args.file)
        summary = await ctx.import_variables(
            data, format_for_path(None if args.file == "-" else args.file, args.format),
            args.strategy, args.dry_run, allow_pickle=args.allow_pickle)
        if args.json:
            print(json.dumps(summary))
        else:
            print(repr(ChangeSummary(f"import {args.file}", summary)))
        return 1 if summary["errors"] else 0

    return client(args, work)


def _restore(args: argparse.Namespace, client: Callable[..., int]) -> int:
    from ._display import ChangeSummary

    async def work(ctx: Any) -> int:
        summary = await ctx.restore_session(args.revision, args.dry_run)
        if args.json:
            print(json.dumps(summary))
        else:
            print(repr(ChangeSummary(f"restore to revision {args.revision}", summary)))
        return 0

    return client(args, work)


def add_parsers(sub: Any, client_options: Callable[[argparse.ArgumentParser], None],
                client: Callable[..., int]) -> None:
    """Add the three commands to the ``dspex-notebook`` sub-parsers."""
    exp = sub.add_parser("export", help="export a session's variables to a file (or stdout)")
    exp.add_argument("file", nargs="?", default=None, metavar="FILE",
                     help="where to write (default/-: stdout); the suffix picks the format")
    exp.add_argument("--format", choices=FORMATS, default=None)
    exp.add_argument("--history", action="store_true", help="include each variable's history")
    exp.add_argument("--pattern", default=None, help="regular expression searched in names")
    client_options(exp)
    exp.set_defaults(func=lambda a: _export(a, client))

    imp = sub.add_parser("import", help="import an export file as one write")
    imp.add_argument("file", metavar="FILE", help="the file (-: stdin)")
    imp.add_argument("--format", choices=FORMATS, default=None)
    imp.add_argument("--strategy", choices=("replace", "keep", "merge"), default="replace",
                     help="for variables that exist (default: replace)")
    imp.add_argument("--dry-run", action="store_true", help="only report; change nothing")
    imp.add_argument("--allow-pickle", action="store_true",
                     help="accept a pickle file (plain data only; never runs code)")
    imp.add_argument("--json", action="store_true", help="print the summary as JSON")
    client_options(imp)
    imp.set_defaults(func=lambda a: _import(a, client))

    res = sub.add_parser("restore", help="set a session's variables back to a revision")
    res.add_argument("revision", type=int, metavar="REV")
    res.add_argument("--dry-run", action="store_true", help="only report; change nothing")
    res.add_argument("--json", action="store_true", help="print the summary as JSON")
    client_options(res)
    res.set_defaults(func=lambda a: _restore(a, client))
