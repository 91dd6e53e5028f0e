"""Write notebooks/dspy.ipynb from the cells below (edit here, then run this script)."""

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

cells = [
    new_markdown_cell(
        "# DSPy programs driven by session variables\n\n"
        "Needs the `dspy` extra (`pip install 'dspex-notebook[dspy]'`). Everything here runs "
        "**offline**: the LM is a real `dspy.LM` over a local engine "
        "(`dspex_notebook.dspy.testing.FakeEngine`) that answers deterministically and records "
        "what each request carried. Swap in `dspy.LM(\"openai/gpt-4o-mini\")` or a local "
        "OpenAI-compatible server and nothing else changes. See docs/dspy.md."
    ),
    new_code_cell(
        "%config DspexMagics.session_id = \"dspy-tutorial\"\n"
        "%load_ext dspex_notebook\n"
        "import logging\n"
        "import dspy\n"
        "from dspy.teleprompt import BootstrapFewShot\n"
        "from dspex_notebook.dspy import DSPyOptimizationBridge, ModuleVariableResolver\n"
        "from dspex_notebook.dspy.testing import FakeEngine, TemperatureTask\n\n"
        "# a QA task whose accuracy under the fake LM peaks at temperature 0.7\n"
        "task = TemperatureTask(n=20, peak=0.7, step=0.05)\n"
        "lm = task.engine.lm(max_tokens=256)\n"
        "dspy.configure(lm=lm)\n"
        "logging.getLogger(\"dspy.evaluate\").setLevel(logging.WARNING)  # one line per evaluation is a lot\n"
        "bridge = DSPyOptimizationBridge(session)"
    ),
    new_markdown_cell(
        "## Bind variables to LM knobs\n\n"
        "A binding maps variables to DSPy's own knobs: `lm.<kwarg>` (the LM's request kwargs "
        "for the whole program), `<predictor>.config.<kwarg>` (`Predict.config`, which DSPy "
        "merges over the LM's kwargs), `lm` / `<predictor>.lm` (the model). Values are read "
        "**at call time**, so a slider, another client or an optimizer changes the next call."
    ),
    new_code_cell(
        "# replace=True: the notebook can run again on the same store\n"
        "await session.register_variable(\"temperature\", \"float\", 0.2, constraints={\"min\": 0.0, \"max\": 2.0}, replace=True)\n"
        "await session.register_variable(\"max_tokens\", \"integer\", 64, constraints={\"min\": 1, \"max\": 4096}, replace=True)\n"
        "qa = dspy.Predict(\"question -> answer\")\n"
        "binding = await bridge.bind(qa, {\"temperature\": \"lm.temperature\",\n"
        "                                 \"max_tokens\": \"self.config.max_tokens\"})\n"
        "await binding.acall(question=\"question 3\")\n"
        "print(\"LM received:\", {k: task.engine.last[k] for k in (\"temperature\", \"max_tokens\")})\n"
        "%var temperature = 0.65\n"
        "%var max_tokens = 128\n"
        "print((await binding.acall(question=\"question 3\")).answer)\n"
        "print(\"LM received:\", {k: task.engine.last[k] for k in (\"temperature\", \"max_tokens\")})"
    ),
    new_markdown_cell(
        "## `sync_dspy_parameters`: a program's settings as variables\n\n"
        "One typed, constrained variable per setting in effect; the program follows later "
        "changes (a watch), and `push` writes the program's own changes back. "
        "`%var dspy sync cot --prefix cot_` does the same from a line."
    ),
    new_code_cell(
        "cot = dspy.ChainOfThought(\"question -> answer\", temperature=0.3)\n"
        "await bridge.sync_dspy_parameters(cot, variable_prefix=\"cot_\")"
    ),
    new_code_cell(
        "%var cot_temperature = 0.9\n"
        "await bridge.pull_dspy_parameters(cot)   # or wait for the watch to deliver it\n"
        "print(cot.predict.config)\n"
        "cot.predict.update_config(max_tokens=512)\n"
        "print(\"pushed:\", await bridge.push_dspy_parameters(cot))\n"
        "%var dspy"
    ),
    new_markdown_cell(
        "## `ModuleVariableResolver`: the strategy is a variable\n\n"
        "A value the installed DSPy lacks is a clear error naming what it has."
    ),
    new_code_cell(
        "await session.register_variable(\"reasoning_strategy\", \"module\", \"Predict\",\n"
        "    constraints={\"choices\": [\"Predict\", \"ChainOfThought\", \"ReAct\", \"ProgramOfThought\", \"TreeOfThought\"]},\n"
        "    replace=True)\n"
        "resolver = ModuleVariableResolver(session)\n"
        "module = await resolver.create_module(\"reasoning_strategy\", \"question -> answer\")\n"
        "for strategy in (\"Predict\", \"ChainOfThought\", \"ReAct\"):\n"
        "    await session.set_variable(\"reasoning_strategy\", strategy)\n"
        "    out = await module.forward(question=\"question 1\")\n"
        "    print(f\"{module.strategy:15} -> {sorted(out.keys())}\")\n"
        "await session.set_variable(\"reasoning_strategy\", \"TreeOfThought\")\n"
        "try:\n"
        "    await module.forward(question=\"question 1\")\n"
        "except ValueError as err:\n"
        "    print(err)"
    ),
    new_markdown_cell(
        "## A variable-aware teleprompter\n\n"
        "DSPy's `BootstrapFewShot` has no `teacher_temperature`: the mapping goes through the "
        "teacher's LM (`teacher_settings={'lm': lm.copy(temperature=...)}`). Compilation runs "
        "in a worker thread; score, demos and the settings used are written back as variables "
        "(with history)."
    ),
    new_code_cell(
        "await session.set_variable(\"temperature\", 0.7)\n"
        "await session.register_variable(\"max_demos\", \"integer\", 2, constraints={\"min\": 0, \"max\": 8}, replace=True)\n"
        "optimizer = await bridge.create_variable_aware_optimizer(\n"
        "    BootstrapFewShot,\n"
        "    variable_mappings={\"teacher_temperature\": \"temperature\", \"max_bootstrapped_demos\": \"max_demos\"},\n"
        "    metric=task.metric, max_labeled_demos=0)\n"
        "student = dspy.Predict(\"question -> answer\", temperature=0.7)\n"
        "compiled = await optimizer.compile(student, trainset=task.examples[:6], valset=task.examples[6:12])\n"
        "print(\"demos:\", len(compiled.demos))\n"
        "await session.get_variables([\"bootstrapfewshot_score\", \"bootstrapfewshot_demos\", \"bootstrapfewshot_result\"])"
    ),
    new_markdown_cell(
        "## Tune the temperature with a server-held bayesian run\n\n"
        "The objective is the program on a dev set; `%var watch temperature` shows every "
        "proposal as the server writes it."
    ),
    new_code_cell(
        "await session.set_variable(\"temperature\", 0.0)\n"
        "%var watch temperature\n"
        "objective = bridge.program_objective(qa, task.examples, task.metric, variable=\"temperature\",\n"
        "                                     target=\"self.config.temperature\", metric_name=\"accuracy\")\n"
        "await session.start_optimization(\"temperature\", \"bayesian\", {\"metric\": \"accuracy\", \"seed\": 0},\n"
        "                                 max_iterations=15, convergence_threshold=None, objective=objective)\n"
        "print(\"stopped:\", await session.wait_optimization(\"temperature\"))\n"
        "%var status temperature"
    ),
    new_code_cell(
        "status = await session.get_optimization_status(\"temperature\")\n"
        "print(f\"best temperature {status['best_value']:.3f} (the fake LM peaks at {task.peak}), \"\n"
        "      f\"accuracy {status['best_metrics']['accuracy']:.2f}\")\n"
        "%var unwatch"
    ),
    new_markdown_cell("## The spec's Real-Time Adaptive System (abridged)"),
    new_code_cell(
        "await session.set_variable(\"reasoning_strategy\", \"ChainOfThought\")\n"
        "await session.register_variable(\"complexity_threshold\", \"float\", 0.5,\n"
        "                                constraints={\"min\": 0.0, \"max\": 1.0}, replace=True)\n\n"
        "async def answer_question(question: str):\n"
        "    complexity = len(question.split()) / 20.0\n"
        "    threshold = await session.get_variable(\"complexity_threshold\")\n"
        "    strategy = \"ChainOfThought\" if complexity > threshold else \"Predict\"\n"
        "    await session.set_variable(\"reasoning_strategy\", strategy)\n"
        "    qa_module = await resolver.create_module(\"reasoning_strategy\", \"question -> answer\")\n"
        "    return qa_module.strategy, await qa_module.forward(question=question)\n\n"
        "print(await answer_question(\"What is 2+2?\"))\n"
        "print(await answer_question(\" \".join([\"why\"] * 12)))\n"
        "stats = await session.get_variable_stats()\n"
        "print(f\"Total variable updates: {stats['write_count']}\")\n"
        "print(f\"Cache hit rate: {stats['cache_hit_rate']:.2%}\")"
    ),
    new_code_cell("await bridge.close()\n%unload_ext dspex_notebook"),
]

nb = new_notebook(cells=cells, metadata={
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
    "language_info": {"name": "python"},
})
nbformat.write(nb, "notebooks/dspy.ipynb")
print("wrote notebooks/dspy.ipynb")
