"""Bindings against the real server, with ipywidgets' test comm standing in for the browser:
``widget.set_state({...})`` is what a frontend message does, ``comm.messages`` is what the
browser would receive."""

from __future__ import annotations

import asyncio

import ipywidgets
import numpy as np
import pytest
from wg_helpers import sent_values, wait_until

from dspex_notebook.testing import FakeClock
from dspex_notebook.widgets import TAG, Binding, bind, control_for


async def _advance(clock: FakeClock, seconds: float) -> None:
    clock.advance(seconds)
    for _ in range(5):
        await asyncio.sleep(0)


def advance(client, clock: FakeClock, seconds: float) -> None:
    """Move the fake clock on the IO loop (its sleepers are that loop's futures)."""
    client.run(_advance(clock, seconds))


def server_value(client, name: str):
    return client.run(client.context.get_variable(name, bypass_cache=True))


def history(client, name: str):
    return client.run(client.context.get_variable_history(name, limit=100))


def register(client, name, type_, value, constraints=None, **kw):
    return client.run(client.context.register_variable(name, type_, value, constraints, **kw))


# ---------------------------------------------------------------------------------------------
# choosing the control


def test_control_for_picks_the_control_from_type_and_constraints(clients):
    a = clients()
    register(a, "lr", "float", 0.5, {"min": 0.0, "max": 2.0, "step": 0.05})
    register(a, "temp", "float", 0.5, {"min": 0.0})
    register(a, "n", "integer", 3, {"min": 1, "max": 9, "step": 2})
    register(a, "k", "integer", 3)
    register(a, "model", "choice", "b", {"choices": ["a", "b"]})
    register(a, "mod", "module", "ChainOfThought", {"choices": ["Predict", "ChainOfThought"]})
    register(a, "flag", "boolean", True)
    register(a, "prompt", "string", "hi")
    register(a, "style", "string", "terse", {"enum": ["terse", "verbose"]})
    register(a, "emb", "embedding", [3.0, 4.0])
    made = {name: control_for(a.session, name) for name in
            ("lr", "temp", "n", "k", "model", "mod", "flag", "prompt", "style", "emb")}
    w = {name: b.widget for name, b in made.items()}
    assert isinstance(w["lr"], ipywidgets.FloatSlider)
    assert (w["lr"].min, w["lr"].max, w["lr"].step, w["lr"].value) == (0.0, 2.0, 0.05, 0.5)
    assert w["lr"].readout_format == ".2f"
    assert isinstance(w["temp"], ipywidgets.FloatText)  # one bound: a number box
    assert isinstance(w["n"], ipywidgets.IntSlider) and w["n"].step == 2
    assert isinstance(w["k"], ipywidgets.IntText)
    assert isinstance(w["model"], ipywidgets.Dropdown) and list(w["model"].options) == ["a", "b"]
    assert isinstance(w["mod"], ipywidgets.Dropdown) and w["mod"].value == "ChainOfThought"
    assert isinstance(w["flag"], ipywidgets.Checkbox) and w["flag"].value is True
    assert isinstance(w["prompt"], ipywidgets.Text) and w["prompt"].value == "hi"
    assert isinstance(w["style"], ipywidgets.Dropdown)
    assert isinstance(w["emb"], ipywidgets.HTML)
    assert "float64[2]" in w["emb"].value and "norm 5" in w["emb"].value
    for b in made.values():
        wait_until(lambda b=b: b.status == "live", what=f"{b.name} live")
        b.unlink()


def test_summary_follows_the_array_and_is_read_only(clients):
    a, b = clients(), clients()
    register(a, "emb", "embedding", [1.0, 0.0])
    binding = control_for(a.session, "emb")
    wait_until(lambda: binding.status == "live")
    b.run(b.context.set_variable("emb", np.array([0.0, 6.0, 8.0])))
    wait_until(lambda: "float64[3]" in binding.widget.value, what="the new summary")
    assert "norm 10" in binding.widget.value and "▁" in binding.widget.value
    binding.widget.set_state({"value": "typed into a read-only view"})
    a.sync()
    assert binding.writes == 0
    binding.unlink()


# ---------------------------------------------------------------------------------------------
# both directions, echoes


def test_a_server_change_moves_the_widget_and_is_not_echoed_back(clients):
    a, other = clients(), clients()
    register(a, "lr", "float", 0.5, {"min": 0.0, "max": 2.0})
    binding = control_for(a.session, "lr")
    wait_until(lambda: binding.status == "live")
    other.run(other.context.set_variable("lr", 1.25))
    wait_until(lambda: binding.widget.value == 1.25, what="the widget to follow")
    assert 1.25 in sent_values(binding.widget)  # the browser was told
    a.sync()
    assert binding.writes == 0  # applying a remote value is not a user change
    assert [e["value"] for e in history(a, "lr")] == [1.25, 0.5]
    binding.unlink()


