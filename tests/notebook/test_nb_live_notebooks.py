"""notebooks/widgets.ipynb and notebooks/optimization.ipynb are what
scripts/make_live_notebooks.py writes (edit the script, not the JSON). Running them is
tests/notebook/test_notebooks.py's job, as for every notebook."""

from __future__ import annotations

import pathlib
import sys

import nbformat

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_live_notebooks_are_generated_from_the_script():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import make_live_notebooks as gen
    finally:
        sys.path.pop(0)
    for name, cells in (("widgets", gen.widgets), ("optimization", gen.optimization)):
        committed = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
        assert [c.source for c in committed.cells] == [c.source for c in cells], name
