"""Every notebook under notebooks/ runs top to bottom in a real kernel, as CI's users would run it
(`scripts/run_notebook.py`: a fresh store of its own, an embedded server, every output printed).

quickstart.ipynb has its own test with more checks (tests/notebook/test_nb_kernel.py); a new
notebook is picked up here by being committed, nothing else.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb") if p.name != "quickstart.ipynb")
#: notebooks that need a service: (what, is it here) — skipped locally without it, failed in CI
NEEDS = {"scale-out.ipynb": ("etcd (Debian package etcd-server)", lambda: shutil.which("etcd"))}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_runs_without_errors(notebook, kernel_env, requires):
    if notebook in NEEDS:
        what, available = NEEDS[notebook]
        requires(available() is not None, what)
    done = subprocess.run(
        [sys.executable, "scripts/run_notebook.py", f"notebooks/{notebook}", "--timeout", "120"],
        env=kernel_env, cwd=REPO, capture_output=True, text=True, timeout=280,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "all cells ran without errors" in done.stdout
