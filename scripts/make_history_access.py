"""Write notebooks/history-and-access.ipynb from the cells below (edit here, then run this script).

Sections: history and rollback, revisions, export/import, dependencies, access control.
"""

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


def md(text: str):
    return new_markdown_cell(text)


def code(text: str):
    return new_code_cell(text)


cells = [
    md("# History, revisions, export/import and access\n\n"
       "Every write to a variable is kept as a version (within the server's retention) and "
       "gets a store-wide **revision**. This notebook shows what you can do with them: look "
       "back, roll back, read the whole session as it was, restore it, and move variables "
       "between sessions and stores as files."),
    code("%config DspexMagics.session_id = \"history-demo\"\n"
         "%load_ext dspex_notebook\n"
         "import json, tempfile, pathlib\n"
         "import numpy as np\n"
         "await session.cleanup(); await session.initialize()   # a clean session on every run\n"
         "tmp = pathlib.Path(tempfile.mkdtemp())"),
    md("## History and rollback\n\n"
       "`get_variable_history` lists a variable's versions newest first, with who wrote each "
       "and when; `rollback_variable` writes an old value as a **new** version (history is "
       "append-only), with the reason in its metadata."),
    code("await session.register_variable(\"temperature\", \"float\", 0.7,\n"
         "                                 constraints={\"min\": 0.0, \"max\": 2.0},\n"
         "                                 metadata={\"description\": \"sampling temperature\"})\n"
         "for t in (0.9, 1.4, 1.9):\n"
         "    await session.set_variable(\"temperature\", t, metadata={\"experiment\": str(t)})\n"
         "%var history temperature"),
    code("await session.rollback_variable(\"temperature\", 1, reason=\"1.9 diverged\")\n"
         "%var history temperature --limit 2"),
    md("## Revisions\n\n"
       "Note a revision (from `ping()`, `session.last_revision`, or a history entry's "
       "`revision`), change things, then read the session **as it was** with "
       "`get_variables(..., at_revision=R)` — one consistent snapshot from the server's change "
       "log. `restore_session(R)` puts every variable back as ONE new revision: variables "
       "changed since get their old value, deleted ones come back, and variables created after "
       "`R` are deleted (their history stays, so the restore itself can be undone)."),
    code("await session.register_variables([\n"
         "    dict(name=\"model\", type=\"choice\", initial_value=\"gpt-4\",\n"
         "         constraints={\"choices\": [\"gpt-4\", \"claude-3\", \"gemini\"]}),\n"
         "    dict(name=\"settings\", type=\"dict\", initial_value={\"retries\": 3, \"backoff\": [0.5, 1.0]}),\n"
         "    dict(name=\"embedding\", type=\"embedding\", initial_value=np.linspace(0, 1, 4, dtype=np.float32)),\n"
         "])\n"
         "good = (await session.ping())[\"revision\"]\n"
         "await session.update_variables({\"temperature\": 0.2, \"model\": \"gemini\"})\n"
         "await session.delete_variable(\"settings\")\n"
         "await session.register_variable(\"scratch\", \"integer\", 42)\n"
         "print(\"now:     \", await session.get_variables([\"temperature\", \"model\"]))\n"
         "print(f\"at {good}:\", await session.get_variables([\"temperature\", \"model\", \"settings\"], at_revision=good))"),
    code("%var restore {good} --dry-run"),
    code("summary = await session.restore_session(good)\n"
         "print(summary[\"set\"], summary[\"recreated\"], summary[\"deleted\"], \"-> revision\", summary[\"revision\"])\n"
         "%var"),
    md("## Export/import\n\n"
       "`export_variables` writes the session (types, values, constraints, metadata, versions, "
       "and with `include_history=True` each variable's history) as one document in `json`, "
       "`yaml`, `parquet` or `pickle`; `filter_pattern` is a regular expression on names. "
       "Arrays keep their dtype, shape and every bit."),
    code("doc = json.loads(await session.export_variables(\"json\", include_history=True))\n"
         "[(v[\"name\"], v[\"type\"], v[\"version\"], len(v[\"history\"])) for v in doc[\"variables\"]]"),
    code("print((await session.export_variables(\"yaml\", filter_pattern=r\"^temp\")).decode())"),
    code("%var export {tmp}/backup.yaml --history\n"
         "%var export {tmp}/backup.parquet\n"
         "%var export {tmp}/backup.pkl"),
    md("Import into another session. A **dry run** reports what would happen per variable and "
       "changes nothing; the real import is one write (one revision, all or nothing)."),
    code("from dspex_notebook import SessionContext\n"
         "other = await SessionContext.connect(\"history-demo-copy\")\n"
         "await other.cleanup(); await other.initialize()\n"
         "await other.register_variable(\"settings\", \"dict\", {\"retries\": 5, \"timeout\": 30})\n"
         "data = (tmp / \"backup.yaml\").read_bytes()\n"
         "dry = await other.import_variables(data, \"yaml\", dry_run=True)\n"
         "[(d[\"name\"], d[\"action\"], d[\"reason\"]) for d in dry[\"details\"]]"),
    md("Merge strategies decide what happens to a variable that exists: `replace` (the file "
       "wins), `keep` (the session's stays), `merge` (dicts merged key by key, lists united, "
       "other types take the file's value; the session's type and constraints stay)."),
    code("for strategy in (\"keep\", \"merge\"):\n"
         "    s = await other.import_variables(data, \"yaml\", merge_strategy=strategy, dry_run=True)\n"
         "    print(strategy, {d[\"name\"]: d[\"action\"] for d in s[\"details\"]})\n"
         "await other.import_variables(data, \"yaml\", merge_strategy=\"merge\")\n"
         "await other.get_variable(\"settings\")   # the file's keys win, `timeout` stays"),
    code("parquet = await other.import_variables((tmp / \"backup.parquet\").read_bytes(), \"parquet\", dry_run=True)\n"
         "print(\"parquet:\", parquet[\"imported\"], \"imported,\", parquet[\"skipped\"], \"skipped\")\n"
         "try:\n"
         "    await other.import_variables((tmp / \"backup.pkl\").read_bytes(), \"pickle\")\n"
         "except ValueError as exc:\n"
         "    print(\"pickle:\", exc)\n"
         "plain = await other.import_variables((tmp / \"backup.pkl\").read_bytes(), \"pickle\",\n"
         "                                     allow_pickle=True, dry_run=True)   # plain data only, never code\n"
         "print(\"pickle with allow_pickle:\", plain[\"errors\"], \"errors\")"),
    code("%var import {tmp}/backup.yaml --strategy keep --dry-run"),
    md("## Dependencies\n\n"
       "A variable can depend on others (`data`, `constraint` or `optimization` edges). Cycles are "
       "refused with the cycle named; deleting a variable others depend on is refused unless forced; "
       "export/import carries the graph."),
    code("await session.register_variable(\"base_lr\", \"float\", 0.1, replace=True)\n"
         "await session.register_variable(\"warmup\", \"integer\", 100, replace=True)\n"
         "await session.register_variable(\"schedule\", \"dict\", {\"lr\": 0.1, \"warmup\": 100},\n"
         "                                dependencies=[\"base_lr\", \"warmup\"], replace=True)\n"
         "[(d[\"name\"], d[\"type\"]) for d in await session.get_dependencies(\"schedule\")]"),
    code("try:\n"
         "    await session.add_dependency(\"base_lr\", \"schedule\")\n"
         "except ValueError as exc:\n"
         "    print(exc)"),
    code("%var deps base_lr --dependents"),
    code("%var deps schedule --graph"),
    md("## Access control\n\n"
       "The owning session has every permission; another session reaches a variable by its id, "
       "and only where a rule allows it."),
    code("from dspex_notebook import AccessDenied\n"
         "lr_id = (await session.get_variable_info(\"base_lr\")).id\n"
         "try:\n"
         "    await other.get_variable(lr_id)\n"
         "except AccessDenied as exc:\n"
         "    print(\"refused:\", exc)\n"
         "await session.set_variable_permissions(\n"
         "    \"base_lr\", [{\"session_pattern\": \"history-demo-*\", \"permissions\": [\"read\"]}])\n"
         "print(\"read by id:\", await other.get_variable(lr_id))\n"
         "print(\"may write?\", await other.check_variable_access(lr_id, \"write\"))"),
    code("%var permissions base_lr"),
    code("await other.close()\n%unload_ext dspex_notebook"),
]

nb = new_notebook(cells=cells, metadata={
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
    "language_info": {"name": "python"},
})
nbformat.write(nb, "notebooks/history-and-access.ipynb")
