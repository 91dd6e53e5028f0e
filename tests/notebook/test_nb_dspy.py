"""``%var dspy`` in a real InteractiveShell: sync a DSPy program, follow, push, list."""

from __future__ import annotations

import os
import time

import pytest
from nb_helpers import nb_session

from dspex_notebook.dspy import available
from dspex_notebook.notebook.magics import DspexMagicError

if not available():  # require(...) at module level (tests/conftest.py): fail in CI, skip here
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail("the dspy extra is required in CI but is not installed", pytrace=False)
    pytest.skip("the dspy extra is not installed (pip install 'dspex-notebook[dspy]')",
                allow_module_level=True)


def var(ip, line: str):
    return ip.run_line_magic("var", line)


def test_sync_push_pull_and_list(ext, capsys):
    ext.run_cell("import dspy\n"
                 "from dspex_notebook.dspy.testing import FakeEngine\n"
                 "engine = FakeEngine()\n"
                 "cot = dspy.ChainOfThought('question -> answer', temperature=0.3, max_tokens=64)")
    mappings = var(ext, "dspy sync cot --prefix cot_")
    assert mappings == {"cot_temperature": "predict.config.temperature",
                        "cot_max_tokens": "predict.config.max_tokens"}
    assert "cot_temperature <-> cot.predict.config.temperature" in capsys.readouterr().out
    table = var(ext, "dspy")
    assert [r["name"] for r in table.rows] == ["cot_temperature", "cot_max_tokens"]
    assert "predict.config.temperature" in repr(table) and "<table>" in table._repr_html_()

    var(ext, "cot_temperature = 1.2")  # the program follows (watch on the IO thread)
    cot = ext.user_ns["cot"]
    for _ in range(300):  # bounded
        if cot.predict.config["temperature"] == 1.2:
            break
        time.sleep(0.01)
    assert cot.predict.config["temperature"] == 1.2
    ext.run_cell("with dspy.context(lm=engine.lm()):\n    cot(question='q')")
    assert ext.user_ns["engine"].last["temperature"] == 1.2

    ext.run_cell("cot.predict.update_config(max_tokens=128)")
    assert var(ext, "dspy push cot") == {"cot_max_tokens": 128}
    assert "cot_max_tokens = 128" in capsys.readouterr().out
    session = nb_session(ext)
    assert session.portal.run(session.context.get_variable("cot_max_tokens", bypass_cache=True)) == 128
    assert var(ext, "dspy pull cot") == {"cot_temperature": 1.2, "cot_max_tokens": 128}


def test_dspy_usage_errors_are_one_line(ext, capsys):
    with pytest.raises(DspexMagicError, match="NameError"):
        var(ext, "dspy sync no_such_program")
    ext.run_cell("import dspy\nplain = dspy.Predict('a -> b')")
    with pytest.raises(DspexMagicError, match="was not synced"):
        var(ext, "dspy push plain")
    with pytest.raises(DspexMagicError, match="unknown command 'frobnicate'"):
        var(ext, "dspy frobnicate")
    with pytest.raises(DspexMagicError, match="unknown knobs"):
        var(ext, "dspy sync plain --knobs warmth")
    var(ext, "dspy help")
    assert "%var dspy sync PROGRAM" in capsys.readouterr().out
    var(ext, "help dspy")
    assert capsys.readouterr().out.startswith("%var dspy [list|sync PROGRAM")
    assert "no DSPy-bound variables" in repr(var(ext, "dspy list"))
