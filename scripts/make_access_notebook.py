"""Write notebooks/access.ipynb from the cells below (edit here, then run this script)."""

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = [
    new_markdown_cell(
        "# Access control: one session grants another\n\n"
        "A session always has every permission on its own variables. Variable ids are global: "
        "another session reaches a variable **by its id** where one of the variable's rules "
        "allows it (`read`, `write`, `observe`, `optimize`; docs/api.md \"Permissions\"). Here "
        "the notebook's `session` (`owner`) shares a variable with a second session, `reader`."
    ),
    new_code_cell(
        "%config DspexMagics.session_id = \"owner\"\n"
        "%load_ext dspex_notebook\n"
        "from dspex_notebook import AccessDenied, SessionContext\n\n"
        "var_id = await session.register_variable(\"api_key\", \"string\", \"s3cret\", replace=True)\n"
        "reader = await SessionContext.connect(\"reader\")   # a second session, same server\n"
        "var_id"
    ),
    new_markdown_cell("Without a rule, the other session gets nothing, not even by id:"),
    new_code_cell(
        "try:\n"
        "    await reader.get_variable(var_id)\n"
        "except AccessDenied as err:\n"
        "    print(\"refused:\", err)"
    ),
    new_markdown_cell(
        "Grant `read` and `observe` to sessions whose name matches `read*` (a name is a right: "
        "with a principals file, only principals whose session globs allow `read*` can use such "
        "a session):"
    ),
    new_code_cell(
        "%var permissions api_key --set \"[{session_pattern: 'read*', permissions: [read, observe]}]\""
    ),
    new_code_cell(
        "print(await reader.get_variable(var_id))\n"
        "print(\"write?\", await reader.check_variable_access(var_id, \"write\"))\n"
        "try:\n"
        "    await reader.set_variable(var_id, \"stolen\")\n"
        "except AccessDenied as err:\n"
        "    print(\"refused:\", err)"
    ),
    new_code_cell("%var permissions api_key --check write --as reader"),
    new_markdown_cell(
        "`observe`: the reader watches the variable. Revoking the rule ends its watch at once "
        "with `AccessDenied` (PERMISSION_DENIED on the wire); the watch does not reconnect."
    ),
    new_code_cell(
        "watch = reader.watch_variable(var_id)\n"
        "print(await anext(watch))\n"
        "await session.set_variable(\"api_key\", \"rotated\")\n"
        "print(await anext(watch))\n"
        "await session.set_variable_permissions(\"api_key\", [])   # revoke everything\n"
        "try:\n"
        "    await anext(watch)\n"
        "except AccessDenied as err:\n"
        "    print(\"watch ended:\", err)"
    ),
    new_code_cell("%var permissions api_key"),
    new_code_cell("await reader.close()\n%unload_ext dspex_notebook"),
]

nb = new_notebook(cells=cells, metadata={
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
    "language_info": {"name": "python"},
})
nbformat.write(nb, "notebooks/access.ipynb")
