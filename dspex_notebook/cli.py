"""``dspex-notebook`` command line: run a standalone server, find running ones.

    dspex-notebook serve [--host 127.0.0.1] [--port 50051] [--db FILE | --memory] [--token-file F]
    dspex-notebook list [--json]
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dspex-notebook", description=__doc__.splitlines()[0])
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
