"""``dspex-notebook`` command line: run a server, find running ones, read and write variables.

    dspex-notebook serve [--host 127.0.0.1] [--port 50051] [--db FILE | --memory] [--token-file F]
    dspex-notebook list [--json]
    dspex-notebook vars [PATTERN] [--session S] [--address HOST:PORT --token-file F]
    dspex-notebook get NAME [NAME ...] [--json] [--session S] ...
    dspex-notebook set NAME VALUE [--session S] ...        (VALUE is YAML/JSON: 0.7, [1, 2], text)
    dspex-notebook enable|disable [--sys-prefix]           (load the extension in every kernel)

Without ``--address`` the commands use the newest running server on this machine (its runtime
file holds the token), e.g. a notebook kernel's embedded server; they never start one.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from . import __version__


def _serve(args: argparse.Namespace) -> int:
    from .server.runner import MEMORY, ServerConfig, read_token_file, serve_forever

    token = read_token_file(args.token_file) if args.token_file else None
    cfg = ServerConfig(db=MEMORY if args.memory else args.db, host=args.host, port=args.port,
                       token=token)
    try:
        cfg.check()
    except ValueError as exc:
        print(f"dspex-notebook serve: {exc}", file=sys.stderr)
        return 2

    def ready(state) -> None:
        where = state.runtime_file or "(no runtime file)"
        print(f"dspex-notebook {__version__} serving {state.db} on {state.address}", flush=True)
        print(f"runtime file (address + token, mode 0600): {where}", flush=True)

    try:
        serve_forever(cfg, ready)
    except Exception as exc:  # startup failures: port in use, store locked, bad path
        print(f"dspex-notebook serve: {exc}", file=sys.stderr)
        return 1
    return 0


def _list(args: argparse.Namespace) -> int:
    from ._runtime import list_servers, runtime_dir

    servers = list_servers()
    if args.json:
        for info in servers:
            info.pop("token", None)
        print(json.dumps(servers, indent=2))
        return 0
    if not servers:
        print(f"no running dspex-notebook servers (runtime dir: {runtime_dir()})")
        return 0
    for info in servers:
        print(f"{info['address']:<22} pid {info['pid']:<8} db {info.get('db')}")
    return 0


def _connect(args: argparse.Namespace):
    from ._session import SessionContext
    from .server.runner import read_token_file

    token = read_token_file(args.token_file) if args.token_file else None
    return SessionContext.connect(args.session, address=args.address, token=token,
                                  start_server=False)


def _client(args: argparse.Namespace, work) -> int:
    import asyncio

    from ._errors import DspexError

    async def run() -> int:
        ctx = await _connect(args)
        try:
            return await work(ctx)
        finally:
            await ctx.close()

    try:
        return asyncio.run(run())
    except (DspexError, OSError) as exc:
        print(f"dspex-notebook {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def _jsonable(value):
    tolist = getattr(value, "tolist", None)
    return tolist() if callable(tolist) else value


def _vars(args: argparse.Namespace) -> int:
    from ._display import VariableTable

    async def work(ctx) -> int:
        print(repr(VariableTable(await ctx.list_variables(args.pattern))))
        return 0

    return _client(args, work)


def _get(args: argparse.Namespace) -> int:
    async def work(ctx) -> int:
        values = await ctx.get_variables(args.names)
        if args.json:
            print(json.dumps({k: _jsonable(v) for k, v in values.items()}))
        else:
            for name, value in values.items():
                print(f"{name} = {value!r}" if len(values) > 1 else repr(value))
        return 0

    return _client(args, work)


def _set(args: argparse.Namespace) -> int:
    import yaml

    try:
        value = yaml.safe_load(args.value)
    except yaml.YAMLError as exc:
        print(f"dspex-notebook set: VALUE is not YAML/JSON: {exc}", file=sys.stderr)
        return 2

    async def work(ctx) -> int:
        version = await ctx.set_variable(args.name, value, metadata={"source": "python", "via": "cli"})
        print(f"{args.name} = {value!r} (version {version})")
        return 0

    return _client(args, work)


def _enable(args: argparse.Namespace) -> int:
    from .notebook.kernel_config import config_path, set_enabled

    path = config_path(sys_prefix=args.sys_prefix)
    changed = set_enabled(path, args.command == "enable")
    state = "loads" if args.command == "enable" else "no longer loads"
    print(f"{path}: every new IPython kernel {state} dspex_notebook" + ("" if changed else " (unchanged)"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dspex-notebook",
        description="Run a dspex-notebook server, find running ones, read and write variables.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run a standalone server in the foreground")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    serve.add_argument("--port", type=int, default=50051, help="port (0 = any free port)")
    store = serve.add_mutually_exclusive_group()
    store.add_argument("--db", default=None, help="SQLite store file (default: the user store)")
    store.add_argument("--memory", action="store_true", help="keep everything in memory")
    serve.add_argument("--token-file", default=None,
                       help="file holding the bearer token (required for a non-loopback --host)")
    serve.set_defaults(func=_serve)

    lst = sub.add_parser("list", help="show running servers (from their runtime files)")
    lst.add_argument("--json", action="store_true", help="machine-readable output (no tokens)")
    lst.set_defaults(func=_list)

    def client_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--session", default="default", help="session id (default: default)")
        p.add_argument("--address", default=None, help="host:port (default: newest local server)")
        p.add_argument("--token-file", default=None, help="token for --address")

    vars_ = sub.add_parser("vars", help="list a session's variables")
    vars_.add_argument("pattern", nargs="?", default=None, help="glob on names")
    client_options(vars_)
    vars_.set_defaults(func=_vars)

    get = sub.add_parser("get", help="print variable values")
    get.add_argument("names", nargs="+")
    get.add_argument("--json", action="store_true")
    client_options(get)
    get.set_defaults(func=_get)

    set_ = sub.add_parser("set", help="set a variable (VALUE is YAML/JSON)")
    set_.add_argument("name")
    set_.add_argument("value")
    client_options(set_)
    set_.set_defaults(func=_set)

    for name, text in (("enable", "load the extension in every new IPython kernel"),
                       ("disable", "stop loading the extension in new kernels")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--sys-prefix", action="store_true",
                       help="this environment's config instead of the user's IPython profile")
        p.set_defaults(func=_enable)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
