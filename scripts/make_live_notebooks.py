"""Write notebooks/widgets.ipynb and notebooks/optimization.ipynb (edit here, then run this)."""

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

md, code = new_markdown_cell, new_code_cell

widgets = [
    md("# Live widgets\n\nControls bound **both ways** to session variables: a change on the "
       "server (any client) moves the control, moving the control writes the variable. "
       "See `docs/widgets.md`."),
    code('%config DspexMagics.session_id = "widgets"\n%load_ext dspex_notebook\n'
         "import asyncio\nfrom dspex_notebook import SessionContext"),
    code("%%var --replace\n"
         "temperature: {type: float, value: 0.7, constraints: {min: 0.0, max: 2.0, step: 0.05}}\n"
         "max_tokens: {type: integer, value: 256, constraints: {min: 16, max: 1024, step: 16}}\n"
         "model: {type: choice, value: gpt-4, constraints: {choices: [gpt-4, claude-3, gemini]}}\n"
         "use_cache: {type: boolean, value: true}\n"
         "top_p: {type: float, value: 0.9, constraints: {min: 0.0}}"),
    md("`%var widget` picks each control from the type and constraints (a slider needs both "
       "bounds; `top_p` has only a minimum, so it gets a number box). Each row has a status line: "
       "`live`, `pending…` while our write is unconfirmed, `rejected: …`, `reconnecting…`, `stale`."),
    code("panel = %var widget temperature max_tokens model use_cache top_p\npanel"),
    md("## A second client moves them\n\nAnother client — here a second `SessionContext` in this "
       "kernel, in practice a colleague's notebook or `dspex-notebook set` — writes; the controls "
       "above follow (from the IO thread, so even while a cell is busy)."),
    code('other = await SessionContext.connect("widgets", start_server=False)\n'
         'await other.set_variable("temperature", 1.35)\n'
         'await other.set_variable("model", "claude-3")\n'
         "await asyncio.sleep(0.5)\n"
         'panel.bindings["temperature"].widget.value, panel.bindings["model"].widget.value'),
    md("## Setting a control writes the variable\n\nA user drag and code that sets `.value` are "
       "the same to the binding: both are written (throttled, with a trailing write)."),
    code('panel.bindings["max_tokens"].widget.value = 512\nawait asyncio.sleep(0.5)\n'
         'await other.get_variable("max_tokens", bypass_cache=True)'),
    md("## A refused value snaps back\n\n`top_p` must be ≥ 0: the server refuses -1, the box "
       "returns to the server's value everywhere, and the status line says why."),
    code('panel.bindings["top_p"].widget.value = -1.0\nawait asyncio.sleep(0.5)\n'
         'print(panel.bindings["top_p"].widget.value, "|", panel.bindings["top_p"].reason)'),
    md("## History scrubber\n\nA slider over the versions; **Restore** rolls back (a new version "
       "with the old value)."),
    code("scrubber = %var history temperature --scrubber\nscrubber"),
    md("## A constraint change reshapes the control"),
    code('await other.register_variable("temperature", "float", 1.0,\n'
         '                              {"min": 0.5, "max": 1.5, "step": 0.1}, replace=True)\n'
         "await asyncio.sleep(0.5)\n"
         's = panel.bindings["temperature"].widget\ns.min, s.max, s.step, s.value'),
    md("## One control, your own widget\n\n`bind(widget, session, name)` binds any control; "
       "`Binding.unlink()` (or `widget.close()`) stops it."),
    code("import ipywidgets\nfrom dspex_notebook.widgets import bind\n\n"
         'knob = ipywidgets.FloatSlider(min=0, max=2, step=0.05, description="temperature")\n'
         'b = bind(knob, session, "temperature", continuous_update=False)  # write on release\n'
         "b"),
    code("b.unlink()\n%var unwatch\nawait other.close()"),
]

optimization = [
    md("# A live optimization panel\n\nA server-held run (docs/optimization.md) with its panel: "
       "progress, best so far, elapsed, ETA, a live plot, **Pause refresh** and **Stop**. The run "
       "executes off the cell, so the panel keeps updating while you work in other cells."),
    code('%config DspexMagics.session_id = "optimization"\n%load_ext dspex_notebook\n'
         "import asyncio, math, time"),
    code('await session.register_variable("temperature", "float", 0.2,\n'
         '                                {"min": 0.0, "max": 2.0}, replace=True)\n\n'
         "def quality(temperature):\n"
         '    """A synthetic objective: best near 1.1, a little noise-free ripple."""\n'
         "    time.sleep(0.02)  # pretend to run a program\n"
         "    return -(temperature - 1.1) ** 2 + 0.05 * math.cos(8 * temperature)"),
    md("`%var optimize` starts the run and shows its panel; the cell returns at once."),
    code('%var optimize temperature --objective quality --max-iterations 25 --config "{seed: 0}"'),
    md("Any client can open the same run's panel — a second notebook sees the same live run:"),
    code("from dspex_notebook.widgets import OptimizationPanel\n"
         'second = OptimizationPanel(session, "temperature")\nsecond'),
    code('await session.wait_optimization("temperature")\n'
         'status = await session.get_optimization_status("temperature")\n'
         'status["best_value"], status["stop_reason"], status["iteration"]'),
    md("## A static figure for reports\n\n`plot_optimization_history` returns a matplotlib "
       "`Figure` (no pyplot): trial objectives, the best-so-far line, objective vs value."),
    code("from IPython.display import Image\n"
         "from dspex_notebook.plotting import plot_optimization_history\n"
         "from dspex_notebook.plotting.render import png\n\n"
         'history = await session.get_optimization_history("temperature", limit=100)\n'
         'fig = plot_optimization_history(history, name="temperature")\nImage(png(fig))'),
    md("## An ask/tell worker\n\nWithout `objective=` the run waits for any client to "
       "evaluate its trials. `report_trial(..., next=True)` reports one and returns the next "
       "(None when the run is over): one round trip per trial."),
    code('await session.start_optimization("temperature", "bayesian", {"seed": 1}, max_iterations=12,\n'
         '                                 convergence_threshold=None)\n'
         'trial = await session.next_trial("temperature")\n'
         "while trial is not None:\n"
         '    trial = await session.report_trial("temperature", trial.id, quality(trial.value), next=True)\n'
         'status = await session.get_optimization_status("temperature")\n'
         'status["iteration"], status["stop_reason"], round(status["best_value"], 2)'),
    md("## Stop takes effect within one trial\n\nA longer run, stopped from the panel's button "
       "(here pressed from code):"),
    code('panel = %var optimize temperature --objective quality --optimizer grid_search --config "{n_points: 500}" --max-iterations 500\n'
         "await asyncio.sleep(1.0)\npanel.stop_run()\nawait asyncio.sleep(1.0)\n"
         'status = await session.get_optimization_status("temperature")\n'
         'status["stop_reason"], status["iteration"] < 500'),
    code("%var unwatch"),
]


def write(path: str, cells: list) -> None:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    write("notebooks/widgets.ipynb", widgets)
    write("notebooks/optimization.ipynb", optimization)
