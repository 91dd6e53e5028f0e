"""``dspex-notebook plot``: static PNGs of a variable's trials or values (the figure's data is
checked in test_wg_plotting; here the command, its file and its one-line errors)."""

from __future__ import annotations

import asyncio
import os

from dspex_notebook import cli
from dspex_notebook.testing import running_server, session_for

PNG = b"\x89PNG\r\n\x1a\n"


def test_cli_plot_trials_and_values(tmp_path, capsys):
    with running_server(os.environ["DSPEX_DB"], write_runtime_file=True) as srv:
        async def run() -> None:
            async with session_for(srv, "default") as ctx:
                await ctx.register_variable("x", "float", 0.5, {"min": 0.0, "max": 1.0})
                await ctx.start_optimization("x", "grid", {"n_points": 5}, objective=lambda x: x)
                await ctx.wait_optimization("x")
                await ctx.register_variable("y", "integer", 1)
                await ctx.set_variable("y", 4)

        asyncio.run(run())
        out = tmp_path / "x.png"
        assert cli.main(["plot", "x", "--out", str(out)]) == 0
        assert "5 trials of run opt-" in capsys.readouterr().out
        assert out.read_bytes().startswith(PNG)
        values = tmp_path / "y.png"
        assert cli.main(["plot", "y", "--kind", "values", "--out", str(values)]) == 0
        assert "2 versions" in capsys.readouterr().out and values.read_bytes().startswith(PNG)
        assert cli.main(["plot", "y", "--out", str(tmp_path / "none.png")]) == 1
        err = capsys.readouterr().err
        assert "no optimization trials" in err.splitlines()[-1] and "Traceback" not in err
        assert cli.main(["plot", "nope", "--out", str(tmp_path / "n.png")]) == 1
        assert "VariableNotFoundError" in capsys.readouterr().err


def test_plot_variable_history_figure_data():
    import datetime as dt

    from dspex_notebook.plotting.report import plot_variable_history

    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    entries = [{"version": v, "value": val, "updated_at": t0 + dt.timedelta(seconds=10 * v),
                "revision": v + 1} for v, val in ((2, 3.0), (0, 1.0), (1, 2.5))]
    fig = plot_variable_history("lr", entries)
    line = fig.axes[0].lines[0]
    assert list(line.get_xdata()) == [0.0, 10.0, 20.0] and list(line.get_ydata()) == [1.0, 2.5, 3.0]