def test_a_user_change_is_written_tagged_and_its_echo_dropped(clients):
    a, other = clients(), clients()
    register(a, "lr", "float", 0.5, {"min": 0.0, "max": 2.0})
    binding = control_for(a.session, "lr", throttle_ms=0)
    wait_until(lambda: binding.status == "live")
    watcher = control_for(other.session, "lr")
    wait_until(lambda: watcher.status == "live")
    binding.widget.set_state({"value": 0.75})
    wait_until(lambda: server_value(other, "lr") == 0.75, what="the write")
    wait_until(lambda: binding.status == "live" and binding.echoes == 1, what="the echo")
    entry = history(a, "lr")[0]
    assert entry["metadata"][TAG] == binding.id and entry["metadata"]["source"] == "widget"
    assert sent_values(binding.widget) == []  # our own echo never went back to the browser
    wait_until(lambda: watcher.widget.value == 0.75, what="the other client's widget")
    binding.unlink()
    watcher.unlink()


def test_a_fast_drag_never_sends_the_handle_back(clients):
    """Many values in a row: every write's echo arrives while later values are pending; none
    may be applied to the widget (the jitter of ipywidgets #3195)."""
    a, other = clients(), clients()
    register(a, "x", "integer", 0, {"min": 0, "max": 100})
    binding = control_for(a.session, "x", throttle_ms=0)
    watcher = control_for(other.session, "x")
    wait_until(lambda: binding.status == "live" and watcher.status == "live")
    for v in range(1, 41):
        binding.widget.set_state({"value": v})
    wait_until(lambda: server_value(a, "x") == 40, what="the last value to land")
    wait_until(lambda: not binding.pending, what="all echoes")
    assert sent_values(binding.widget) == [] and binding.widget.value == 40
    assert binding.writes < 40  # coalesced while a write was in flight
    wait_until(lambda: watcher.widget.value == 40, what="the other widget")
    binding.unlink()
    watcher.unlink()


def test_two_people_dragging_converge_on_the_last_writer(clients):
    a, b = clients(), clients()
    register(a, "x", "integer", 0, {"min": 0, "max": 1000})
    wa = control_for(a.session, "x", throttle_ms=0)
    wb = control_for(b.session, "x", throttle_ms=0)
    wait_until(lambda: wa.status == "live" and wb.status == "live")
    for i in range(30):
        wa.widget.set_state({"value": 2 * i})
        wb.widget.set_state({"value": 2 * i + 1})
    a.sync()  # the drags reach each binding on its IO loop (call_soon_threadsafe): until they
    b.sync()  # have, "not pending" would be true before the last write even started
    wait_until(lambda: not wa.pending and not wb.pending, what="both idle")
    final = server_value(a, "x")
    wait_until(lambda: wa.widget.value == final and wb.widget.value == final,
               what=f"both widgets at the last write {final}")
    last = history(a, "x")[0]
    writer = wa if last["metadata"].get(TAG) == wa.id else wb
    loser = wb if writer is wa else wa
    assert writer.widget.value == final and sent_values(writer.widget) == []  # never jumped
    assert sent_values(loser.widget)[-1] == final
    wa.unlink()
    wb.unlink()


# ---------------------------------------------------------------------------------------------
# throttle, trailing write, continuous_update


def test_throttle_coalesces_and_the_trailing_write_lands(clients):
    a = clients()
    clock = FakeClock(100.0)
    register(a, "lr", "float", 0.5, {"min": 0.0, "max": 2.0})
    binding = control_for(a.session, "lr", throttle_ms=100, clock=clock)
    wait_until(lambda: binding.status == "live")
    binding.widget.set_state({"value": 1.0})  # leading edge: written at once
    wait_until(lambda: server_value(a, "lr") == 1.0, what="the first write")
    for v in (1.1, 1.2, 1.3):  # within the same 100 ms: coalesced to the latest
        binding.widget.set_state({"value": v})
    a.sync()
    wait_until(lambda: not binding._inflight and not binding._unconfirmed)
    assert binding.status == "pending" and binding._trailing is not None
    assert server_value(a, "lr") == 1.0 and binding.writes == 1
    advance(a, clock, 0.1)  # the trailing write
    wait_until(lambda: not binding.pending, what="the trailing write")
    assert server_value(a, "lr") == 1.3 and binding.writes == 2
    assert [e["value"] for e in history(a, "lr")][:2] == [1.3, 1.0]
    assert binding.status == "live"
    binding.unlink()


