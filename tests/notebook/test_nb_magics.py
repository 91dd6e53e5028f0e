"""Every ``%var`` / ``%%var`` form in a real ``InteractiveShell``, against the embedded server
that ``%load_ext dspex_notebook`` starts on the test's own SQLite store.

Wrong arguments raise ``UsageError`` with a useful message; domain errors raise
``DspexMagicError`` (a UsageError) shown as one line; unexpected errors keep their exception.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from nb_helpers import EXT, nb_session, server_revision

from dspex_notebook import SessionContext
from dspex_notebook._display import VariableTable
from dspex_notebook._errors import VariableNotFoundError
from dspex_notebook.notebook import NotebookSession
from dspex_notebook.notebook.magics import USAGE, DspexMagicError


def var(ip, line: str):
    return ip.run_line_magic("var", line)


def cell(ip, body: str, line: str = ""):
    return ip.run_cell_magic("var", line, body)


def fresh(ip, name: str):
    """The value on the server (not from this client's cache)."""
    s = nb_session(ip)
    return s.portal.run(s.context.get_variable(name, bypass_cache=True))


def names(ip) -> list[str]:
    return [v.name for v in var(ip, "").variables]


@pytest.fixture
def temp(ext):
    """The shell with ``temperature`` (float 0.7 in [0, 2]) registered."""
    var(ext, "register temperature float 0.7 --min 0 --max 2")
    return ext


# ---------------------------------------------------------------------------------------------
# %var NAME / list / info / help


def test_get_value_cache_hit_and_miss(temp):
    session = nb_session(temp)
    session.set_cache_config(ttl=300)
    before = session.get_cache_info()
    assert var(temp, "temperature") == 0.7  # registered -> cached: a hit
    after = session.get_cache_info()
    assert (after["hits"], after["misses"]) == (before["hits"] + 1, before["misses"])

    session.set_cache_config(ttl=0)  # every read goes to the server
    assert var(temp, "temperature") == 0.7
    missed = session.get_cache_info()
    assert missed["misses"] == after["misses"] + 1 and missed["hits"] == after["hits"]


def test_get_value_of_a_missing_variable_is_a_one_line_domain_error(ext):
    with pytest.raises(DspexMagicError) as info:
        var(ext, "nosuch")
    assert isinstance(info.value, UsageError)
    assert str(info.value) == "VariableNotFoundError: Variable not found: 'nosuch' in session 'default'"


def test_table_and_list_with_pattern(temp):
    var(temp, "register top_k integer 40 --min 1")
    var(temp, "register temp_scale float 1.5")
    table = var(temp, "")
    assert isinstance(table, VariableTable)
    assert [v.name for v in table.variables] == ["temperature", "top_k", "temp_scale"]
    text = repr(table)
    assert text.splitlines()[0].split() == ["name", "type", "value", "version", "constraints"]
    assert text.splitlines()[2].split() == ["temperature", "float", "0.7", "0", "max=2.0,", "min=0.0"]
    assert "<table" in table._repr_html_() and "<code>top_k</code>" in table._repr_html_()
    assert table._repr_markdown_().startswith("| name | type |")

    assert [v.name for v in var(temp, "list temp*").variables] == ["temperature", "temp_scale"]
    assert len(var(temp, "list nothing*")) == 0
    assert repr(var(temp, "list nothing*")) == "(no variables)"
    assert [v.name for v in var(temp, "list").variables] == ["temperature", "top_k", "temp_scale"]


def test_empty_session_table(ext):
    table = var(ext, "")
    assert len(table) == 0 and repr(table) == "(no variables)"
    assert table._repr_html_() == "<em>(no variables)</em>"


def test_info(temp):
    var(temp, "temperature = 0.9")
    info = var(temp, "info temperature")
    assert (info.name, info.type, info.value, info.version) == ("temperature", "float", 0.9, 1)
    assert info.constraints == {"min": 0.0, "max": 2.0}
    with pytest.raises(DspexMagicError, match="^VariableNotFoundError: .*'nosuch' in session 'default'$"):
        var(temp, "info nosuch")


def test_help_prints_usage(ext, capsys):
    for line in ("help", "--help", "-h", "?"):
        assert var(ext, line) is None
        assert capsys.readouterr().out.strip() == USAGE.strip()
    assert "%var register NAME TYPE VALUE" in USAGE


# ---------------------------------------------------------------------------------------------
# %var NAME = EXPR


def test_assignment_evaluates_in_the_user_namespace(temp):
    temp.user_ns["base"] = 0.25
    assert var(temp, "temperature = base * 2 + 0.5") is None
    assert fresh(temp, "temperature") == 1.0
    assert var(temp, "temperature") == 1.0  # and the client cache holds the new value
    var(temp, "register stops list ['###']")
    temp.user_ns["extra"] = "END"
    var(temp, "stops = ['###', extra]")
    assert fresh(temp, "stops") == ["###", "END"]
    assert var(temp, "info temperature").version == 1


def test_assignment_domain_error_is_one_line_and_changes_nothing(temp):
    with pytest.raises(DspexMagicError) as info:
        var(temp, "temperature = 5")
    assert str(info.value).startswith("ConstraintViolation: 'temperature'")
    assert "\n" not in str(info.value)
    assert fresh(temp, "temperature") == 0.7
    with pytest.raises(DspexMagicError, match="VariableNotFoundError"):
        var(temp, "nosuch = 1")


def test_assignment_unexpected_errors_keep_their_exception(temp):
    with pytest.raises(ZeroDivisionError):  # the user's own expression failed: its traceback
        var(temp, "temperature = 1 / 0")
    assert fresh(temp, "temperature") == 0.7


def test_assignment_with_nothing_after_equals(temp):
    for line in ("temperature =", "temperature =   "):
        with pytest.raises(UsageError, match=r"nothing after '='") as info:
            var(temp, line)
        assert type(info.value) is UsageError


# ---------------------------------------------------------------------------------------------
# %var register


def test_register_with_every_option(ext):
    ext.user_ns["np"] = np
    ext.user_ns["greeting"] = "hello"
    assert var(ext, "register top_k integer 40 --min 1 --max 100 --step 1 --description 'sampling k'"
               ).startswith("var_top_k")
    info = var(ext, "info top_k")
    assert (info.type, info.value) == ("integer", 40)
    assert info.constraints == {"min": 1, "max": 100, "step": 1}
    assert info.metadata["description"] == "sampling k"

    var(ext, "register model choice gpt-4 --choices gpt-4,claude-3,gemini")  # literal text
    assert var(ext, "info model").constraints == {"choices": ["gpt-4", "claude-3", "gemini"]}
    assert fresh(ext, "model") == "gpt-4"

    var(ext, "register agg choice max --choices min,max")  # `max` is a builtin: still literal
    assert fresh(ext, "agg") == "max"
    var(ext, "register prompt string Be concise, please.")  # several words, not an expression
    assert fresh(ext, "prompt") == "Be concise, please."
    var(ext, "register label string 42")
    assert fresh(ext, "label") == "42"
    var(ext, "register who string greeting")  # an expression naming a str: its value
    assert fresh(ext, "who") == "hello"
    var(ext, "register stops list ['###', \"END\"] --description 'stop words'")  # quotes kept
    assert fresh(ext, "stops") == ["###", "END"]
    var(ext, 'register settings dict {"retries": 3, "backoff": [0.5, 1.0]}')
    assert fresh(ext, "settings") == {"retries": 3, "backoff": [0.5, 1.0]}
    var(ext, 'register flag string "use --verbose" --description x')  # `--` inside quotes is VALUE
    assert fresh(ext, "flag") == "use --verbose"
    var(ext, "register strategy module ChainOfThought --choices Predict,ChainOfThought")
    assert fresh(ext, "strategy") == "ChainOfThought"

    var(ext, 'register emb embedding np.ones(4, dtype=np.float32) --constraints \'{"dimensions": 4}\'')
    emb = fresh(ext, "emb")
    assert isinstance(emb, np.ndarray) and emb.dtype == np.float32 and emb.tolist() == [1.0] * 4
    assert var(ext, "info emb").constraints["dimensions"] == 4

    var(ext, "register temperature float 0.7")
    with pytest.raises(DspexMagicError, match="^VariableExistsError: .*temperature"):
        var(ext, "register temperature float 0.8")
    var(ext, "register temperature float 0.8 --max 1 --replace")
    assert fresh(ext, "temperature") == 0.8
    assert var(ext, "info temperature").constraints == {"max": 1.0}


@pytest.mark.parametrize(("line", "error", "message"), [
    ("register", UsageError, "the following arguments are required: name, type, value"),
    ("register x float", UsageError, "the following arguments are required: value"),
    ("register x float 1 --bogus 2", UsageError, "unrecognized arguments: --bogus"),
    ("register x float 1 --min abc", DspexMagicError, "InvalidArgument: --min must be a number, got 'abc'"),
    ("register x integer 1 --max 1e", DspexMagicError, "--max must be a number"),
    ("register x float 1 --constraints {bad", DspexMagicError, "--constraints is not valid JSON"),
    ("register x float 1 --constraints [1]", DspexMagicError, "--constraints must be a JSON object"),
    ("register x weird 1", DspexMagicError, "unknown variable type 'weird'"),
    ("register x float 5 --max 1", DspexMagicError, "ConstraintViolation: 'x'"),
    ("register x integer 'text'", DspexMagicError, "VariableTypeError"),
    ("register 'bad name' float 1", DspexMagicError, "InvalidArgument"),
    ("register 'unclosed float 1", UsageError, "No closing quotation"),
    ("register x float 1 --description 'oops", UsageError, "No closing quotation"),
    ("frobnicate a b", UsageError, "unknown command 'frobnicate'"),
    ("a == 1", UsageError, "unknown command 'a'"),
    ("info", UsageError, "usage: %var info NAME"),
    ("info a b", UsageError, "usage: %var info NAME"),
    ("del", UsageError, r"usage: %var del NAME \[NAME ...\]"),
    ("list a b", UsageError, "takes at most one PATTERN"),
])
def test_wrong_arguments(ext, line, error, message):
    revision = server_revision(ext)
    with pytest.raises(error, match=message) as info:
        var(ext, line)
    if error is UsageError:
        assert type(info.value) is UsageError  # IPython shows these without a traceback
    else:
        assert "\n" not in str(info.value)  # one line
    assert names(ext) == [] and server_revision(ext) == revision  # nothing was written


def test_register_with_an_undefined_name_for_a_number_is_one_line(ext):
    with pytest.raises(DspexMagicError) as info:
        var(ext, "register y float undefined_name")
    assert str(info.value) == (
        "%var register: name 'undefined_name' is not defined (VALUE is a Python expression "
        "evaluated in the notebook; 'y' is a float variable)")
    assert names(ext) == []


# ---------------------------------------------------------------------------------------------
# %var del


def test_delete(temp):
    var(temp, "register a integer 1")
    var(temp, "register b integer 2")
    assert var(temp, "del a b") is None
    assert names(temp) == ["temperature"]
    with pytest.raises(DspexMagicError, match="VariableNotFoundError"):
        var(temp, "a")  # not answered from a stale cache entry
    with pytest.raises(DspexMagicError, match="^VariableNotFoundError: .*nosuch"):
        var(temp, "del nosuch")
    var(temp, "rm temperature")
    assert names(temp) == []


# ---------------------------------------------------------------------------------------------
# %%var


BLOCK = """\
temperature: {type: float, value: 0.5, constraints: {min: 0, max: 2}, description: sampling}
max_tokens:
  type: integer
  value: 256
  constraints: {min: 1, max: 4096}
  metadata: {owner: me}
stop_words: {type: list, value: ['###', END]}
"""


def test_cell_registers_and_updates(ext):
    assert cell(ext, BLOCK) == {"temperature": "registered", "max_tokens": "registered",
                                "stop_words": "registered"}
    info = var(ext, "info max_tokens")
    assert (info.value, info.constraints, info.metadata["owner"]) == (256, {"min": 1, "max": 4096}, "me")
    assert var(ext, "info temperature").metadata["description"] == "sampling"
    assert fresh(ext, "stop_words") == ["###", "END"]

    revision = server_revision(ext)
    assert cell(ext, "temperature: 1.25\nmax_tokens: 512\n") == {"temperature": "updated",
                                                                 "max_tokens": "updated"}
    assert server_revision(ext) == revision + 1  # one batch, one revision
    assert (fresh(ext, "temperature"), fresh(ext, "max_tokens")) == (1.25, 512)
    assert var(ext, "temperature") == 1.25  # the batch invalidated the cached 0.5

    # mixed, and --replace re-registers
    out = cell(ext, "temperature: {type: float, value: 0.1, constraints: {max: 1}}\nmax_tokens: 8\n",
               "--replace")
    assert out == {"temperature": "registered", "max_tokens": "updated"}
    assert var(ext, "info temperature").constraints == {"max": 1.0}


def test_cell_update_of_a_variable_this_client_has_not_seen(ext):
    cell(ext, "temperature: {type: float, value: 0.5}")
    ext.run_line_magic("reload_ext", "dspex_notebook")  # a new client: knows nothing yet
    assert cell(ext, "temperature: 1") == {"temperature": "updated"}  # an int for a float
    assert fresh(ext, "temperature") == 1.0


def test_empty_cell_writes_nothing(ext):
    revision = server_revision(ext)
    assert cell(ext, "# nothing here\n") == {}
    assert server_revision(ext) == revision


@pytest.mark.parametrize(("body", "message"), [
    # local checks
    ("new_var: {type: float, value: 1}\ntemperature: [unclosed",
     r"^InvalidArgument: %%var block is not valid YAML \(line 2, column 23\): expected"),
    ("- a\n- b\n", "must be a YAML mapping of variable names"),
    ("new_var: {type: float, value: 1, colour: red}", r"unknown keys \['colour'\]"),
    ("new_var: {type: float}", "a registration needs a 'value'"),
    ("new_var: {type: weird, value: 1}", "unknown variable type 'weird'"),
    ("new_var: {type: float, value: 1}\n1: 2", "variable names must be strings"),
    ("new_var: {type: float, value: 5, constraints: {max: 1}}\ntemperature: 1.0",
     "^nothing was applied: ConstraintViolation: 'new_var'"),
    ("new_var: {type: float, value: 1}\ntemperature: 9", "^nothing was applied: ConstraintViolation"),
    # found by the server, inside the transaction
    ("new_var: {type: float, value: 1}\nnosuch: 1", "^nothing was applied: VariableNotFoundError"),
    ("new_var: {type: float, value: 1}\ntemperature: {type: float, value: 1}",
     "^nothing was applied: VariableExistsError"),
])
def test_cell_is_atomic_one_bad_entry_applies_nothing(temp, body, message):
    revision = server_revision(temp)
    with pytest.raises(DspexMagicError, match=message) as info:
        cell(temp, body)
    assert "\n" not in str(info.value)
    assert server_revision(temp) == revision
    assert names(temp) == ["temperature"]
    assert fresh(temp, "temperature") == 0.7


def test_cell_options(ext):
    with pytest.raises(UsageError, match=r"unknown options \['--force'\] \(only --replace\)"):
        cell(ext, "a: 1", "--force")
    with pytest.raises(UsageError, match="No closing quotation"):
        cell(ext, "a: 1", '"oops')
    with pytest.raises(UsageError, match="cell body is empty"):  # IPython's own check
        cell(ext, "")


# ---------------------------------------------------------------------------------------------
# how errors look in a cell


def test_errors_as_shown_in_a_cell(temp):
    with capture_output() as out:
        result = temp.run_cell("%var nosuch")
    assert isinstance(result.error_in_exec, DspexMagicError)
    assert out.stdout + out.stderr == (
        "VariableNotFoundError: Variable not found: 'nosuch' in session 'default'\n")

    with capture_output() as out:
        result = temp.run_cell("%var info")
    assert type(result.error_in_exec) is UsageError
    assert out.stdout == "" and out.stderr == "UsageError: usage: %var info NAME\n"

    with capture_output() as out:  # an error in the user's own expression keeps its traceback
        result = temp.run_cell("%var temperature = 1 / 0")
    assert isinstance(result.error_in_exec, ZeroDivisionError)
    assert "Traceback" in out.stdout + out.stderr or "Cell In" in out.stdout + out.stderr


# ---------------------------------------------------------------------------------------------
# `session` in cells (top-level await)


def test_await_session_methods_in_cells(temp):
    cells = [
        "v = await session.get_variable('temperature')",
        "await session.set_variable('temperature', 1.5)",
        "fresh = await session.get_variable('temperature', bypass_cache=True)",
        "info = await session.get_variable_info('temperature')",
        "listed = [v.name for v in await session.list_variables()]",
        "await session.register_variable('k', 'integer', 3, constraints={'min': 0})",
        "many = await session.get_variables(['temperature', 'k'])",
        "result = await session.update_variables({'temperature': 0.3, 'k': 4})",
        "missing = await session.get_variable('nope', default='fallback')",
    ]
    for code in cells:
        result = temp.run_cell(code)
        assert result.error_in_exec is None, (code, result.error_in_exec)
    ns = temp.user_ns
    assert (ns["v"], ns["fresh"], ns["info"].version) == (0.7, 1.5, 1)
    assert ns["listed"] == ["temperature"]
    assert ns["many"] == {"temperature": 1.5, "k": 3}
    assert ns["result"] == {"temperature": True, "k": True}
    assert ns["missing"] == "fallback"
    assert var(temp, "k") == 4

    result = temp.run_cell("await session.get_variable('nope')")
    assert isinstance(result.error_in_exec, VariableNotFoundError)  # cells get real exceptions
    assert isinstance(result.error_in_exec, KeyError)


def test_session_proxy_offers_every_public_coroutine_method(ext):
    session = nb_session(ext)
    assert isinstance(session, NotebookSession) and session.session_id == "default"
    public = {n for n, f in inspect.getmembers(SessionContext, inspect.iscoroutinefunction)
              if not n.startswith("_") and n != "connect"}
    missing = sorted(n for n in public
                     if not inspect.iscoroutinefunction(getattr(NotebookSession, n, None)))
    assert not missing
    for name in public - {"get_variable"}:  # forwarded with the same signature
        assert inspect.signature(getattr(NotebookSession, name)) == inspect.signature(
            getattr(SessionContext, name))
    # and every other public method/property (watches, cache, status) has its twin too
    everything = {n for n in dir(SessionContext) if not n.startswith("_")} - {"connect"}
    assert not sorted(everything - set(dir(NotebookSession)))
    assert "dspex-io" in repr(session)


# ---------------------------------------------------------------------------------------------
# tab completion


# IPython's documented test entry point `Completer.complete` warns that it will be replaced
# by the (provisional) `completions` API; the warning is IPython's, not ours.
@pytest.mark.filterwarnings("ignore:`Completer.complete` is pending deprecation:PendingDeprecationWarning")
def test_tab_completion(temp):
    var(temp, "register top_k integer 3")
    complete = temp.Completer.complete
    assert complete(line_buffer="%var te") == ("te", ["temperature"])
    assert complete(line_buffer="%var info te") == ("te", ["temperature"])
    assert complete(line_buffer="%var del t") == ("t", ["temperature", "top_k"])
    assert complete(line_buffer="%var r") == ("r", ["register", "restore", "rollback"])
    assert complete(line_buffer="%%var te") == ("te", ["temperature"])
    _, offered = complete(line_buffer="%var ")
    assert {"list", "info", "register", "del", "help", "temperature", "top_k"} <= set(offered)


@pytest.mark.filterwarnings("ignore:`Completer.complete` is pending deprecation:PendingDeprecationWarning")
def test_tab_completion_knows_existing_variables_right_after_load(ext):
    var(ext, "register seen_before float 1.0")
    ext.run_line_magic("reload_ext", EXT)  # a new client: it has not read anything yet
    assert ext.Completer.complete(line_buffer="%var seen")[1] == ["seen_before"]
