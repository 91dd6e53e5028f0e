"""Execute a notebook top to bottom in a fresh kernel and print what each cell shows.

    python scripts/run_notebook.py notebooks/quickstart.ipynb [--timeout 120] [--save OUT] [--db FILE]

The kernel works on a fresh store of its own (a temporary SQLite file, removed afterwards), so
every run starts from nothing and the user's default store is never touched; ``--db FILE``
uses (and keeps) that store instead. Exits non-zero (with the failing cell's traceback) if any
cell raises. Used by `make demo` and by the notebook tests.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def show(nb: nbformat.NotebookNode) -> None:
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        print(f"\n--- In [{i}]:\n{cell.source}")
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                print(out.text, end="")
            elif out.output_type in ("execute_result", "display_data"):
                print(out.get("data", {}).get("text/plain", ""))
            elif out.output_type == "error":
                print("\n".join(out.traceback))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook")
    parser.add_argument("--timeout", type=int, default=180, help="seconds per cell")
    parser.add_argument("--save", help="write the executed notebook here")
    parser.add_argument("--db", help="store for the notebook's kernel (default: a fresh "
                                     "temporary one, removed afterwards)")
    args = parser.parse_args()
    nb = nbformat.read(args.notebook, as_version=4)
    client = NotebookClient(nb, timeout=args.timeout, kernel_name="python3")
    with tempfile.TemporaryDirectory(prefix="dspex-demo-") as scratch:
        # the kernel inherits the environment: its embedded server opens this store
        os.environ["DSPEX_DB"] = os.path.abspath(args.db) if args.db else os.path.join(
            scratch, "store.sqlite3")
        print(f"store for this run: {os.environ['DSPEX_DB']}"
              + ("" if args.db else " (fresh, removed afterwards)"))
        try:
            client.execute()
            ok = True
        except CellExecutionError as exc:
            ok = False
            error = exc
    show(nb)
    if args.save:
        nbformat.write(nb, args.save)
    if not ok:
        print(f"\nnotebook failed: {error.ename}: {error.evalue}", file=sys.stderr)
        return 1
    print(f"\n{args.notebook}: all cells ran without errors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