def test_continuous_update_option_reaches_the_widget(clients):
    a = clients()
    register(a, "lr", "float", 0.5, {"min": 0.0, "max": 2.0})
    on_release = control_for(a.session, "lr", continuous_update=False)
    dragging = bind(ipywidgets.FloatSlider(min=0, max=2), a.session, "lr", continuous_update=True)
    assert on_release.widget.continuous_update is False
    assert dragging.widget.continuous_update is True
    wait_until(lambda: dragging.widget.value == 0.5, what="bind() shows the current value")
    on_release.unlink()
    dragging.unlink()


# ---------------------------------------------------------------------------------------------
# refused values, constraints


def test_a_refused_value_snaps_back_with_the_reason(clients):
    a = clients()
    register(a, "temp", "float", 0.5, {"min": 0.0})
    binding = control_for(a.session, "temp", throttle_ms=0)
    wait_until(lambda: binding.status == "live")
    binding.widget.set_state({"value": -3.0})
    wait_until(lambda: binding.status == "rejected", what="the refusal")
    wait_until(lambda: binding.widget.value == 0.5, what="the snap back")
    assert sent_values(binding.widget)[-1] == 0.5  # every view of the widget snaps back
    assert "below the minimum" in binding.reason and "-3" in binding.reason
    assert "below the minimum" in binding.status_widget.value
    assert "data-state='rejected'" in binding.status_widget.value
    assert server_value(a, "temp") == 0.5 and binding.refused == 1
    binding.widget.set_state({"value": 0.9})  # a good value clears the reason
    wait_until(lambda: binding.status == "live" and server_value(a, "temp") == 0.9)
    assert binding.reason == ""
    binding.unlink()


def test_an_optimization_lock_refuses_and_snaps_back(clients):
    a = clients()
    register(a, "t", "float", 0.5, {"min": 0.0, "max": 1.0})
    binding = control_for(a.session, "t", throttle_ms=0)
    wait_until(lambda: binding.status == "live")
    a.run(a.context.start_optimization("t", "bayesian"))  # waits for external trials: locked
    try:
        binding.widget.set_state({"value": 0.9})
        wait_until(lambda: binding.status == "rejected")
        wait_until(lambda: binding.widget.value == 0.5)
        assert "optimiz" in binding.reason
    finally:
        a.run(a.context.stop_optimization("t"))
    binding.unlink()


def test_a_constraint_change_reshapes_the_live_slider(clients):
    a, other = clients(), clients()
    register(a, "lr", "float", 0.5, {"min": 0.0, "max": 2.0})
    binding = control_for(a.session, "lr")
    wait_until(lambda: binding.status == "live")
    register(other, "lr", "float", 4.0, {"min": 3.0, "max": 5.0, "step": 0.5}, replace=True)
    wait_until(lambda: binding.widget.min == 3.0, what="the new range")
    assert (binding.widget.max, binding.widget.step, binding.widget.value) == (5.0, 0.5, 4.0)
    register(other, "lr", "float", 1.0, {"min": -1.0, "max": 1.5}, replace=True)
    wait_until(lambda: binding.widget.max == 1.5 and binding.widget.value == 1.0)
    assert binding.widget.min == -1.0
    binding.unlink()


def test_a_panel_swaps_the_control_when_another_kind_fits(clients):
    from dspex_notebook.widgets import VariablePanel

    a, other = clients(), clients()
    register(a, "lr", "float", 0.5, {"min": 0.0, "max": 2.0})
    register(a, "mode", "string", "a")
    panel = VariablePanel(a.session, ["lr", "mode"])
    wait_until(lambda: set(panel.status.values()) == {"live"})
    register(other, "lr", "float", 7.0, {"min": 0.0}, replace=True)  # no max: a number box
    register(other, "mode", "string", "b", {"enum": ["a", "b"]}, replace=True)
    wait_until(lambda: isinstance(panel.bindings["lr"].widget, ipywidgets.FloatText))
    wait_until(lambda: isinstance(panel.bindings["mode"].widget, ipywidgets.Dropdown))
    assert panel.rows["lr"].children[0] is panel.bindings["lr"].widget
    wait_until(lambda: panel.bindings["lr"].widget.value == 7.0)
    assert panel.bindings["mode"].widget.value == "b"
    panel.stop()


# ---------------------------------------------------------------------------------------------
# status line


