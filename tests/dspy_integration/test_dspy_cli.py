"""``dspex-notebook dspy``: the DSPy-bound variables of a session, from the shell."""

from __future__ import annotations

import asyncio
import json
import os

from dspy_helpers import need_dspy

dspy = need_dspy()

from dspex_notebook import cli  # noqa: E402
from dspex_notebook.dspy import DSPyOptimizationBridge  # noqa: E402
from dspex_notebook.testing import running_server, session_for  # noqa: E402


def test_cli_lists_parameters_and_results(capsys):
    with running_server(os.environ["DSPEX_DB"], write_runtime_file=True) as srv:  # the default store
        async def fill() -> None:
            async with session_for(srv, "default") as ctx:
                await ctx.register_variable("unrelated", "float", 1.0)
                bridge = DSPyOptimizationBridge(ctx)
                await bridge.sync_dspy_parameters(
                    dspy.Predict("question -> answer", temperature=0.25, max_tokens=10), "qa_",
                    follow=False)

        asyncio.run(fill())
        assert cli.main(["dspy"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split() == ["name", "type", "value", "role", "program", "target"]
        assert lines[2].split() == ["qa_temperature", "float", "0.25", "parameter", "qa",
                                    "self.config.temperature"]
        assert len(lines) == 4
        assert cli.main(["dspy", "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert [r["name"] for r in rows] == ["qa_temperature", "qa_max_tokens"]
        assert rows[1]["value"] == 10 and rows[1]["target"] == "self.config.max_tokens"
        assert cli.main(["dspy", "--session", "nobody"]) == 1  # reads never create a session
        assert "nobody" in capsys.readouterr().err
