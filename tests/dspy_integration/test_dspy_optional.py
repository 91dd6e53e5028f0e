"""The core works without dspy: nothing imports it until the integration is used."""

from __future__ import annotations

import subprocess
import sys

BLOCK_DSPY = "import sys; sys.modules['dspy'] = None\n"  # `import dspy` now raises ImportError


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_core_and_cli_do_not_import_dspy():
    done = _run(
        "import sys\n"
        "import dspex_notebook, dspex_notebook.cli, dspex_notebook.dspy\n"
        "from dspex_notebook.dspy import _knobs\n"
        "assert 'dspy' not in sys.modules, 'dspy was imported'\n"
        "print('ok')\n")
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_using_the_integration_without_dspy_says_how_to_install_it():
    done = _run(BLOCK_DSPY +
                "import dspex_notebook.dspy as d\n"
                "try:\n"
                "    d.DSPyOptimizationBridge\n"
                "except ImportError as exc:\n"
                "    print(exc)\n")
    assert done.returncode == 0, done.stderr
    assert "pip install 'dspex-notebook[dspy]'" in done.stdout


def test_a_session_works_with_dspy_blocked():
    done = _run(BLOCK_DSPY +
                "import asyncio\n"
                "from dspex_notebook.testing import running_server, session_for\n"
                "async def main(srv):\n"
                "    async with session_for(srv, 'no-dspy') as s:\n"
                "        await s.register_variable('t', 'float', 0.5)\n"
                "        print(await s.get_variable('t'))\n"
                "with running_server() as srv:\n"
                "    asyncio.run(main(srv))\n")
    assert done.returncode == 0 and done.stdout.strip() == "0.5", done.stderr