def test_status_states_connecting_live_pending_deleted(clients):
    a = clients()
    clock = FakeClock(10.0)
    register(a, "x", "integer", 1, {"min": 0, "max": 10})
    binding = control_for(a.session, "x", throttle_ms=100, clock=clock)
    wait_until(lambda: binding.status == "live")
    assert "data-state='live'" in binding.status_widget.value
    binding.widget.set_state({"value": 2})
    binding.widget.set_state({"value": 3})  # waits for the trailing write
    a.sync()
    assert binding.status == "pending" and "pending" in binding.status_widget.value
    advance(a, clock, 0.2)
    wait_until(lambda: binding.status == "live")
    a.run(a.context.delete_variable("x"))
    wait_until(lambda: binding.status == "deleted")
    assert binding.widget.disabled and "deleted" in binding.status_widget.value
    register(a, "x", "integer", 5, {"min": 0, "max": 10})
    wait_until(lambda: binding.status == "live" and binding.widget.value == 5)
    assert not binding.widget.disabled
    binding.unlink()


def test_status_reconnecting_then_stale_then_live_again(tmp_path):
    from wg_helpers import Client

    from dspex_notebook.server import EmbeddedServer

    db = tmp_path / "store.sqlite3"
    srv = EmbeddedServer(db, write_runtime_file=False).start()
    port, token = srv.config.port or int(srv.address.rsplit(":", 1)[1]), srv.token
    a = Client(srv, "reconnect")
    clock = FakeClock(0.0)
    try:
        register(a, "x", "integer", 1, {"min": 0, "max": 10})
        binding = control_for(a.session, "x", clock=clock, stale_after=5.0)
        wait_until(lambda: binding.status == "live")
        srv.stop()
        wait_until(lambda: binding.status == "reconnecting", what="reconnecting")
        assert "reconnecting" in binding.status_widget.value
        advance(a, clock, 6.0)
        wait_until(lambda: binding.status == "stale", what="stale")
        assert "data-state='stale'" in binding.status_widget.value
        srv = EmbeddedServer(db, port=port, token=token, write_runtime_file=False).start()
        for _ in range(200):  # let the hub's backoff sleeps (on the fake clock) pass
            advance(a, clock, 0.5)
            if binding.status == "live":
                break
        wait_until(lambda: binding.status == "live", what="live again")
        binding.unlink()
    finally:
        a.close()
        srv.stop()


# ---------------------------------------------------------------------------------------------
# unlink


def test_unlink_releases_the_watch_and_the_observers(clients):
    a, other = clients(), clients()
    register(a, "x", "integer", 1, {"min": 0, "max": 10})
    binding = control_for(a.session, "x", throttle_ms=0)
    wait_until(lambda: binding.status == "live")
    hub = a.context._hub
    watches = len(hub._watches)
    binding.unlink()
    binding.unlink()  # idempotent
    a.sync()
    assert len(hub._watches) == watches - 1 and binding.status == "unlinked"
    other.run(other.context.set_variable("x", 7))
    binding.widget.set_state({"value": 9})
    a.sync()
    assert binding.widget.value == 9 and server_value(a, "x") == 7 and binding.writes == 0


def test_closing_the_widget_unlinks(clients):
    a = clients()
    register(a, "x", "integer", 1, {"min": 0, "max": 10})
    binding = control_for(a.session, "x")
    wait_until(lambda: binding.status == "live")
    hub = a.context._hub
    watches = len(hub._watches)
    binding.widget.close()
    a.sync()
    assert binding.closed and len(hub._watches) == watches - 1


def test_bind_needs_a_notebook_session():
    with pytest.raises(TypeError, match="needs the notebook's `session`"):
        Binding(ipywidgets.IntSlider(), object(), "x")


# ---------------------------------------------------------------------------------------------
# history scrubber


def test_history_scrubber_shows_versions_follows_writes_and_restores(clients):
    from dspex_notebook.widgets import HistoryScrubber

    a, other = clients(), clients()
    register(a, "lr", "float", 0.1)
    for v in (0.2, 0.3):
        a.run(a.context.set_variable("lr", v, metadata={"reason": f"try {v}"}))
    scrub = HistoryScrubber(a.session, "lr")
    assert (scrub.slider.min, scrub.slider.max, scrub.slider.value) == (0, 2, 2)
    assert "0.3" in scrub.detail.value and "reason=try 0.3" in scrub.detail.value
    assert scrub.restore.disabled  # the newest version is what the variable holds
    scrub.slider.value = 0
    assert "0.1" in scrub.detail.value and "data-version='0'" in scrub.detail.value
    assert "owner" in scrub.detail.value or "by" in scrub.detail.value
    other.run(other.context.set_variable("lr", 0.4))  # a new version: the range grows
    wait_until(lambda: scrub.slider.max == 3, what="the new version")
    assert scrub.slider.value == 0  # not moved away from what the user looks at
    scrub.restore_selected()
    wait_until(lambda: scrub.slider.max == 4 and scrub.slider.value == 4, what="the rollback")
    assert server_value(a, "lr") == 0.1 and "restored version 0 as version 4" in scrub.detail.value
    assert history(a, "lr")[0]["metadata"]["rollback_to"] == "0"
    scrub.stop()
