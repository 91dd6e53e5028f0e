"""Write notebooks/scale-out.ipynb from the cells below (edit here, then run this script)."""

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = [
    new_markdown_cell(
        "# Several servers over one etcd\n\n"
        "Three servers share one store kept in etcd; any client may talk to any of them and "
        "moves on when its server goes away (docs/scale-out.md). Here everything runs in this "
        "kernel: a throwaway etcd (`apt-get install etcd-server`) and three embedded servers. "
        "In production they are `dspex-notebook serve --backend etcd --etcd ...` processes."
    ),
    new_code_cell(
        "from dspex_notebook import SessionContext\n"
        "from dspex_notebook.server import EmbeddedServer\n"
        "from dspex_notebook.server.etcd_local import LocalEtcd\n"
        "\n"
        "etcd = LocalEtcd(in_memory=True)\n"
        "servers = [EmbeddedServer(etcd=etcd.endpoints, token=\"notebook-token\",\n"
        "                          write_runtime_file=False).start() for _ in range(3)]\n"
        "addresses = [s.address for s in servers]\n"
        "print(\"etcd:\", etcd.endpoints, \"servers:\", addresses)"
    ),
    new_markdown_cell(
        "## A write on one server is read on another\n\n"
        "Reads are linearizable by default: server B first learns from etcd which commit is "
        "the newest and waits until its view has it."
    ),
    new_code_cell(
        "a = await SessionContext.connect(\"lab\", address=addresses[0], token=\"notebook-token\")\n"
        "b = await SessionContext.connect(\"lab\", address=addresses[1], token=\"notebook-token\")\n"
        "await a.register_variable(\"temperature\", \"float\", 0.7,\n"
        "                          constraints={\"min\": 0.0, \"max\": 2.0}, replace=True)\n"
        "await a.set_variable(\"temperature\", 0.9)\n"
        "print(\"read on B:\", await b.get_variable(\"temperature\"))"
    ),
    new_markdown_cell("## A watch on one server sees writes made through another"),
    new_code_cell(
        "import asyncio\n"
        "\n"
        "watch = b.watch_variable(\"temperature\", include_initial=False)\n"
        "await asyncio.sleep(0.3)\n"
        "await a.set_variable(\"temperature\", 1.1)\n"
        "update = await asyncio.wait_for(watch.__anext__(), 10)\n"
        "await watch.aclose()\n"
        "print(f\"B's watch: {update.value} at revision {update.revision} (etcd's revision)\")"
    ),
    new_markdown_cell(
        "## Compare-and-set across servers\n\n"
        "`expected_version` is checked inside etcd's transaction: concurrent increments "
        "through different servers lose nothing."
    ),
    new_code_cell(
        "await a.register_variable(\"counter\", \"integer\", 0, replace=True)\n"
        "\n"
        "async def increment(ctx, times):\n"
        "    for _ in range(times):\n"
        "        for _attempt in range(100):\n"
        "            info = await ctx.get_variable_info(\"counter\")\n"
        "            try:\n"
        "                await ctx.set_variable(\"counter\", info.value + 1, expected_version=info.version)\n"
        "                break\n"
        "            except ValueError:  # VersionConflict: someone else got there first\n"
        "                continue\n"
        "\n"
        "await asyncio.gather(increment(a, 10), increment(b, 10))\n"
        "print(\"counter:\", await a.get_variable(\"counter\"))"
    ),
    new_markdown_cell(
        "## The magics, on the cluster\n\n"
        "`%var connect` takes the same list: the notebook's `session` moves there "
        "(docs/notebook.md)."
    ),
    new_code_cell(
        "%load_ext dspex_notebook\n"
        "import pathlib, tempfile\n"
        "token_file = pathlib.Path(tempfile.mkdtemp()) / \"token.txt\"\n"
        "token_file.write_text(\"notebook-token\")\n"
        "cluster = \",\".join(addresses)"
    ),
    new_code_cell("%var connect {cluster} --session lab --token-file {token_file}"),
    new_code_cell("%var list"),
    new_markdown_cell(
        "## A client given every address survives its server\n\n"
        "It talks to the first that answers; when that one stops, the next call goes to the "
        "next address (a watch resumes there from its last revision)."
    ),
    new_code_cell(
        "c = await SessionContext.connect(\"lab\", address=\",\".join(addresses),\n"
        "                                 token=\"notebook-token\")\n"
        "print(\"before:\", await c.get_variable(\"temperature\"))\n"
        "servers[0].stop()          # the server c (and a) talked to\n"
        "await c.set_variable(\"temperature\", 1.3)\n"
        "print(\"after server A stopped, through the next one:\", await b.get_variable(\"temperature\"))"
    ),
    new_code_cell(
        "for ctx in (a, b, c):\n"
        "    await ctx.close()\n"
        "for s in servers[1:]:\n"
        "    s.stop()\n"
        "etcd.close()"
    ),
]

nb = new_notebook(cells=cells, metadata={
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
})
nbformat.write(nb, "notebooks/scale-out.ipynb")
print("wrote notebooks/scale-out.ipynb")
