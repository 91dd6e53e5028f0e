"""notebooks/widgets.ipynb and notebooks/optimization.ipynb run top to bottom in a fresh kernel
(as CI does); scripts/make_live_notebooks.py writes them."""

from __future__ import annotations

import subprocess
import sys

import pytest
from test_nb_kernel import REPO, kernel_env, server_files  # noqa: F401 - kernel_env is a fixture


@pytest.mark.parametrize("notebook", ["widgets", "optimization"])
def test_live_notebook_runs_without_errors(kernel_env, notebook):  # noqa: F811
    done = subprocess.run(
        [sys.executable, "scripts/run_notebook.py", f"notebooks/{notebook}.ipynb", "--timeout", "60"],
        env=kernel_env, cwd=REPO, capture_output=True, text=True, timeout=200,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "all cells ran without errors" in done.stdout
    assert server_files() == []


def test_live_notebooks_are_generated_from_the_script():
    """The committed notebooks are what the script writes (edit the script, not the JSON)."""
    import nbformat

    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import make_live_notebooks as gen
    finally:
        sys.path.pop(0)
    for name, cells in (("widgets", gen.widgets), ("optimization", gen.optimization)):
        committed = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
        assert [c.source for c in committed.cells] == [c.source for c in cells], name
