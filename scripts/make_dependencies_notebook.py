"""Write notebooks/dependencies.ipynb from the cells below (edit here, then run this script)."""

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = [
    new_markdown_cell(
        "# Dependencies between variables\n\n"
        "An edge `a → b` says *a depends on b*, with a type (`data`, `constraint`, "
        "`optimization`) and small metadata. The server keeps each session's graph, refuses "
        "cycles, refuses deleting what others depend on unless forced, and tells watchers "
        "when something upstream changed. (docs/api.md, \"Dependencies\".)"
    ),
    new_code_cell(
        "%config DspexMagics.session_id = \"dependencies\"\n"
        "%load_ext dspex_notebook\n"
        "import asyncio"
    ),
    new_markdown_cell(
        "## Declare them when registering, or add them later\n\n"
        "`dependencies=[...]` takes ids or names. Re-running this cell is fine: "
        "`replace=True` with dependencies replaces the variable's own edges."
    ),
    new_code_cell(
        "base = await session.register_variable(\"base_temperature\", \"float\", 0.7, replace=True)\n"
        "await session.register_variable(\"style\", \"choice\", \"creative\",\n"
        "                                {\"choices\": [\"precise\", \"creative\"]}, replace=True)\n"
        "await session.register_variable(\"effective_temperature\", \"float\", 0.9,\n"
        "                                dependencies=[base], replace=True)\n"
        "await session.register_variable(\"sampler\", \"module\", \"Predict\",\n"
        "                                dependencies=[\"effective_temperature\"], replace=True)\n"
        "await session.add_dependency(\"effective_temperature\", \"style\", \"constraint\",\n"
        "                             metadata={\"rule\": \"precise caps at 0.3\", \"weight\": 1})\n"
        "await session.get_dependencies(\"effective_temperature\")"
    ),
    new_markdown_cell("Transitive lists (breadth first, each variable once) show as tables:"),
    new_code_cell("%var deps sampler --transitive"),
    new_code_cell("%var deps base_temperature --dependents --transitive"),
    new_markdown_cell("`--graph` draws it: what a variable depends on to its left, what depends "
                      "on it to its right, arrows the way data flows, coloured by edge type."),
    new_code_cell("%var deps sampler --graph"),
    new_markdown_cell("## Cycles are refused, naming the cycle"),
    new_code_cell(
        "try:\n"
        "    await session.add_dependency(\"base_temperature\", \"sampler\")\n"
        "except ValueError as exc:\n"
        "    print(exc)"
    ),
    new_markdown_cell(
        "## Watch what a variable depends on\n\n"
        "`include_upstream=True`: a change of anything `sampler` depends on (directly or not) "
        "arrives marked with `upstream_of`."
    ),
    new_code_cell(
        "watch = session.watch_variable(\"sampler\", include_initial=False, include_upstream=True)\n"
        "await asyncio.sleep(0.5)   # let the watch start\n"
        "await session.set_variable(\"base_temperature\", 0.5)\n"
        "update = await asyncio.wait_for(watch.__anext__(), 10)\n"
        "await watch.aclose()\n"
        "print(f\"{update.name} changed to {update.value}, upstream of {update.upstream_of}\")"
    ),
    new_markdown_cell(
        "## Deleting what others depend on\n\n"
        "Refused, naming the dependents; `force=True` (`%var del --force`) deletes it and its "
        "edges in one commit."
    ),
    new_code_cell(
        "try:\n"
        "    await session.delete_variable(\"style\")\n"
        "except ValueError as exc:\n"
        "    print(exc)\n"
        "await session.delete_variable(\"style\", force=True)\n"
        "await session.get_dependencies(\"effective_temperature\")"
    ),
    new_markdown_cell("The same from a terminal (`dspex-notebook deps`, found through the "
                      "server's runtime file):"),
    new_code_cell(
        "import subprocess, sys\n"
        "print(subprocess.run([sys.executable, \"-m\", \"dspex_notebook\", \"deps\", \"sampler\",\n"
        "                      \"--transitive\", \"--session\", \"dependencies\", \"--quiet\"],\n"
        "                     capture_output=True, text=True, check=True).stdout)"
    ),
    new_code_cell("%unload_ext dspex_notebook"),
]

nb = new_notebook(cells=cells, metadata={
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
    "language_info": {"name": "python"},
})
nbformat.write(nb, "notebooks/dependencies.ipynb")
