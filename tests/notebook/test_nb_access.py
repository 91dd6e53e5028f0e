"""``%var permissions`` in a real InteractiveShell: show, set (YAML), check, one-line errors;
a second session of the same notebook reaches the variable by id where a rule allows it."""

from __future__ import annotations

import pytest
from IPython.utils.capture import capture_output
from nb_helpers import nb_session

from dspex_notebook.notebook.magics import DspexMagicError


def var(ip, line: str):
    return ip.run_line_magic("var", line)


def shown(ip, cell: str) -> tuple[object, str]:
    with capture_output() as out:
        result = ip.run_cell(cell)
    return result.error_in_exec, out.stdout + out.stderr


@pytest.fixture
def other(ext):
    """A second session (``reader``) on the same embedded server, in the notebook's loop."""
    s = nb_session(ext)
    from dspex_notebook import SessionContext

    ctx = s.portal.run(SessionContext.connect("reader", coherent_cache=False))
    yield s, ctx
    s.portal.run(ctx.close())


def test_permissions_show_set_check(other, ext):
    s, reader = other
    var(ext, "register secret integer 42")
    var_id = s.portal.run(s.context.get_variable_info("secret")).id
    table = var(ext, "permissions secret")
    assert "no rules" in repr(table)
    table = var(ext, "permissions secret --set \"[{session_pattern: 'read*', permissions: [read]}]\"")
    assert table.rules == [{"session_pattern": "read*", "permissions": ["read"], "conditions": {}}]
    assert "read*" in repr(table) and "<table class='dspex-rules'>" in table._repr_html_()
    assert s.portal.run(reader.get_variable(var_id)) == 42
    with capture_output() as out:
        assert var(ext, "permissions secret --check write --as reader") is False
    assert out.stdout.startswith("secret: write denied (no rule of variable")
    with capture_output() as out:
        assert var(ext, "permissions secret --check read --as reader") is True
    assert out.stdout.startswith("secret: read allowed (rule 0 ('read*')")
    var(ext, "permissions secret --set []")
    assert not s.portal.run(reader.check_variable_access(var_id, "read"))


@pytest.mark.parametrize("line, expected", [
    ("permissions secret --set '[{session_pattern: any, permissions: [fly]}]'",
     "unknown permission 'fly'"),
    ("permissions secret --set '[{session_pattern: any, permissions: [read], "
     "conditions: {weekday: mon}}]'", "unknown condition 'weekday'"),
    ("permissions secret --set '{a: [}'", "not valid YAML"),
    ("permissions secret --check fly", "unknown permission 'fly'"),
    ("permissions nothing", "Variable not found: 'nothing'"),
])
def test_permissions_errors_are_one_line(ext, line, expected):
    var(ext, "register secret integer 42")
    error, out = shown(ext, f"%var {line}")
    assert isinstance(error, DspexMagicError), out
    assert expected in out and out.count("\n") == 1, out
