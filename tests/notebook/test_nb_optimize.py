"""``%var optimize`` / ``status`` / ``stop`` in a real InteractiveShell, and the CLI's
``status`` / ``trials`` / ``stop``."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from IPython.core.error import UsageError
from nb_helpers import nb_session

from dspex_notebook import cli
from dspex_notebook._display import OptimizationStatus
from dspex_notebook.notebook.magics import DspexMagicError
from dspex_notebook.testing import running_server, session_for


def var(ip, line: str):
    return ip.run_line_magic("var", line)


def wait(ip, name: str):
    s = nb_session(ip)
    return s.portal.run(s.context.wait_optimization(name), timeout=60)


def test_optimize_status_and_stop(ext, capsys):
    var(ext, "register n integer 1 --min 0 --max 8")
    ext.user_ns["closeness"] = lambda n: -abs(n - 6)
    run_id = var(ext, 'optimize n --objective closeness --optimizer grid --config "{n_points: 9}"'
                 ' --no-panel')
    assert run_id.startswith("opt-") and "started" in capsys.readouterr().out
    assert wait(ext, "n") == "grid_exhausted"
    status = var(ext, "status n")
    assert isinstance(status, OptimizationStatus)
    assert status.status["best_value"] == 6 and "finished (grid_exhausted)" in repr(status)
    assert "#9" in repr(status) and "<div" in status._repr_html_()
    assert var(ext, "n") == 6  # the best value stays in the variable
    with pytest.raises(DspexMagicError, match="not being optimized"):
        var(ext, "stop n")


def test_stop_a_waiting_run_restores_the_value(ext, capsys):
    var(ext, "register t float 0.5 --min 0 --max 1")
    session = nb_session(ext)
    session.portal.run(session.context.start_optimization("t", "bayesian"))
    assert "waiting" in repr(var(ext, "status t"))
    var(ext, "stop t")
    assert "stopped; value 0.5" in capsys.readouterr().out


def test_optimize_usage_errors(ext):
    var(ext, "register u float 0.5 --min 0 --max 1")
    with pytest.raises(UsageError, match="--objective"):
        var(ext, "optimize u")
    with pytest.raises(DspexMagicError, match="NameError"):
        var(ext, "optimize u --objective no_such_function")
    ext.user_ns["not_callable"] = 3
    with pytest.raises(DspexMagicError, match="not a function"):
        var(ext, "optimize u --objective not_callable")
    ext.user_ns["f"] = lambda x: x
    with pytest.raises(DspexMagicError, match="mapping"):
        var(ext, "optimize u --objective f --config '[1, 2]'")
    with pytest.raises(DspexMagicError, match="nope"):
        var(ext, "optimize u --objective f --optimizer nope")
    with pytest.raises(UsageError, match="usage: %var status"):
        var(ext, "status")


def test_cli_status_trials_stop(capsys):
    with running_server(os.environ["DSPEX_DB"], write_runtime_file=True) as srv:
        async def run() -> None:
            async with session_for(srv, "default") as ctx:
                await ctx.register_variable("x", "float", 0.5, {"min": 0.0, "max": 1.0})
                await ctx.start_optimization("x", "grid", {"n_points": 3}, objective=lambda x: x)
                await ctx.wait_optimization("x")
                await ctx.start_optimization("x", "bayesian")  # no objective: waits

        asyncio.run(run())
        assert cli.main(["trials", "x", "--json"]) == 0
        trials = json.loads(capsys.readouterr().out)
        assert [t["value"] for t in trials] == [0.0, 0.5, 1.0]
        assert cli.main(["status", "x"]) == 0
        assert "bayesian run" in capsys.readouterr().out
        assert cli.main(["stop", "x"]) == 0
        assert "stopped; value 1.0" in capsys.readouterr().out
        assert cli.main(["status", "x", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["stop_reason"] == "stopped"
        assert cli.main(["stop", "x"]) == 1
        assert "not being optimized" in capsys.readouterr().err


def test_history_and_rollback_magics(ext, capsys):
    from dspex_notebook._display import HistoryTable

    var(ext, "register h integer 1")
    var(ext, "h = 2")
    var(ext, "h = 3")
    table = var(ext, "history h")
    assert isinstance(table, HistoryTable)
    assert [e["version"] for e in table.entries] == [2, 1, 0]
    assert repr(table).splitlines()[0].split()[:2] == ["version", "value"]
    assert "<table" in table._repr_html_()
    assert var(ext, "rollback h 0 --reason oops") == 3
    assert "version 3 = version 0's value" in capsys.readouterr().out
    assert var(ext, "h") == 1
    with pytest.raises(DspexMagicError, match="no version 9"):
        var(ext, "rollback h 9")
    with pytest.raises(UsageError):
        var(ext, "rollback h notanumber")


def test_cli_history_and_rollback(capsys):
    with running_server(os.environ["DSPEX_DB"], write_runtime_file=True) as srv:
        async def fill() -> None:
            async with session_for(srv, "default") as ctx:
                await ctx.register_variable("h", "string", "a")
                await ctx.set_variable("h", "b")

        asyncio.run(fill())
        assert cli.main(["history", "h", "--json"]) == 0
        assert [e["value"] for e in json.loads(capsys.readouterr().out)] == ["b", "a"]
        assert cli.main(["rollback", "h", "0", "--reason", "undo"]) == 0
        assert "version 2" in capsys.readouterr().out
        assert cli.main(["history", "h"]) == 0
        assert "rollback_to=0" in capsys.readouterr().out
        assert cli.main(["rollback", "h", "5"]) == 1
        assert "no version 5" in capsys.readouterr().err
