"""``dspex-notebook`` command line: run a server, find running ones, read and write variables.

    dspex-notebook serve [--host 127.0.0.1] [--port 50051] [--db FILE | --memory]
                         [--backend sqlite|memory|etcd --etcd HOST:PORT,... [--etcd-prefix P]
                          [--etcd-reads linearizable|local]]
                         [--token-file F | --principals FILE]
    dspex-notebook list [--json]
    dspex-notebook vars [PATTERN] [--session S] [--db FILE | --address HOST:PORT[,...] --token-file F]
    dspex-notebook get NAME [NAME ...] [--json] [--session S] ...
    dspex-notebook set NAME VALUE [--session S] ...        (VALUE is read by the variable's type)
    dspex-notebook watch NAME [NAME ...] [--json] [--session S] ...   (until Ctrl-C)
    dspex-notebook stats [NAME] [--json] [--session S] ...
    dspex-notebook status NAME | stop NAME | trials NAME [--limit N] [--json]   (optimization runs)
    dspex-notebook history NAME [--limit N] [--json] | rollback NAME VERSION [--reason TEXT]
    dspex-notebook export [FILE] [--format F] [--history] [--pattern REGEX]
    dspex-notebook import FILE [--strategy replace|keep|merge] [--dry-run] [--allow-pickle]
    dspex-notebook restore REV [--dry-run]                 (see dspex_notebook/_cli_transfer.py)
    dspex-notebook plot NAME --out FILE.png [--kind trials|values]   (a static figure)
    dspex-notebook deps NAME [--transitive] [--dependents] [--json]
                   | deps NAME --add OTHER [--type T] [--metadata JSON] | deps NAME --remove OTHER
    dspex-notebook delete NAME [NAME ...] [--force]
    dspex-notebook permissions NAME [--set RULES] [--check PERMISSION [--as SESSION]] [--json]
    dspex-notebook dspy [--json] [--session S] ...         (variables bound to DSPy programs)
    dspex-notebook enable|disable [--sys-prefix]           (load the extension in every kernel)

The client commands use the running server of the store they are given (``--db``; the default
store otherwise, the one a notebook kernel's embedded server uses), found through its runtime
file (which holds the token), or the server at ``--address`` (``A,B``: the first of the list that
answers, moving along it when a server goes away). They never start a server, never
create a session (an unknown one is an error naming those that exist), and say on stderr which
session, server and store they used (``--quiet`` hides it), so stdout stays parseable.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from . import __version__

DEFAULT_PORT = 50051


def _port(text: str) -> int:
    """argparse type of ``--port``: 0-65535 (grpc would silently wrap anything else)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"{port} is not a TCP port: use 1-65535, or 0 for any free port")
    return port


def _addresses(text: str) -> list[str]:
    """argparse type of ``--address``: ``HOST:PORT``, or several separated by commas."""
    from ._addresses import parse_addresses

    try:
        return parse_addresses(text, "")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _connect_line(state, host: str, token_file: str | None) -> str:
    """The one line a client needs to reach this server."""
    from ._connect import MEMORY, is_default_store
    from .server.runner import is_loopback

    if not is_loopback(host):  # other machines: no runtime file there, so address + token
        return (f"connect: DSPEX_ADDRESS={state.address} DSPEX_TOKEN_FILE={token_file} "
                "dspex-notebook vars   (Python: the same variables, then await "
                "SessionContext.connect())")
    if state.db == MEMORY:
        return (f"connect: dspex-notebook vars --address {state.address}   (Python: await "
                f"SessionContext.connect(address={state.address!r}))")
    if is_default_store(state.db):
        return ("connect: dspex-notebook vars   (Python: await SessionContext.connect(); "
                "found through the runtime file)")
    return (f"connect: dspex-notebook vars --db {state.db}   (Python: await "
            f"SessionContext.connect(db={state.db!r}))")


