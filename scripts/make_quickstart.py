"""Write notebooks/quickstart.ipynb from the cells below (edit here, then run this script)."""

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = [
    new_markdown_cell(
        "# dspex_notebook quickstart\n\n"
        "Typed, versioned variables that live in a server session and are shared by every "
        "client. `%load_ext dspex_notebook` finds the running `dspex-notebook` server of the "
        "default store (or of the store `%config DspexMagics.db` names) or starts the "
        "**embedded** one in this kernel (loopback only, random token, SQLite store), puts "
        "`session` in the namespace, and says which server, store and session it uses. "
        "`make demo` gives the kernel a fresh store of its own on every run."
    ),
    new_code_cell(
        "%config DspexMagics.session_id = \"quickstart\"\n"
        "%load_ext dspex_notebook\n"
        "import numpy as np\n\n"
        "session        # created by the extension: await its methods in any cell"
    ),
    new_markdown_cell(
        "## One variable of every type\n\n`register_variables` registers them **atomically** "
        "(all or none). `replace=True` lets this notebook run again on the same store."
    ),
    new_code_cell(
        "rng = np.random.default_rng(0)\n"
        "specs = [\n"
        "    dict(name=\"temperature\", type=\"float\", initial_value=0.7, constraints={\"min\": 0.0, \"max\": 2.0}),\n"
        "    dict(name=\"max_tokens\", type=\"integer\", initial_value=256, constraints={\"min\": 1, \"max\": 4096}),\n"
        "    dict(name=\"system_prompt\", type=\"string\", initial_value=\"Be concise.\", constraints={\"max_length\": 200}),\n"
        "    dict(name=\"use_cache\", type=\"boolean\", initial_value=True),\n"
        "    dict(name=\"model\", type=\"choice\", initial_value=\"gpt-4\", constraints={\"choices\": [\"gpt-4\", \"claude-3\", \"gemini\"]}),\n"
        "    dict(name=\"strategy\", type=\"module\", initial_value=\"ChainOfThought\",\n"
        "         constraints={\"choices\": [\"Predict\", \"ChainOfThought\", \"ReAct\"]}),\n"
        "    dict(name=\"context_embedding\", type=\"embedding\", initial_value=rng.standard_normal(768).astype(np.float32),\n"
        "         constraints={\"dimensions\": 768, \"normalize\": True}),\n"
        "    dict(name=\"attention_mask\", type=\"tensor\", initial_value=np.tril(np.ones((4, 4), dtype=np.int8))),\n"
        "    dict(name=\"stop_words\", type=\"list\", initial_value=[\"###\", \"END\"], constraints={\"item_type\": \"string\"}),\n"
        "    dict(name=\"settings\", type=\"dict\", initial_value={\"retries\": 3, \"backoff\": [0.5, 1.0]}),\n"
        "]\n"
        "for spec in specs:\n"
        "    spec[\"replace\"] = True\n"
        "ids = await session.register_variables(specs)\n"
        "ids"
    ),
    new_markdown_cell(
        "## Read them back from the server\n\nA second client (its own cache) reads all ten in "
        "**one** round trip. Arrays come back as numpy arrays with their dtype and shape "
        "(the embedding was normalized by its `normalize` constraint)."
    ),
    new_code_cell(
        "from dspex_notebook import SessionContext\n\n"
        "reader = await SessionContext.connect(\"quickstart\")   # finds the same server\n"
        "names = [s[\"name\"] for s in specs]\n"
        "values = await reader.get_variables(names)\n\n"
        "def same(a, b):\n"
        "    if isinstance(a, np.ndarray):\n"
        "        return a.dtype == b.dtype and a.shape == b.shape and np.allclose(a, b)\n"
        "    return type(a) is type(b) and a == b\n\n"
        "expected = {s[\"name\"]: s[\"initial_value\"] for s in specs}\n"
        "expected[\"context_embedding\"] = expected[\"context_embedding\"] / np.linalg.norm(expected[\"context_embedding\"])\n"
        "for name in names:\n"
        "    v = values[name]\n"
        "    shown = f\"{v.dtype}{list(v.shape)}\" if isinstance(v, np.ndarray) else repr(v)\n"
        "    print(f\"{name:18} {shown:28} equal: {same(v, expected[name])}\")\n"
        "assert all(same(values[n], expected[n]) for n in names)"
    ),
    new_markdown_cell(
        "## Atomic updates\n\n`update_variables` is atomic by default: every value is applied "
        "as one revision, or none is."
    ),
    new_code_cell(
        "print(await session.update_variables({\"temperature\": 0.9, \"max_tokens\": 512, \"model\": \"claude-3\"}))\n\n"
        "# one bad value (temperature above its maximum): nothing is applied\n"
        "result = await session.update_variables({\"temperature\": 5.0, \"max_tokens\": 1024})\n"
        "for name, outcome in result.items():\n"
        "    print(f\"{name}: {outcome}\")\n"
        "await session.get_variables([\"temperature\", \"max_tokens\", \"model\"])  # still 0.9, 512, claude-3"
    ),
    new_markdown_cell("## Constraint errors name the variable, the rule and the value"),
    new_code_cell(
        "try:\n"
        "    await session.set_variable(\"temperature\", 2.5)\n"
        "except ValueError as err:   # ConstraintViolation is a ValueError, as the spec promises\n"
        "    print(f\"{type(err).__name__}: {err}\")\n"
        "try:\n"
        "    await session.set_variable(\"model\", \"llama\")\n"
        "except ValueError as err:\n"
        "    print(f\"{type(err).__name__}: {err}\")"
    ),
    new_markdown_cell(
        "## Versions and optimistic locking\n\nEvery write bumps the variable's version. "
        "`expected_version` makes a write conditional."
    ),
    new_code_cell(
        "info = await session.get_variable_info(\"temperature\")\n"
        "print(\"version\", info.version, \"value\", info.value)\n"
        "await session.set_variable(\"temperature\", 1.1, expected_version=info.version)\n"
        "try:\n"
        "    await session.set_variable(\"temperature\", 1.2, expected_version=info.version)  # stale\n"
        "except ValueError as err:\n"
        "    print(f\"{type(err).__name__}: {err}\")"
    ),
    new_markdown_cell(
        "## Magics\n\n`%var` lists the session, `%var NAME` reads (from the cache when fresh), "
        "`%var NAME = EXPR` writes, `%var register ...` creates, and `%%var` applies a YAML block "
        "atomically (`--replace` re-registers existing names). `%var help` lists them all."
    ),
    new_code_cell("%var"),
    new_code_cell("%var temperature = 0.5 * 2\n%var temperature"),
    new_code_cell("%var register top_p float 0.9 --min 0 --max 1 --description \"nucleus sampling\" --replace\n%var info top_p"),
    new_code_cell(
        "%%var --replace\n"
        "max_tokens: 1024\n"
        "stop_words: [\"###\", \"END\", \"STOP\"]\n"
        "beam_width: {type: integer, value: 4, constraints: {min: 1, max: 16}}"
    ),
    new_code_cell(
        "# a bad value is one readable line, and nothing in the block is applied\n"
        "try:\n"
        "    get_ipython().run_cell_magic(\"var\", \"\", \"max_tokens: 2048\\ntemperature: 9.0\")\n"
        "except Exception as err:\n"
        "    print(err)\n"
        "%var max_tokens"
    ),
    new_markdown_cell(
        "## Live: watches and a coherent cache\n\n"
        "`watch_variable` yields every change, from any client, in revision order (a dropped "
        "stream resumes from its last revision: nothing lost, nothing twice). Each session keeps "
        "its cache coherent through the same stream, so `reader` sees `session`'s writes "
        "without asking the server again."
    ),
    new_code_cell(
        "async def follow(n):\n"
        "    seen = []\n"
        "    async with reader.watch_variable(\"temperature\") as watch:\n"
        "        async for update in watch:\n"
        "            seen.append((update.kind, update.value, update.revision))\n"
        "            if len(seen) == n:\n"
        "                return seen\n\n"
        "import asyncio\n"
        "follower = asyncio.ensure_future(follow(3))\n"
        "await asyncio.sleep(0.2)                     # the watch has taken its snapshot\n"
        "await session.set_variable(\"temperature\", 1.3)\n"
        "await session.set_variable(\"temperature\", 1.4)\n"
        "for kind, value, revision in await asyncio.wait_for(follower, 10):\n"
        "    print(f\"{kind:8} {value}  (revision {revision})\")\n"
        "print(\"reader's cached value:\", reader.cached_value(\"temperature\"),\n"
        "      \"| cache coherent:\", reader.get_cache_info()[\"coherent\"])"
    ),
    new_markdown_cell(
        "`%var watch NAME ...` shows a live table that updates in place (from the IO thread, "
        "so it moves even while another cell runs); `%var unwatch` stops it. "
        "`%var stats` shows who reads and writes what."
    ),
    new_code_cell("view = %var watch temperature max_tokens\nview"),
    new_code_cell(
        "await session.set_variable(\"max_tokens\", 2048)\n"
        "await asyncio.sleep(0.3)\n"
        "print(view.text())\n"
        "%var unwatch"
    ),
    new_code_cell("%var stats temperature"),
    new_markdown_cell(
        "## Tune a variable: a server-held optimization run\n\n"
        "The server holds the lock, proposes values, writes them to the variable and records "
        "every trial; this notebook evaluates the objective (here a stand-in for measuring your "
        "program). The call returns at once; other clients' writes are refused while it runs."
    ),
    new_code_cell(
        "def quality(t):\n"
        "    return {\"accuracy\": 1 - (t - 1.2) ** 2}\n\n"
        "run_id = await session.start_optimization(\"temperature\", \"bayesian\",\n"
        "                                          {\"metric\": \"accuracy\", \"seed\": 0},\n"
        "                                          max_iterations=12, objective=quality)\n"
        "try:\n"
        "    await reader.set_variable(\"temperature\", 0.1)\n"
        "except ValueError as err:\n"
        "    print(\"refused:\", err)\n"
        "print(\"stopped:\", await session.wait_optimization(\"temperature\"))\n"
        "%var status temperature"
    ),
    new_code_cell(
        "def closeness(n):\n"
        "    return -abs(n - 1500)\n\n"
        "%var optimize max_tokens --objective closeness --optimizer grid --config \"{n_points: 5}\"\n"
        "await session.wait_optimization(\"max_tokens\")\n"
        "[(t[\"value\"], t[\"objective\"]) for t in await session.get_optimization_history(\"max_tokens\")]"
    ),
    new_markdown_cell(
        "## History and rollback\n\nEvery version is kept (within the server's retention), "
        "with who wrote it; a rollback writes the old value as a **new** version."
    ),
    new_code_cell("%var history temperature --limit 5"),
    new_code_cell(
        "first = (await session.get_variable_history(\"temperature\", limit=1000))[-1]\n"
        "await session.rollback_variable(\"temperature\", first[\"version\"], reason=\"start over\")\n"
        "%var temperature"
    ),
    new_code_cell("await reader.close()\n%unload_ext dspex_notebook"),
]

nb = new_notebook(cells=cells, metadata={
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
    "language_info": {"name": "python"},
})
nbformat.write(nb, "notebooks/quickstart.ipynb")
