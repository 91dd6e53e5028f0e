"""``%var widget`` / ``%var slider`` in a real InteractiveShell (the extension's own IO thread and
embedded server; no browser: widgets talk to ipywidgets' default comm)."""

from __future__ import annotations

import ipywidgets
import pytest
from IPython.core.error import UsageError
from test_nb_watch import other_client_sets, wait_until

from dspex_notebook.notebook.magics import DspexMagicError
from dspex_notebook.widgets import VariablePanel


def var(ip, line: str):
    return ip.run_line_magic("var", line)


def test_widget_panel_follows_the_server_and_unwatch_stops_it(ext):
    var(ext, "register lr float 0.5 --min 0 --max 2 --step 0.05")
    var(ext, "register flag boolean True")
    panel = var(ext, "widget lr flag --throttle-ms 0")
    assert isinstance(panel, VariablePanel) and panel.names == ["lr", "flag"]
    slider = panel.bindings["lr"].widget
    assert isinstance(slider, ipywidgets.FloatSlider) and slider.step == 0.05
    assert isinstance(panel.bindings["flag"].widget, ipywidgets.Checkbox)
    assert wait_until(lambda: set(panel.status.values()) == {"live"})
    other_client_sets(ext, "lr", 1.5)
    assert wait_until(lambda: slider.value == 1.5)
    slider.set_state({"value": 0.25})  # what a browser message does
    assert wait_until(lambda: var(ext, "lr") == 0.25)
    var(ext, "unwatch lr")
    assert wait_until(lambda: set(panel.status.values()) == {"unlinked"})


def test_slider_alias_and_on_release(ext):
    var(ext, "register n integer 3 --min 0 --max 9")
    panel = var(ext, "slider n --on-release")
    assert panel.bindings["n"].widget.continuous_update is False
    panel.stop()


def test_widget_errors_are_one_line(ext):
    with pytest.raises(UsageError, match="usage"):
        var(ext, "widget")
    with pytest.raises(UsageError, match="not variable names"):
        var(ext, "widget 'a b'")
    with pytest.raises(DspexMagicError, match="VariableNotFoundError") as info:
        var(ext, "widget nope")
    assert "\n" not in str(info.value)
    var(ext, "register ok integer 1")
    with pytest.raises(DspexMagicError):  # the first control is released again
        var(ext, "widget ok missing")


def test_optimize_shows_the_live_panel_and_reopens_it(ext, capsys):
    from dspex_notebook.widgets import OptimizationPanel

    var(ext, "register n integer 1 --min 0 --max 8")
    ext.user_ns["closeness"] = lambda n: -abs(n - 6)
    panel = var(ext, 'optimize n --objective closeness --optimizer grid --config "{n_points: 9}"')
    assert isinstance(panel, OptimizationPanel) and "started" in capsys.readouterr().out
    assert wait_until(lambda: "finished (grid_exhausted)" in panel.info.value, timeout=30)
    assert wait_until(lambda: len(panel.buffer.complete()) == 9)
    assert panel.progress.value == 9 and panel.progress.max == 9
    again = var(ext, "optimize n")  # another view of the same (last) run
    assert again.run_id == panel.run_id
    var(ext, "unwatch n")
    assert panel._closed and again._closed


def test_history_scrubber_magic(ext):
    from dspex_notebook.widgets import HistoryScrubber

    var(ext, "register h integer 1")
    var(ext, "h = 2")
    scrub = var(ext, "history h --scrubber")
    assert isinstance(scrub, HistoryScrubber) and scrub.slider.max == 1
    with pytest.raises(UsageError, match="--limit"):
        var(ext, "history h --scrubber --limit 0")
    var(ext, "unwatch h")
    assert scrub._closed
