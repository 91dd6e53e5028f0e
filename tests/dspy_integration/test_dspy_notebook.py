"""notebooks/dspy.ipynb runs top to bottom in a fresh kernel, offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dspy_helpers import need_dspy

need_dspy()

REPO = Path(__file__).resolve().parents[2]


def test_dspy_notebook_runs_without_errors(tmp_path):
    env = dict(os.environ)  # DSPEX_DB / DSPEX_RUNTIME_DIR: the test's own (autouse fixture)
    env.update(IPYTHONDIR=str(tmp_path / "ipython"), JUPYTER_PLATFORM_DIRS="1",
               JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
               JUPYTER_DATA_DIR=str(tmp_path / "jupyter-data"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"))
    done = subprocess.run(
        [sys.executable, "scripts/run_notebook.py", "notebooks/dspy.ipynb", "--timeout", "120"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "all cells ran without errors" in out
    assert "LM received: {'temperature': 0.65, 'max_tokens': 128}" in out
    assert "has no module of that name here" in out  # TreeOfThought
    assert "'score': 1.0" in out  # the variable-aware BootstrapFewShot, on its valset
    best = float(out.rsplit("best temperature ", 1)[1].split()[0])  # the output, not the source
    assert abs(best - 0.7) < 0.1