def _serve(args: argparse.Namespace) -> int:
    from .server.principals import load_principals
    from .server.runner import MEMORY, ServerConfig, read_token_file, serve_forever

    try:
        token = read_token_file(args.token_file, "--token-file") if args.token_file else None
        principals = load_principals(args.principals) if args.principals else None
        backend = "memory" if args.memory else args.backend
        if backend == "etcd" and not args.etcd:
            raise ValueError("--backend etcd needs --etcd HOST:PORT[,HOST:PORT...] "
                             "(the etcd cluster's client endpoints)")
        if args.etcd and backend != "etcd":
            raise ValueError("--etcd is for --backend etcd")
        if backend == "etcd" and args.db:
            raise ValueError("--db is a SQLite file; with --backend etcd the store is in etcd")
        cfg = ServerConfig(db=MEMORY if backend == "memory" else args.db, host=args.host,
                           port=args.port, token=token, retain_revisions=args.retain_revisions,
                           principals=principals, retain_seconds=args.retain_seconds,
                           etcd=args.etcd.split(",") if backend == "etcd" else None,
                           etcd_prefix=args.etcd_prefix,
                           linearizable=args.etcd_reads == "linearizable")
        cfg.check()
    except ValueError as exc:
        print(f"dspex-notebook serve: {exc}", file=sys.stderr)
        return 2

    def ready(state) -> None:
        where = state.runtime_file or "(no runtime file)"
        print(f"dspex-notebook {__version__} serving {state.db} on {state.address}", flush=True)
        print(f"runtime file (address + token, mode 0600): {where}", flush=True)
        print(_connect_line(state, args.host, args.token_file), flush=True)
        if cfg.principals:
            print(f"principals: {', '.join(p.name for p in cfg.principals)} (the runtime file "
                  f"holds {cfg.principals[0].name}'s token)", flush=True)

    try:
        serve_forever(cfg, ready)
    except Exception as exc:  # startup failures: port in use, store locked, bad path
        print(f"dspex-notebook serve: {exc}", file=sys.stderr)
        return 1
    return 0


def _list(args: argparse.Namespace) -> int:
    from ._connect import describe_store
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
        print(f"{info['address']:<22} pid {info['pid']:<8} {describe_store(info.get('db'))}")
    return 0


