"""Widgets in a real JupyterLab in a real Chromium (issue 13's cases a–f).

Each notebook's kernel loads the extension against this process's dspex server; the test is
another client. Latencies are printed (docs/performance.md), never asserted: the waits are
bounds for a loaded 2-core machine, not speed targets.
"""

from __future__ import annotations

import time

from br_helpers import run_all, wait_for

try:
    from playwright.sync_api import expect
except ImportError:  # the lab fixture's require() skips (locally) or fails (CI)
    expect = None

LIVE = ".dspex-status[data-state='live']"


def header(session_id: str) -> list[str]:
    return [f"%config DspexMagics.session_id = {session_id!r}\n%load_ext dspex_notebook"]


def slider_notebook(lab, name: str, session_id: str, var: str, *extra: str) -> str:
    return lab.write_notebook(name, [*header(session_id), f"%var widget {var} --throttle-ms 0",
                                     *extra])


def readout(page):
    return page.locator(".widget-slider .widget-readout").first


def handle(page):
    return page.locator(".widget-slider .noUi-handle").first


def moves_with_the_server(page, other, var: str, value: float, text: str) -> float:
    started = time.monotonic()
    other.run(other.context.set_variable(var, value))
    expect(readout(page)).to_have_text(text, timeout=10_000)
    took = time.monotonic() - started
    print(f"server -> browser DOM: {took * 1000:.0f} ms")
    return took


def arrow_right_writes(page, other, var: str, expected: float) -> float:
    handle(page).focus()
    started = time.monotonic()
    page.keyboard.press("ArrowRight")
    wait_for(lambda: abs(other.get(var) - expected) < 1e-9, 10, f"{var} == {expected} on the server")
    took = time.monotonic() - started
    print(f"browser key -> server: {took * 1000:.0f} ms")
    return took


def open_slider(pages, lab, other, request, *extra: str):
    var = "lr"
    other.run(other.context.register_variable(var, "float", 0.5,
                                              {"min": 0.0, "max": 2.0, "step": 0.05}))
    nb = slider_notebook(lab, f"{request.node.name}.ipynb", other.context.session_id, var, *extra)
    page = pages(nb)
    run_all(page)
    expect(readout(page)).to_have_text("0.50", timeout=30_000)
    expect(page.locator(LIVE).first).to_be_visible(timeout=10_000)
    return page, var


def test_a_another_clients_write_moves_the_slider(pages, lab, other, request):
    page, var = open_slider(pages, lab, other, request)
    moves_with_the_server(page, other, var, 1.25, "1.25")
    assert abs(float(handle(page).get_attribute("aria-valuenow")) - 1.25) < 0.051  # noUi rounds


def test_b_arrow_right_changes_the_variable_on_the_server(pages, lab, other, request):
    page, var = open_slider(pages, lab, other, request)
    arrow_right_writes(page, other, var, 0.55)
    expect(readout(page)).to_have_text("0.55")
    expect(page.locator(LIVE).first).to_be_visible(timeout=10_000)  # pending -> confirmed


def test_c_two_pages_on_the_same_variable(pages, lab, other, request):
    var = "lr"
    other.run(other.context.register_variable(var, "float", 0.5,
                                              {"min": 0.0, "max": 2.0, "step": 0.05}))
    sid = other.context.session_id
    first = pages(slider_notebook(lab, f"{request.node.name}-1.ipynb", sid, var))
    run_all(first)
    second = pages(slider_notebook(lab, f"{request.node.name}-2.ipynb", sid, var))
    run_all(second)
    for page in (first, second):
        expect(readout(page)).to_have_text("0.50", timeout=30_000)
        expect(page.locator(LIVE).first).to_be_visible(timeout=10_000)
    handle(first).focus()
    for _ in range(3):
        first.keyboard.press("ArrowRight")
    expect(readout(second)).to_have_text("0.65", timeout=10_000)
    wait_for(lambda: abs(other.get(var) - 0.65) < 1e-9, 10, "0.65 on the server")
    handle(second).focus()
    second.keyboard.press("ArrowLeft")
    expect(readout(first)).to_have_text("0.60", timeout=10_000)


def test_d_a_refused_value_snaps_back_with_the_reason(pages, lab, other, request):
    other.run(other.context.register_variable("temp", "float", 0.5, {"min": 0.0}))
    nb = lab.write_notebook(f"{request.node.name}.ipynb",
                            [*header(other.context.session_id), "%var widget temp"])
    page = pages(nb)
    run_all(page)
    box = page.locator(".widget-text input").first
    expect(box).to_have_value("0.5", timeout=30_000)
    expect(page.locator(LIVE).first).to_be_visible(timeout=10_000)
    box.fill("-5")
    box.press("Enter")
    status = page.locator(".dspex-status[data-state='rejected']").first
    expect(status).to_contain_text("below the minimum", timeout=10_000)
    expect(box).to_have_value("0.5", timeout=10_000)
    assert other.get("temp") == 0.5


def test_e_optimization_panel_updates_and_stop_stops_the_run(pages, lab, other, request):
    other.run(other.context.register_variable("x", "float", 0.0, {"min": -2.0, "max": 2.0}))
    nb = lab.write_notebook(f"{request.node.name}.ipynb", [
        *header(other.context.session_id),
        "import time\n\ndef objective(x):\n    time.sleep(0.05)\n    return -(x - 1.0) ** 2",
        '%var optimize x --objective objective --optimizer grid_search --config "{n_points: 400}"'
        " --max-iterations 400",
    ])
    page = pages(nb)
    run_all(page)
    iteration = page.locator(".dspex-opt-iteration").first
    expect(iteration).to_be_visible(timeout=30_000)
    wait_for(lambda: int(iteration.get_attribute("data-value").split("/")[0]) >= 5, 20,
             "five trials on the panel")
    first = int(iteration.get_attribute("data-value").split("/")[0])
    plot = page.locator("img.dspex-plot").first
    src = plot.get_attribute("src")
    wait_for(lambda: int(iteration.get_attribute("data-value").split("/")[0]) > first, 20,
             "the progress to move")
    wait_for(lambda: plot.get_attribute("src") != src, 20, "a new plot frame")
    page.locator(".dspex-stop").first.click()
    state = page.locator(".dspex-opt-state").first
    expect(state).to_have_attribute("data-value", "finished (stopped)", timeout=20_000)
    status = other.run(other.context.get_optimization_status("x"))
    assert status["stop_reason"] == "stopped" and not status["is_optimizing"]
    stopped_at = status["iteration"]
    time.sleep(0.5)
    assert other.run(other.context.get_optimization_status("x"))["iteration"] == stopped_at


def test_f_both_directions_while_another_cell_awaits(pages, lab, other, request):
    page, var = open_slider(pages, lab, other, request, "import asyncio\nawait asyncio.sleep(40)")
    busy = page.locator(".jp-CodeCell").nth(2).locator(".jp-InputPrompt")
    expect(busy).to_have_text("[*]:", timeout=20_000)
    moves_with_the_server(page, other, var, 1.5, "1.50")
    arrow_right_writes(page, other, var, 1.55)
    # both happened while the cell was still running (ipykernel 7 reports the kernel "idle"
    # while a cell awaits, so the cell's own prompt is what says so)
    expect(busy).to_have_text("[*]:", timeout=1_000)
