"""The ``%var`` / ``%%var`` magics. They parse, call library code on the IO thread, and display.

Settings are traitlets (``%config DspexMagics.timeout = 5``; set connection options *before*
``%load_ext``). Domain errors (bad value, unknown variable, ...) are shown as one readable line;
unexpected errors keep their traceback.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any, NoReturn

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from traitlets import Bool, Float, Unicode

from .._display import VariableTable
from .._errors import DspexError, VariableExistsError, a_or_an
from .._planned import COMMANDS as PLANNED
from .._planned import not_yet
from . import commands
from .connect_magics import USAGE as CONNECT_USAGE
from .connect_magics import ConnectMagics
from .io_magics import USAGE as TRANSFER_USAGE
from .io_magics import TransferMagics

USAGE = """\
%var                                  list the session's variables (table)
%var list [PATTERN]                   list variables whose names match a glob
%var NAME                             the value (from the cache when fresh)
%var info NAME                        everything about a variable (type, version, constraints)
%var NAME = EXPR                      set; EXPR is evaluated in the notebook namespace
%var register NAME TYPE VALUE [--min X] [--max X] [--step X] [--choices a,b]
                                      [--constraints JSON] [--description TEXT] [--replace]
%var del NAME [NAME ...] [--force]    delete variables (stops at the first error); --force
                                      also when others depend on them (those edges go too)
%var watch NAME [NAME ...]            a live display of the variables, updated as they change
%var unwatch [NAME ...]               stop live displays (all, or those showing NAME)
%var widget NAME [NAME ...] [--throttle-ms N] [--on-release]
                                      controls bound both ways (alias: %var slider)
