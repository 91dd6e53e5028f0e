"""Plot data and figures: buffers without matplotlib, figures rendered with Agg whose artists'
data must equal the history, live frames into an Image, and the optimization panel against a
real run seen by two clients."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
from wg_helpers import wait_until

from dspex_notebook.plotting import SeriesBuffer, TrialBuffer
from dspex_notebook.plotting.render import draw_series, new_figure, plot_optimization_history, png

PNG = b"\x89PNG\r\n\x1a\n"


def trial(i, value, objective, state="complete", run="opt-1", ts=None):
    return {"iteration": i, "value": value, "objective": objective, "state": state,
            "optimization_id": run, "timestamp": ts if ts is not None else 1000.0 + i,
            "metrics": None if objective is None else {"objective": objective}, "error": None}


def test_trial_buffer_best_so_far_upserts_and_skips_failed():
    history = [trial(1, 0.1, 3.0), trial(2, 0.2, 1.0), trial(3, 0.3, None, "failed"),
               trial(4, 0.4, 5.0), trial(5, 0.5, None, "pending")]
    up = TrialBuffer.from_history(history, "maximize")
    assert up.series() == ([1, 2, 4], [3.0, 1.0, 5.0])
    assert up.best_so_far() == ([1, 2, 4], [3.0, 3.0, 5.0])
    down = TrialBuffer.from_history(history, "minimize")
    assert down.best_so_far() == ([1, 2, 4], [3.0, 1.0, 1.0])
    assert down.best()["value"] == 0.2
    assert up.add([trial(5, 0.5, 9.0, ts=2000.0)]) == 1  # the pending trial completed
    assert up.series()[1][-1] == 9.0 and len(up) == 5 and up.last_timestamp == 2000.0
    assert up.add([trial(5, 0.5, 9.0, ts=2000.0)]) == 0  # the same entry again changes nothing
    cats = TrialBuffer.from_history([trial(1, "a", 1.0), trial(2, "b", 2.0), trial(3, "a", 0.5)])
    assert cats.values_and_objectives() == ([0.0, 1.0, 0.0], [1.0, 2.0, 0.5], ["a", "b"])


def test_buffers_do_not_import_matplotlib():
    code = ("import sys, dspex_notebook.plotting as p; p.TrialBuffer(); "
            "assert 'matplotlib' not in sys.modules and 'ipywidgets' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_rendering_uses_no_pyplot():
    code = ("import sys; from dspex_notebook.plotting.render import plot_optimization_history, png;"
            "fig = plot_optimization_history([{'iteration': 1, 'value': 1.0, 'objective': 2.0,"
            " 'state': 'complete'}]); png(fig); assert 'matplotlib.pyplot' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_plot_optimization_history_draws_the_history(clients):
    a = clients()
    a.run(a.context.register_variable("n", "integer", 0, {"min": 0, "max": 8}))
    a.run(a.context.start_optimization("n", "grid_search", {"n_points": 9},
                                       objective=lambda n: -abs(n - 6) + 0.5 * (n == 2)))
    assert a.run(a.context.wait_optimization("n"), timeout=60) == "grid_exhausted"
    history = a.run(a.context.get_optimization_history("n", limit=100))
    fig = plot_optimization_history(history, name="n")
    left, right = fig.axes[:2]
    done = [t for t in history if t["state"] == "complete"]
    iterations = [t["iteration"] for t in done]
    objectives = [t["objective"] for t in done]
    points = left.collections[0].get_offsets()
    assert np.allclose(points[:, 0], iterations) and np.allclose(points[:, 1], objectives)
    best_line = left.lines[0]
    assert list(best_line.get_xdata()) == iterations
    assert list(best_line.get_ydata()) == list(np.maximum.accumulate(objectives))
    scatter = right.collections[0].get_offsets()
    assert np.allclose(scatter[:, 0], [t["value"] for t in done])
    assert np.allclose(scatter[:, 1], objectives)
    title = left.get_title(loc="left")
    assert "9 trials" in title and "at 6" in title, title
    assert left.get_xlabel() == "iteration" and left.get_ylabel() == "objective"
    assert right.get_xlabel() == "n"
    lo, hi = left.get_ylim()
    assert lo <= min(objectives) and hi >= max(objectives)  # the points are in view
    assert png(fig).startswith(PNG)


def test_draw_series_updates_the_same_artists():
    from dspex_notebook._types import VariableUpdate

    buf = SeriesBuffer("lr")
    for i, v in enumerate([0.5, 0.7, 0.6]):
        buf.add(VariableUpdate("id", "lr", v, None, "set", i + 1, version=i, type="float"),
                now=100.0 + 2 * i)
    fig = new_figure()
    draw_series(fig, buf, units="1/step")
    line = fig.axes[0].lines[0]
    assert list(line.get_xdata()) == [0.0, 2.0, 4.0] and list(line.get_ydata()) == [0.5, 0.7, 0.6]
    assert fig.axes[0].get_ylabel() == "lr (1/step)" and "lr = 0.6" in fig.axes[0].get_title()
    buf.add(VariableUpdate("id", "lr", 0.9, 0.6, "set", 4, version=3), now=107.0)
    draw_series(fig, buf)
    assert fig.axes[0].lines[0] is line and list(line.get_ydata())[-1] == 0.9
    assert png(fig).startswith(PNG)


def test_value_plot_renders_frames_from_the_io_thread(clients):
    from dspex_notebook.plotting import ValuePlot

    a, other = clients(), clients()
    a.run(a.context.register_variable("lr", "float", 0.5))
    plot = ValuePlot(a.session, "lr", fps=20)
    wait_until(lambda: plot.plot.frames >= 1, what="a first frame")
    for v in (0.6, 0.7, 0.8):
        other.run(other.context.set_variable("lr", v))
    wait_until(lambda: [p[1] for p in plot.buffer.points] == [0.5, 0.6, 0.7, 0.8])
    frames = plot.plot.frames
    wait_until(lambda: plot.plot.frames > frames, what="a frame with the new values")
    assert bytes(plot.widget.value).startswith(PNG)
    plot.stop()


def test_live_plot_coalesces_a_flood_of_changes(clients):
    import asyncio

    from dspex_notebook.plotting.live import LivePlot

    a = clients()
    drawn: list[int] = []
    data = {"n": 0}

    def draw(fig, n):
        drawn.append(n)
        draw_series(fig, SeriesBuffer("x"))

    plot = LivePlot(a.portal.loop, lambda: data["n"], draw, fps=5)

    async def flood():
        for i in range(1, 501):
            data["n"] = i
            plot.dirty()
            await asyncio.sleep(0)

    a.run(flood())
    wait_until(lambda: drawn and drawn[-1] == 500 and not plot.rendering, what="the last frame")
    assert len(drawn) < 50  # 500 changes, a few frames: no backlog
    plot.close()


def test_optimization_panel_two_clients_see_the_run_and_stop_stops_it(clients):
    from dspex_notebook.widgets import OptimizationPanel

    a, b = clients(), clients()
    a.run(a.context.register_variable("x", "float", 0.0, {"min": -2.0, "max": 2.0}))

    def slow(x):
        time.sleep(0.02)
        return -(x - 1.0) ** 2

    a.run(a.context.start_optimization("x", "grid_search", {"n_points": 400},  # never converges
                                       max_iterations=400, objective=slow))
    mine = OptimizationPanel(a.session, "x", fps=10, poll_s=0.2)
    theirs = OptimizationPanel(b.session, "x", fps=10, poll_s=0.2)  # a second notebook
    wait_until(lambda: len(theirs.buffer.complete()) >= 3, what="trials in the second panel")
    assert theirs.run_id == mine.run_id and theirs.run_id.startswith("opt-")
    assert "running" in theirs.info.value and "/ 400" in theirs.info.value
    assert theirs.progress.max == 400 and theirs.progress.value >= 3
    wait_until(lambda: theirs.plot.frames >= 2, what="plot frames")
    theirs.stop_run()  # Stop in the second notebook
    wait_until(lambda: not mine.status.get("is_optimizing", True), what="the run to stop", timeout=20)
    wait_until(lambda: "finished (stopped)" in mine.info.value, timeout=20)
    status = a.run(a.context.get_optimization_status("x"))
    assert status["stop_reason"] == "stopped" and status["iteration"] < 400
    time.sleep(0.3)
    assert a.run(a.context.get_optimization_status("x"))["iteration"] <= status["iteration"] + 1
    assert mine.stop_button.disabled
    wait_until(lambda: "finished (stopped)" in theirs.info.value)
    mine.stop()
    theirs.stop()