def _client(args: argparse.Namespace, work) -> int:
    import asyncio

    from . import _connect
    from ._errors import DspexError
    from ._session import SessionContext
    from .server.runner import read_token_file

    def note(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    async def run() -> int:
        token = read_token_file(args.token_file, "--token-file") if args.token_file else None
        # one-shot commands: no watch stream for cache coherence (`watch` opens its own), and
        # the session must exist: reading never creates one
        ctx = await _connect.connect(
            SessionContext, args.session, address=args.address, token=token, db=args.db,
            start_server=False, metadata=None, options={"coherent_cache": False},
            create=False, via="cli", notify=note)
        note(f"dspex-notebook: {_connect.describe(ctx)}")
        try:
            return await work(ctx)
        finally:
            await ctx.close()

    try:
        return asyncio.run(run())
    except (DspexError, ValueError) as exc:
        print(f"dspex-notebook {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        raise  # stdout was closed (`| head`): main() leaves quietly
    except OSError as exc:
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
    from ._errors import InvalidArgument
    from ._text import value_from_text

    async def work(ctx) -> int:
        # VALUE is read by the variable's type: `off` stays "off" for a choice, `1.10` stays
        # "1.10" for a string; YAML (JSON) for numbers, booleans, lists, dicts, arrays
        info = await ctx.get_variable_info(args.name)
        try:
            value = value_from_text(args.value, info.type)
        except InvalidArgument as exc:
            print(f"dspex-notebook set: {exc}", file=sys.stderr)
            return 2
        version = await ctx.set_variable(args.name, value, metadata={"source": "python", "via": "cli"})
        print(f"{args.name} = {value!r} (version {version})")
        return 0

    return _client(args, work)


def _update_line(update, as_json: bool) -> str:
    if as_json:
        return json.dumps({
            "name": update.name, "kind": update.kind, "value": _jsonable(update.value),
            "old_value": _jsonable(update.old_value), "version": update.version,
            "revision": update.revision, "source": update.source, "metadata": update.metadata,
            "timestamp": update.timestamp.isoformat() if update.timestamp else None,
        })
    if update.kind == "delete":
        return f"{update.name} deleted (revision {update.revision})"
    what = "" if update.kind == "set" else f", {update.kind}"
    return f"{update.name} = {update.value!r} (version {update.version}, revision {update.revision}{what})"


def _watch(args: argparse.Namespace) -> int:
    """Stream updates until Ctrl-C; the session's watch resumes by itself across a server
    restart (from its last revision: nothing lost, nothing twice)."""
    import asyncio
    import signal

    async def work(ctx) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        last_status = [ctx.watch_status]

        def status(state: str) -> None:
            if state != last_status[0] and not args.json:
                print(f"[watch: {state}]", file=sys.stderr, flush=True)
            last_status[0] = state

        ctx.on_watch_status(status)

        async def pump() -> None:
            async with ctx.watch_variables(args.names, include_initial=True) as watch:
                async for update in watch:
                    print(_update_line(update, args.json), flush=True)

        task = asyncio.create_task(pump())
        waiter = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        for t in (task, waiter):
            t.cancel()
        await asyncio.gather(task, waiter, return_exceptions=True)
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
        return 0

    return _client(args, work)


def _stats(args: argparse.Namespace) -> int:
    from ._display import StatsTable

    async def work(ctx) -> int:
        stats = await ctx.get_variable_stats(args.name)
        if args.json:
            print(json.dumps(stats, indent=2))
        else:
            print(repr(StatsTable(stats, args.name)))
        return 0

    return _client(args, work)


def _status(args: argparse.Namespace) -> int:
    from ._display import OptimizationStatus

    async def work(ctx) -> int:
        status = await ctx.get_optimization_status(args.name)
        if args.json:
            print(json.dumps(status, default=str, indent=2))
        else:
            trials = await ctx.get_optimization_history(args.name, limit=5)
            print(repr(OptimizationStatus(status, trials)))
        return 0

    return _client(args, work)


def _stop(args: argparse.Namespace) -> int:
    async def work(ctx) -> int:
        await ctx.stop_optimization(args.name)
        value = await ctx.get_variable(args.name, bypass_cache=True)
        print(f"{args.name}: stopped; value {value!r}")
        return 0

    return _client(args, work)


def _trials(args: argparse.Namespace) -> int:
    async def work(ctx) -> int:
        trials = await ctx.get_optimization_history(args.name, limit=args.limit)
        if args.json:
            print(json.dumps(trials, default=str))
            return 0
        if not trials:
            print(f"{args.name}: no trials")
        for t in trials:
            print(f"#{t['iteration']:<4} {t['value']!r:<14} {t['state']:<9} "
                  f"{t['objective'] if t['objective'] is not None else '-':<22} {t['optimization_id']}")
        return 0

    return _client(args, work)


def _history(args: argparse.Namespace) -> int:
    from ._display import HistoryTable

    async def work(ctx) -> int:
        entries = await ctx.get_variable_history(args.name, args.limit)
        if args.json:
            print(json.dumps([{**e, "value": _jsonable(e["value"])} for e in entries], default=str))
        else:
            print(repr(HistoryTable(args.name, entries)))
        return 0

    return _client(args, work)


def _rollback(args: argparse.Namespace) -> int:
    async def work(ctx) -> int:
        version = await ctx.rollback_variable(args.name, args.version, args.reason)
        print(f"{args.name}: version {version} = version {args.version}'s value")
        return 0

    return _client(args, work)


def _plot(args: argparse.Namespace) -> int:
    from .plotting.report import save_plot

    async def work(ctx) -> int:
        print(await save_plot(ctx, args.name, args.out, kind=args.kind, limit=args.limit))
        return 0

    return _client(args, work)


def _permissions(args: argparse.Namespace) -> int:
    from ._rules_text import check_line, permissions

    async def work(ctx) -> int:
        result = await permissions(ctx, args.name, args.rules, args.check, args.as_session)
        if args.check is not None:
            allowed, reason = result
            if args.json:
                print(json.dumps({"allowed": allowed, "reason": reason}))
            else:
                print(check_line(args.name, args.check, allowed, reason))
            return 0 if allowed else 3
        print(json.dumps(result.rules) if args.json else repr(result))
        return 0

    return _client(args, work)


def _dspy(args: argparse.Namespace) -> int:
    """Variables made by the DSPy integration (no dspy needed: it reads their metadata)."""
    from .dspy._listing import DSPyTable, dspy_rows

    async def work(ctx) -> int:
        rows = dspy_rows(await ctx.list_variables(None))
        if args.json:
            print(json.dumps([{**r, "value": _jsonable(r["value"])} for r in rows], default=str))
        else:
            print(repr(DSPyTable(rows)))
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
    serve.add_argument("--port", type=_port, default=DEFAULT_PORT,
                       help=f"port, 1-65535, or 0 for any free port (default: {DEFAULT_PORT})")
    store = serve.add_mutually_exclusive_group()
    store.add_argument("--db", default=None,
                       help="SQLite store file (default: the default store, $DSPEX_DB or "
                            "~/.local/share/dspex-notebook/store.sqlite3)")
    store.add_argument("--memory", action="store_true",
                       help="keep everything in memory (same as --backend memory)")
    serve.add_argument("--backend", choices=("sqlite", "memory", "etcd"), default="sqlite",
                       help="where the store lives: a SQLite file (default), memory, or etcd "
                            "(several servers over one store: docs/scale-out.md)")
    serve.add_argument("--etcd", default=None, metavar="HOST:PORT[,HOST:PORT...]",
                       help="etcd client endpoints, for --backend etcd")
    serve.add_argument("--etcd-prefix", default="/dspex/", metavar="PREFIX",
                       help="key prefix of the store in etcd (default: /dspex/)")
    serve.add_argument("--etcd-reads", choices=("linearizable", "local"), default="linearizable",
                       help="etcd: each request first waits for every write acknowledged "
                            "anywhere (linearizable, default), or reads this server's view as "
                            "its watch brought it (local: faster, may lag by the watch delay)")
    auth = serve.add_mutually_exclusive_group()
    auth.add_argument("--token-file", default=None,
                      help="file holding the bearer token (required for a non-loopback --host "
                           "unless --principals is given)")
    auth.add_argument("--principals", default=None, metavar="FILE",
                      help="YAML/JSON file of principals: name, token or token_file, the "
                           "session-name globs each may create or join (docs/server.md)")
    serve.add_argument("--retain-revisions", type=int, default=None, metavar="N",
                       help="keep the change log of the last N revisions and compact older ones "
                            "(default: keep all); watches further behind resync")
    serve.add_argument("--retain-seconds", type=float, default=None, metavar="S",
                       help="also compact what was committed more than S seconds ago (each "
                            "variable's newest version always stays)")
    serve.set_defaults(func=_serve)

    lst = sub.add_parser("list", help="show running servers (from their runtime files)")
    lst.add_argument("--json", action="store_true", help="machine-readable output (no tokens)")
    lst.set_defaults(func=_list)

    def client_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--session", default="default", help="session id (default: default)")
        p.add_argument("--db", default=None,
                       help="use the running server of this store file (default: the default "
                            "store; `dspex-notebook list` shows each server's store)")
        p.add_argument("--address", default=None, type=_addresses, metavar="HOST:PORT[,...]",
                       help="host:port of the server (instead of finding it by its store); "
                            "several, comma-separated: the first that answers, and the next "
                            "one when it goes away")
        p.add_argument("--token-file", default=None,
                       help="token for --address (default: the server's runtime file)")
        p.add_argument("-q", "--quiet", action="store_true",
                       help="do not say on stderr which session, server and store were used")

    vars_ = sub.add_parser("vars", help="list a session's variables")
    vars_.add_argument("pattern", nargs="?", default=None, help="glob on names")
    client_options(vars_)
    vars_.set_defaults(func=_vars)

    get = sub.add_parser("get", help="print variable values")
    get.add_argument("names", nargs="+", metavar="NAME")
    get.add_argument("--json", action="store_true",
                     help="one JSON object {name: value} (arrays as lists)")
    client_options(get)
    get.set_defaults(func=_get)

    set_ = sub.add_parser("set", help="set a variable (VALUE is read by its type)")
    set_.add_argument("name", metavar="NAME")
    set_.add_argument("value", metavar="VALUE",
                      help="text, taken as is for string/choice/module variables; YAML/JSON "
                           "for the others (0.7, true, [1, 2], {a: 1})")
    client_options(set_)
    set_.set_defaults(func=_set)

    watch = sub.add_parser("watch", help="print variable updates as they happen (until Ctrl-C)")
    watch.add_argument("names", nargs="+", metavar="NAME")
    watch.add_argument("--json", action="store_true", help="one JSON object per update")
    client_options(watch)
    watch.set_defaults(func=_watch)

    stats = sub.add_parser("stats", help="access statistics of a variable or the whole session")
    stats.add_argument("name", nargs="?", default=None, metavar="NAME")
    stats.add_argument("--json", action="store_true", help="machine-readable output")
    client_options(stats)
    stats.set_defaults(func=_stats)

    for name, func, text in (("status", _status, "the optimization run of a variable"),
                             ("stop", _stop, "stop a variable's optimization run"),
                             ("trials", _trials, "trials of a variable's optimization runs")):
        p = sub.add_parser(name, help=text)
        p.add_argument("name", metavar="NAME")
        p.add_argument("--json", action="store_true")
        if name == "trials":
            p.add_argument("--limit", type=int, default=100, help="the last N trials (default 100)")
        client_options(p)
        p.set_defaults(func=func)

    hist = sub.add_parser("history", help="a variable's versions, newest first")
    hist.add_argument("name", metavar="NAME")
    hist.add_argument("--limit", type=int, default=20, help="entries (default 20)")
    hist.add_argument("--json", action="store_true")
    client_options(hist)
    hist.set_defaults(func=_history)

    back = sub.add_parser("rollback", help="write an earlier version's value as a new version")
    back.add_argument("name", metavar="NAME")
    back.add_argument("version", type=int, metavar="VERSION")
    back.add_argument("--reason", default=None)
    client_options(back)
    back.set_defaults(func=_rollback)

    plot = sub.add_parser("plot", help="a PNG of a variable's optimization trials or values")
    plot.add_argument("name", metavar="NAME")
    plot.add_argument("--out", required=True, help="PNG file to write")
    plot.add_argument("--kind", choices=("trials", "values"), default="trials")
    plot.add_argument("--limit", type=int, default=1000, help="trials or versions (default 1000)")
    client_options(plot)
    plot.set_defaults(func=_plot)

    from ._cli_dependencies import add_commands

    add_commands(sub, client_options)

    perm = sub.add_parser("permissions", help="show, set or check a variable's access rules")
    perm.add_argument("name", metavar="NAME", help="a name of the session, or another's id")
    perm.add_argument("--set", dest="rules", default=None, metavar="RULES",
                      help="replace the rules (YAML/JSON): \"[{session_pattern: 'bob_*', "
                           "permissions: [read]}]\"; '[]' removes them (owning session only)")
    perm.add_argument("--check", default=None, metavar="PERMISSION",
                      choices=("read", "write", "observe", "optimize"),
                      help="is PERMISSION granted to the session (exit 0) or not (exit 3)?")
    perm.add_argument("--as", dest="as_session", default=None, metavar="SESSION",
                      help="with --check: judge for this session name (owning session only)")
    perm.add_argument("--json", action="store_true")
    client_options(perm)
    perm.set_defaults(func=_permissions)

    dspy_ = sub.add_parser("dspy", help="variables bound to DSPy programs (LM settings, results)")
    dspy_.add_argument("--json", action="store_true")
    client_options(dspy_)
    dspy_.set_defaults(func=_dspy)

    from ._cli_transfer import add_parsers

    add_parsers(sub, client_options, _client)

    for name, text in (("enable", "load the extension in every new IPython kernel"),
                       ("disable", "stop loading the extension in new kernels")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--sys-prefix", action="store_true",
                       help="this environment's config instead of the user's IPython profile")
        p.set_defaults(func=_enable)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import os

    from ._planned import COMMANDS, not_yet

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:  # a spec feature that is not built yet: say so
        print(f"dspex-notebook {argv[0]}: {not_yet(COMMANDS[argv[0]])}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    try:
        code = int(args.func(args))
        sys.stdout.flush()
    except BrokenPipeError:
        # the reader went away (`dspex-notebook vars | head`): not an error; point stdout at
        # devnull so the interpreter's final flush does not complain either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