%var stats [NAME]                     access statistics (server counts + this client's cache)
%var cache [--ttl S] [--max-size N] [--policy lru|lfu|fifo]
                                      show (or change) this client's cache
%var history NAME [--limit N]         the variable's versions, newest first
%var history NAME --scrubber          a slider over the versions with a Restore button
%var rollback NAME VERSION [--reason TEXT]
                                      write VERSION's value as a new version
%var deps NAME [--transitive] [--dependents]
                                      what NAME depends on (or what depends on it), a table
%var deps NAME --graph                a figure: dependencies left, dependents right, all depths
%var deps NAME --add OTHER [--type data|constraint|optimization] [--metadata JSON]
                                      NAME depends on OTHER from now on (cycles are refused)
%var deps NAME --remove OTHER         NAME no longer depends on OTHER
%var permissions NAME [--set RULES] [--check PERMISSION [--as SESSION]]
                                      show / set (YAML: [{session_pattern: 'bob_*', permissions:
                                      [read]}], [] for none) / check a variable's access rules
""" + TRANSFER_USAGE + CONNECT_USAGE + """\
%var optimize NAME --objective FUNC [--optimizer bayesian] [--max-iterations N] [--config YAML]
                                      start a server-held run; FUNC(value) -> float or dict;
                                      shows its live panel (--no-panel: just the run id)
%var optimize NAME                    the live panel of NAME's current (or last) run
%var status NAME                      the variable's optimization run
%var stop NAME                        stop it (the best value found stays)
%var dspy [list|sync PROGRAM [--prefix P]|push PROGRAM|pull PROGRAM]
                                      DSPy programs' LM settings as variables (%var dspy help)
%var help [COMMAND]                   this list, or one command's lines
%%var [--replace]                     register/update many variables from a YAML block, atomically:
    temperature: {type: float, value: 0.7, constraints: {min: 0, max: 2}}
    max_tokens: 512
"""


SUBCOMMANDS = ("list", "info", "register", "del", "delete", "rm", "watch", "unwatch", "stats",
               "cache", "optimize", "status", "stop", "history", "rollback", "deps", "export",
               "import", "restore", "permissions", "dspy", "help", "widget", "slider",
               "connect")
#: what completion offers after ``%var `` (aliases left out)
COMPLETED = ("list", "info", "register", "del", "watch", "unwatch", "stats", "cache", "optimize",
             "status", "stop", "history", "rollback", "deps", "export", "import", "restore",
             "permissions", "dspy", "help", "widget", "connect")


def _help(topic: str) -> str:
    """The USAGE lines of one command (``%var help register``)."""
    if topic in PLANNED:
        return f"%var {topic}: {not_yet(PLANNED[topic])}"
    key = {"delete": "del", "rm": "del", "%%var": "%%var", "cell": "%%var"}.get(topic, topic)
    if key in SUBCOMMANDS:
        lines = USAGE.splitlines()
        prefix = "%%var" if key == "%%var" else f"%var {key}"
        block: list[str] = []
        for i, line in enumerate(lines):
            if line.startswith(prefix + " ") or line == prefix:  # every form of the command
                block.append(line)
                for more in lines[i + 1:]:  # continuation lines are indented
                    if not more.startswith(" "):
                        break
                    block.append(more)
        if block:
            return "\n".join(block)
    return (f"%var help: no command {topic!r}; the commands are: {', '.join(COMPLETED)} "
            "(`%var help` shows them all)")


class DspexMagicError(UsageError):
    """A domain error from a magic, shown as one line instead of a traceback."""

    def _render_traceback_(self) -> list[str]:
        # IPython prints the short form only for `type(exc) is UsageError`; a subclass would get
        # the full traceback, which is what this class exists to avoid.
        return [str(self)]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse would sys.exit()
        raise UsageError(f"{self.prog}: {message}\n\n{USAGE}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise UsageError(message or USAGE)


def _register_parser() -> _Parser:
    p = _Parser(prog="%var register", add_help=False)
    p.add_argument("name")
    p.add_argument("type")
    p.add_argument("value", nargs="+", help="Python expression (or literal text for strings)")
    p.add_argument("--min")
    p.add_argument("--max")
    p.add_argument("--step")
    p.add_argument("--choices", help="comma-separated")
    p.add_argument("--constraints", help="JSON object")
    p.add_argument("--description")
    p.add_argument("--replace", action="store_true")
    return p


@magics_class
class DspexMagics(TransferMagics, ConnectMagics, Magics):
    """``%var`` magics bound to one session (see :data:`USAGE`)."""

    address = Unicode(None, allow_none=True,
                      help="host:port of a server, or several comma-separated (the first that "
                           "answers; the next when it goes away); default: find or start one"
                      ).tag(config=True)
    token = Unicode(None, allow_none=True, help="bearer token for `address`").tag(config=True)
    token_file = Unicode(None, allow_none=True, help="file holding the bearer token").tag(config=True)
    session_id = Unicode("default", help="server-side session to use").tag(config=True)
    namespace_name = Unicode("session", help="name of the session object in the notebook").tag(config=True)
    db = Unicode(None, allow_none=True, help="store file for an embedded server").tag(config=True)
    start_server = Bool(True, help="start an embedded server when none is found").tag(config=True)
    timeout = Float(10.0, help="seconds a magic waits for the server").tag(config=True)
    quiet = Bool(False, help="do not print which server and session %load_ext connected to, "
                             "nor the confirmation of `%var NAME = EXPR`").tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.notebook_session: Any = None  # set by the extension
        self.views: list[Any] = []  # live displays of %var watch

    # ------------------------------------------------------------------------------------------

    def _run(self, coro: Any, prefix: str = "") -> Any:
        try:
            return self.notebook_session.portal.run(coro, self.timeout)
        except DspexError as exc:
            raise DspexMagicError(prefix + magic_text(exc)) from None
        except TimeoutError as exc:
            raise DspexMagicError(f"the server did not answer within {self.timeout} s: {exc}") from None

    @property
    def _ctx(self) -> Any:
        if self.notebook_session is None:
            raise UsageError("dspex_notebook is not connected; run %load_ext dspex_notebook")
        return self.notebook_session.context

    def _eval(self, expr: str) -> Any:
        if self.shell is None:
            raise UsageError("dspex_notebook magics need an IPython shell")
        return self.shell.ev(expr)

    @line_cell_magic
    def var(self, line: str, cell: str | None = None) -> Any:
        """Work with the session's variables. ``%var help`` shows the commands."""
        if cell is not None:
            return self._cell(line, cell)
        text = line.strip()
        if not text:
            return self.list_variables("")
        if text in ("help", "-h", "--help", "?"):
            print(USAGE)
            return None
        if commands.NAME_RE.match(text) and text not in SUBCOMMANDS and text not in PLANNED:
            return self.get_value(text)  # the hot path: %var NAME
        assign = commands.ASSIGN_RE.match(text)
        if assign:
            return self.set_variable(assign.group(1), assign.group(2))
        first, *after = text.split(None, 1)
        if first == "register":  # before shlex: VALUE is a Python expression, keep its quotes
            return self.register(after[0] if after else "")
        if first in PLANNED:
            raise DspexMagicError(f"%var {first}: {not_yet(PLANNED[first])}")
        try:
            words = shlex.split(text)
        except ValueError as exc:
            raise UsageError(f"%var: {exc}") from None
        head, rest = words[0], words[1:]
        if head == "help":
            if len(rest) > 1:
                raise UsageError("usage: %var help [COMMAND]")
            print(_help(rest[0]))
            return None
        if head == "list":
            if len(rest) > 1:
                raise UsageError("%var list takes at most one PATTERN")
            return self.list_variables(rest[0] if rest else "")
        if head == "info":
            if len(rest) != 1:
                raise UsageError("usage: %var info NAME")
            return self._run(self._ctx.get_variable_info(rest[0]))
        if head == "watch":
            if not rest:
                raise UsageError("usage: %var watch NAME [NAME ...]")
            return self.watch(rest)
        if head == "unwatch":
            return self.unwatch(rest)
        if head in ("widget", "slider"):
            return self.widget(head, rest)
        if head == "stats":
            if len(rest) > 1:
                raise UsageError("usage: %var stats [NAME]")
            return self.stats(rest[0] if rest else None)
        if head == "cache":
            return self.cache(rest)
        if head == "optimize":
            return self.optimize(rest)
        if head == "history":
            return self.history(rest)
        if head == "dspy":  # the optional DSPy integration (dspex_notebook/dspy/_magic.py)
            from ..dspy._magic import USAGE as DSPY_USAGE
            from ..dspy._magic import dspy_command

            if rest[:1] == ["help"]:
                print(DSPY_USAGE)
                return None
            return dspy_command(self, rest)
        if head == "rollback":
            return self.rollback(rest)
        if head == "deps":
            return self.deps(rest)
        if head == "export":
            return self.export(rest)
        if head == "import":
            return self.import_(rest)
        if head == "restore":
            return self.restore(rest)
        if head == "permissions":
            return self.permissions(rest)
        if head == "connect":
            return self.connect(rest)
        if head in ("status", "stop"):
            if len(rest) != 1:
                raise UsageError(f"usage: %var {head} NAME")
            return self.status(rest[0]) if head == "status" else self.stop(rest[0])
        if head in ("del", "delete", "rm"):
            force = "--force" in rest
            names = [w for w in rest if w != "--force"]
            if not names:
                raise UsageError("usage: %var del NAME [NAME ...] [--force]")
            for name in names:
                self._run(self._ctx.delete_variable(name, force=force))
            return None
        if len(words) != 1:
            raise UsageError(f"%var: unknown command {head!r}\n\n{USAGE}")
        return self.get_value(head)

    # ------------------------------------------------------------------------------------------

    def get_value(self, name: str) -> Any:
        from .._cache import MISS

        value = self._ctx.cached_value(name)  # a hit never crosses threads
        if value is not MISS:
            return value
        # we just missed: don't look again on the IO thread (it would count a second miss)
        return self._run(self._ctx.get_variable(name, bypass_cache=True))

    def list_variables(self, pattern: str) -> VariableTable:
        return VariableTable(self._run(self._ctx.list_variables(pattern or None)))

    def _type_of(self, name: str) -> str:
        """The variable's type: known to this client, else asked (one round trip, which also
        reports a missing variable before EXPR is evaluated)."""
        known = commands.known_type(self._ctx, name)
        if known is not None:
            return known
        return str(self._run(self._ctx.get_variable_info(name)).type)

    def _value(self, name: str, type_name: str, expr: str, where: str,
               what: str = "EXPR") -> Any:
        """EXPR evaluated for a variable of ``type_name``; bare text for string/choice/module
        variables (``%var mode = medium``); a bad expression is one line."""
        try:
            return commands.value_from_text(type_name, expr, self._eval)
        except SyntaxError as exc:
            raise DspexMagicError(
                f"{where}: {expr!r} is not a Python expression ({exc.msg}); {what} is evaluated "
                f"in the notebook, e.g. 0.5, [1, 2] or the name of a notebook variable") from None
        except NameError as exc:
            raise DspexMagicError(
                f"{where}: {exc} ({what} is a Python expression evaluated in the notebook; "
                f"{name!r} is {a_or_an(type_name)} variable)") from None

    def set_variable(self, name: str, expr: str) -> None:
        if not expr:
            raise UsageError(f"%var {name} = EXPR: nothing after '='")
        where = f"%var {name} = {expr}"
        value = self._value(name, self._type_of(name), expr, where)
        version = self._run(self._ctx.set_variable(
            name, value, metadata={"source": "python", "via": "%var"}))
        if not self.quiet:
            print(f"{name} = {_short(value)} (version {version})")

    def watch(self, names: list[str]) -> Any:
        from .live import LiveView

        bad = [n for n in names if not commands.NAME_RE.match(n)]
        if bad:
            raise UsageError(f"%var watch: not variable names: {', '.join(bad)}")
        if self.notebook_session is None:
            raise UsageError("dspex_notebook is not connected; run %load_ext dspex_notebook")
        view = LiveView(self.notebook_session, names)
        self.views.append(view)
        return view

    def widget(self, head: str, argv: list[str]) -> Any:
        from .panels import widget_panel

        if self.notebook_session is None:
            raise UsageError("dspex_notebook is not connected; run %load_ext dspex_notebook")
        panel = widget_panel(self.notebook_session, argv, f"%var {head}")
        self.views.append(panel)  # %var unwatch and unloading the extension stop it
        return panel

    def unwatch(self, names: list[str]) -> None:
        stopped = [v for v in self.views if not names or set(names) & set(v.names)]
        if not stopped:
            what = ", ".join(names) if names else "anything"
            print(f"%var unwatch: no live display of {what}")
            return
        for view in stopped:
            view.stop()
            self.views.remove(view)

    def stop_views(self) -> None:
        for view in self.views:
            view.stop()
        self.views.clear()

    def stats(self, name: str | None) -> Any:
        from .._display import StatsTable

        return StatsTable(self._run(self._ctx.get_variable_stats(name)), name)

    def cache(self, argv: list[str]) -> dict[str, Any]:
        p = _Parser(prog="%var cache", add_help=False)
        p.add_argument("--ttl", type=float)
        p.add_argument("--max-size", type=int)
        p.add_argument("--policy", choices=("lru", "lfu", "fifo"))
        ns = p.parse_args(argv)
        if ns.ttl is not None or ns.max_size is not None or ns.policy is not None:
            try:
                self._ctx.set_cache_config(ns.ttl, ns.max_size, ns.policy)
            except ValueError as exc:
                raise DspexMagicError(f"%var cache: {exc}") from None
        return self._ctx.get_cache_info()

    def history(self, argv: list[str]) -> Any:
        from .._display import HistoryTable

        p = _Parser(prog="%var history", add_help=False)
        p.add_argument("name")
        p.add_argument("--limit", type=int, default=20)
        p.add_argument("--scrubber", action="store_true", help="a slider over the versions")
        ns = p.parse_args(argv)
        if ns.scrubber:
            from .panels import history_scrubber

            scrubber = history_scrubber(self.notebook_session, ns.name, ns.limit, self.timeout)
            self.views.append(scrubber)
            return scrubber
        return HistoryTable(ns.name, self._run(self._ctx.get_variable_history(ns.name, ns.limit)))

    def rollback(self, argv: list[str]) -> int:
        p = _Parser(prog="%var rollback", add_help=False)
        p.add_argument("name")
        p.add_argument("version", type=int)
        p.add_argument("--reason", default=None)
        ns = p.parse_args(argv)
        version = self._run(self._ctx.rollback_variable(ns.name, ns.version, ns.reason))
        print(f"{ns.name}: version {version} = version {ns.version}'s value")
        return version

    def deps(self, argv: list[str]) -> Any:
        """``%var deps``: a :class:`~.._display.DependencyTable`, or add/remove one edge."""
        from .._display import DependencyTable

        p = _Parser(prog="%var deps", add_help=False)
        p.add_argument("name")
        p.add_argument("--transitive", action="store_true")
        p.add_argument("--dependents", action="store_true")
        p.add_argument("--add", metavar="OTHER")
        p.add_argument("--remove", metavar="OTHER")
        p.add_argument("--type", default="data")
        p.add_argument("--metadata", default=None)
        p.add_argument("--graph", action="store_true")
        ns = p.parse_args(argv)
        if ns.graph:  # a picture of both directions, all depths (plotting/graph.py)
            from IPython.display import Image

            from ..plotting.graph import dependency_figure
            from ..plotting.render import png

            ups = self._run(self._ctx.get_dependencies(ns.name, True))
            downs = self._run(self._ctx.get_dependents(ns.name, True))
            return Image(data=png(dependency_figure(ns.name, ups, downs)), format="png")
        if ns.add and ns.remove:
            raise UsageError("%var deps: --add or --remove, not both")
        if ns.add:
            try:
                metadata = commands.dependency_metadata(ns.metadata)
            except DspexError as exc:
                raise DspexMagicError(f"%var deps: {exc}") from None
            self._run(self._ctx.add_dependency(ns.name, ns.add, ns.type, metadata))
            print(f"{ns.name} depends on {ns.add} ({ns.type})")
            return None
        if ns.remove:
            self._run(self._ctx.remove_dependency(ns.name, ns.remove))
            print(f"{ns.name} no longer depends on {ns.remove}")
            return None
        method = self._ctx.get_dependents if ns.dependents else self._ctx.get_dependencies
        return DependencyTable(ns.name, self._run(method(ns.name, ns.transitive)),
                               ns.dependents, ns.transitive)
    def permissions(self, argv: list[str]) -> Any:
        """``%var permissions NAME``: the rules table; ``--set RULES`` (YAML) replaces them;
        ``--check PERMISSION [--as SESSION]`` prints whether it is granted and why."""
        from .._rules_text import check_line
        from .._rules_text import permissions as run

        p = _Parser(prog="%var permissions", add_help=False)
        p.add_argument("name")
        p.add_argument("--set", dest="rules", default=None)
        p.add_argument("--check", default=None, metavar="PERMISSION")
        p.add_argument("--as", dest="as_session", default=None, metavar="SESSION")
        ns = p.parse_args(argv)
        result = self._run(run(self._ctx, ns.name, ns.rules, ns.check, ns.as_session))
        if ns.check is not None:
            allowed, reason = result
            print(check_line(ns.name, ns.check, allowed, reason))
            return allowed
        return result

    def optimize(self, argv: list[str]) -> Any:
        import yaml

        p = _Parser(prog="%var optimize", add_help=False)
        p.add_argument("name")
        p.add_argument("--objective", help="a function in the notebook namespace")
        p.add_argument("--optimizer", default="bayesian")
        p.add_argument("--max-iterations", type=int, default=100)
        p.add_argument("--config", default=None, help="YAML/JSON mapping")
        p.add_argument("--no-panel", action="store_true", help="print the run id, no live panel")
        ns = p.parse_args(argv)
        if ns.objective is None:  # show the panel of the variable's current (or last) run
            from .panels import optimization_panel

            panel = optimization_panel(self.notebook_session, ns.name, self.timeout)
            self.views.append(panel)
            return panel
        try:
            objective = self._eval(ns.objective)
        except Exception as exc:
            raise DspexMagicError(f"%var optimize: --objective {ns.objective}: {type(exc).__name__}: "
                                  f"{exc}") from None
        if not callable(objective):
            raise DspexMagicError(f"%var optimize: --objective {ns.objective} is not a function")
        try:
            config = yaml.safe_load(ns.config) if ns.config else {}
        except yaml.YAMLError as exc:
            raise DspexMagicError(f"%var optimize: --config is not YAML: {exc}") from None
        if not isinstance(config, dict):
            raise DspexMagicError("%var optimize: --config must be a mapping, e.g. '{direction: minimize}'")
        run_id = self._run(self._ctx.start_optimization(
            ns.name, ns.optimizer, config, ns.max_iterations, objective=objective))
        print(f"{ns.name}: {ns.optimizer} run {run_id} started (%var status {ns.name}, "
              f"%var stop {ns.name})")
        if ns.no_panel:
            return run_id
        from ..widgets import OptimizationPanel

        panel = OptimizationPanel(self.notebook_session, ns.name)
        self.views.append(panel)  # %var unwatch NAME stops refreshing it
        return panel

    def status(self, name: str) -> Any:
        from .._display import OptimizationStatus

        status = self._run(self._ctx.get_optimization_status(name))
        trials = self._run(self._ctx.get_optimization_history(name, limit=5)) if status.get(
            "optimization_id") else []
        return OptimizationStatus(status, trials)

    def stop(self, name: str) -> None:
        self._run(self._ctx.stop_optimization(name))
        value = self._run(self._ctx.get_variable(name, bypass_cache=True))
        print(f"{name}: stopped; value {value!r}")

    def register(self, text: str) -> str:
        try:
            argv = commands.register_argv(text)
        except ValueError as exc:
            raise UsageError(f"%var register: {exc}") from None
        ns = _register_parser().parse_args(argv)
        try:
            type_name = commands.canonical_type(ns.type)
            constraints = commands.constraints_from_options(
                type_name, min=ns.min, max=ns.max, step=ns.step, choices=ns.choices,
                constraints=ns.constraints,
            )
        except DspexError as exc:
            raise DspexMagicError(f"{type(exc).__name__}: {exc}") from None
        value = self._value(ns.name, type_name, " ".join(ns.value), "%var register", "VALUE")
        metadata = {"description": ns.description} if ns.description else None
        return self._run(self._ctx.register_variable(
            ns.name, type_name, value, constraints, metadata, replace=ns.replace))

    def _cell(self, line: str, cell: str) -> dict[str, str]:
        try:
            options = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"%%var: {exc}") from None
        replace = "--replace" in options
        unknown = [o for o in options if o != "--replace"]
        if unknown:
            raise UsageError(f"%%var: unknown options {unknown} (only --replace)")
        try:
            block = commands.read_block(cell)
        except DspexError as exc:
            raise DspexMagicError(magic_text(exc)) from None
        registrations = block.registrations
        if not registrations and not block.update_nodes:  # empty/comment-only: no new revision
            return {}
        for spec in registrations:
            spec["replace"] = replace
        # updates are read by their variables' types (`mode: off` for a choice stays "off")
        types = {name: commands.known_type(self._ctx, name) for name in block.update_nodes}
        unknown = [name for name, t in types.items() if t is None]
        if unknown:
            found = self._run(self._ctx.get_variables(
                unknown, defaults=dict.fromkeys(unknown), include_metadata=True),
                prefix="nothing was applied: ")
            for name in unknown:
                info = found[name]["metadata"]
                types[name] = info["type"] if info else None
        return self._run(
            self._ctx.apply_batch(registrations, block.updates(types),
                                  metadata={"source": "python", "via": "%%var"}),
            prefix="nothing was applied: ")




