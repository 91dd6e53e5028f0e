"""The ``dspex-notebook deps`` and ``delete`` commands (kept beside ``cli.py``, which stays a
list of small commands)::

    dspex-notebook deps NAME [--transitive] [--dependents] [--json] | deps NAME --graph FILE.png
    dspex-notebook deps NAME --add OTHER [--type T] [--metadata JSON] | --remove OTHER
    dspex-notebook delete NAME [NAME ...] [--force]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any


def _deps(args: argparse.Namespace) -> int:
    from . import cli
    from ._display import DependencyTable
    from .notebook.commands import dependency_metadata

    async def work(ctx: Any) -> int:
        if args.graph:
            from .plotting.graph import dependency_figure

            ups = await ctx.get_dependencies(args.name, True)
            downs = await ctx.get_dependents(args.name, True)
            dependency_figure(args.name, ups, downs).savefig(args.graph, format="png")
            print(f"{args.name}: {len(ups)} dependencies, {len(downs)} dependents -> {args.graph}")
            return 0
        if args.add:
            await ctx.add_dependency(args.name, args.add, args.type,
                                     dependency_metadata(args.metadata))
            print(f"{args.name} depends on {args.add} ({args.type})")
            return 0
        if args.remove:
            await ctx.remove_dependency(args.name, args.remove)
            print(f"{args.name} no longer depends on {args.remove}")
            return 0
        method = ctx.get_dependents if args.dependents else ctx.get_dependencies
        entries = await method(args.name, args.transitive)
        if args.json:
            print(json.dumps(entries))
        else:
            print(repr(DependencyTable(args.name, entries, args.dependents, args.transitive)))
        return 0

    return cli._client(args, work)


def _delete(args: argparse.Namespace) -> int:
    from . import cli

    async def work(ctx: Any) -> int:
        for name in args.names:
            await ctx.delete_variable(name, force=args.force)
            print(f"{name} deleted")
        return 0

    return cli._client(args, work)


def add_commands(sub: Any, client_options: Callable[[argparse.ArgumentParser], None]) -> None:
    deps = sub.add_parser("deps", help="what a variable depends on (or what depends on it); "
                                       "add or remove a dependency")
    deps.add_argument("name", metavar="NAME")
    deps.add_argument("--transitive", action="store_true", help="indirect ones too")
    deps.add_argument("--dependents", action="store_true",
                      help="what depends on NAME instead of what NAME depends on")
    edit = deps.add_mutually_exclusive_group()
    edit.add_argument("--add", metavar="OTHER", help="NAME depends on OTHER from now on")
    edit.add_argument("--remove", metavar="OTHER", help="NAME no longer depends on OTHER")
    deps.add_argument("--type", default="data", choices=("data", "constraint", "optimization"),
                      help="the dependency's type with --add (default: data)")
    deps.add_argument("--metadata", default=None, metavar="JSON",
                      help="the dependency's metadata with --add: a JSON object of scalars")
    deps.add_argument("--json", action="store_true", help="the list as JSON")
    deps.add_argument("--graph", default=None, metavar="FILE.png",
                      help="write a figure of the graph (dependencies left, dependents right)")
    client_options(deps)
    deps.set_defaults(func=_deps)

    delete = sub.add_parser("delete", help="delete variables")
    delete.add_argument("names", nargs="+", metavar="NAME")
    delete.add_argument("--force", action="store_true",
                        help="also when others depend on them (those dependencies go too)")
    client_options(delete)
    delete.set_defaults(func=_delete)