def magic_text(exc: DspexError) -> str:
    """One line for a domain error, in the magics' words (``--replace``, not ``replace=True``)."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, VariableExistsError):
        text = text.replace("register with replace=True", "add --replace")
    return text.replace("delete with force=True", "%var del --force")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _completions(line: str) -> list[str] | None:
    """What to offer for the ``%var`` line typed so far (``None``: not ours to complete, e.g.
    the Python expression after ``=``)."""
    from .extension import current_session

    stripped = line.lstrip()
    head = stripped.split(None, 1)[0] if stripped else ""
    if head not in ("%var", "%%var"):
        return None
    words = stripped.split()
    if "=" in stripped:  # `%var NAME = EXPR`: Python's completers know EXPR
        return None
    session = current_session()
    names = session.known_names() if session is not None else []
    if len(words) <= 1 or (len(words) == 2 and not line.endswith(" ")):
        return list(COMPLETED if head == "%var" else ()) + names
    return names


def complete_var(shell: Any, event: Any) -> list[str]:
    """IPython ``complete_command`` hook for ``%var`` (the legacy completion API)."""
    return _completions(event.line) or []


def var_matcher(context: Any) -> dict[str, Any]:
    """IPython completion matcher (API v2) for ``%var``: sub-commands and the variable names
    this client has seen (no round trip), and nothing else — it suppresses the other
    matchers, so Jedi's Python keywords (``in``, ``is``, ``and``) are not offered."""
    from IPython.core.completer import SimpleCompletion

    line = context.line_with_cursor[: context.cursor_position]
    offered = _completions(line)
    token = context.token
    matches = [w for w in offered or () if w.startswith(token)]
    return {"completions": [SimpleCompletion(w, type="dspex") for w in matches],
            "suppress": bool(matches)}


var_matcher.matcher_api_version = 2  # type: ignore[attr-defined]
var_matcher.matcher_identifier = "dspex_notebook.var_matcher"  # type: ignore[attr-defined]
