"""The live optimization panel: progress, best so far, elapsed, ETA, a live plot, Pause and Stop.

The run is server-held (docs/optimization.md): any client can show its panel, and all of them
see the same run — the notebook that started it, a second notebook, a colleague's kernel. A
panel refreshes on the IO loop: each trial's proposal is a write of the variable, so the
panel's watch wakes it, and a slow poll (``poll_s``) catches what writes do not show (the last
report, the end of the run). Each refresh reads the run's status and only the trials newer
than the last one seen, and is throttled to ``fps`` together with the plot, so a run writing
hundreds of trials a second costs the panel a few small reads a second and never a backlog.

**Stop** calls ``stop_optimization``: the server ends the run at once (the variable keeps the
best value), so the driver's next call — in whichever client evaluates the objective — learns
that it is over: it takes effect within one trial everywhere. **Pause refresh** only stops
this panel's reads and redraws; the run goes on.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
from html import escape
from typing import Any

from .._display import short
from .._watch import Clock, MonotonicClock
from ..plotting.buffer import TrialBuffer
from .binding import _resolve

log = logging.getLogger("dspex_notebook.widgets")

__all__ = ["OptimizationPanel"]


def _fmt_seconds(s: float | None) -> str:
    if s is None or s != s or s < 0:
        return "–"
    s = int(round(s))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class OptimizationPanel:
    """The panel of variable ``name``'s current (or last) optimization run.

    Parameters:
        session: the notebook's ``session``.
        name: the optimized variable.
        fps: refreshes (status + new trials + plot frame) per second at most.
        poll_s: seconds between refreshes when no write wakes the panel.
    """

    def __init__(self, session: Any, name: str, *, fps: float = 4.0, poll_s: float = 1.0,
                 clock: Clock | None = None, timeout: float = 10.0) -> None:
        import ipywidgets

        from ..plotting.live import LivePlot
        from ..plotting.render import draw_trials

        self.context, self.portal = _resolve(session, None)
        self.name = name
        self.names = [name]
        self.buffer = TrialBuffer()
        self.status: dict[str, Any] = {}
        self.run_id: str | None = None
        self.refreshes = 0
        self.error = ""
        self._interval = 1.0 / fps
        self._poll = poll_s
        self._clock: Clock = clock or MonotonicClock()
        self._closed = False
        self.progress = ipywidgets.IntProgress(value=0, min=0, max=1, description="",
                                               bar_style="info")
        self.progress.add_class("dspex-progress")
        self.info = ipywidgets.HTML()
        self.info.add_class("dspex-opt-info")
        self.pause = ipywidgets.ToggleButton(value=False, description="Pause refresh",
                                             icon="pause", tooltip="stop redrawing (the run goes on)")
        self.stop_button = ipywidgets.Button(description="Stop", button_style="danger", icon="stop",
                                             tooltip="stop the run (the best value stays)")
        self.stop_button.add_class("dspex-stop")
        self.plot = LivePlot(self.portal.loop, lambda: self.buffer.copy(),
                             lambda fig, data: draw_trials(fig, data, name),
                             fps=fps, width=8.0, height=3.0)
        self.widget = ipywidgets.VBox([
            ipywidgets.HBox([self.progress, self.pause, self.stop_button]), self.info,
            self.plot.widget])
        self.widget.add_class("dspex-opt-panel")
        self.pause.observe(self._on_pause, "value")
        self.stop_button.on_click(self._on_stop)

        async def start() -> Any:
            watch = self.context.watch_variable(name, include_initial=False)
            self._wake = asyncio.Event()
            await self._refresh()
            return watch

        self._watch = self.portal.run(start(), timeout)
        self._tasks = [self.portal.submit(self._pump()), self.portal.submit(self._loop())]

    # ------------------------------------------------------------------------------------------
    # IO loop

    async def _pump(self) -> None:
        async for _update in self._watch:
            self._wake.set()  # a trial's proposal (or any write) was committed

    async def _loop(self) -> None:
        last = self._clock.now()
        while not self._closed:
            try:
                await asyncio.wait_for(self._wake.wait(), self._poll)
            except TimeoutError:
                pass
            self._wake.clear()
            wait = last + self._interval - self._clock.now()
            if wait > 0:
                await self._clock.sleep(wait)
            last = self._clock.now()
            if self.pause.value:
                continue
            try:
                await self._refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # shown on the panel; the next refresh tries again
                self.error = f"{type(exc).__name__}: {exc}"
                self._render()

    async def _refresh(self) -> None:
        ctx = self.context
        status = await ctx.get_optimization_status(self.name)
        run_id = status.get("optimization_id")
        if run_id != self.run_id:  # a new run of this variable: start over
            self.run_id = run_id
            self.buffer = TrialBuffer(status.get("direction") or "maximize",
                                      status.get("metric") or "objective")
        if run_id:
            since = self.buffer.last_timestamp - 1e-3 if self.buffer.last_timestamp else None
            limit = max(100, int(status.get("max_iterations") or 0) + 10)
            trials = await ctx.get_optimization_history(self.name, limit=min(limit, 10_000),
                                                        since=since, optimizer_id=run_id)
            if self.buffer.add(trials):
                self.plot.dirty()
        self.status = status
        self.error = ""
        self.refreshes += 1
        if self.refreshes == 1:
            self.plot.dirty()
        self._render()

    def _render(self) -> None:
        s = self.status
        iteration = int(s.get("iteration") or 0)
        total = s.get("max_iterations")
        running = bool(s.get("is_optimizing"))
        with self.progress.hold_sync():
            # a finished run fills the bar (it may end before its budget: converged, exhausted)
            self.progress.max = max(1, int(total or iteration) if running else iteration)
            self.progress.value = min(iteration, self.progress.max)
            self.progress.description = f"{iteration}/{total if total else '?'}"
            self.progress.bar_style = "info" if running else "success"
        started = s.get("started_at")
        ended = None if running else s.get("last_update")
        elapsed = ((ended or _dt.datetime.now(_dt.UTC)) - started).total_seconds() if started else None
        eta = (elapsed / iteration * (int(total) - iteration)
               if running and elapsed is not None and iteration and total else None)
        state = ("running" if running else
                 f"finished ({s.get('stop_reason')})" if s.get("optimization_id") else "no run")
        best = s.get("best_value")
        best_obj = (s.get("best_metrics") or {}).get(self.buffer.metric)
        fields = [
            ("state", state),
            ("iteration", f"{iteration} / {total if total else '?'}"),
            ("best", "–" if best is None else short(best, 30)
             + (f" ({self.buffer.metric} {best_obj:.4g})" if isinstance(best_obj, (int, float)) else "")),
            ("elapsed", _fmt_seconds(elapsed)),
            ("ETA", _fmt_seconds(eta) if running else "–"),
        ]
        cells = "".join(f"<span class='dspex-opt-{k.lower()}' data-value='{escape(str(v))}'>"
                        f"<b>{escape(k)}</b> {escape(str(v))}</span> &nbsp; " for k, v in fields)
        if s.get("waiting_for_trial") is not None and running:
            cells += "<span>waiting for a trial report</span> &nbsp; "
        if self.error:
            cells += f"<span class='dspex-opt-error'>⚠ {escape(self.error)}</span>"
        self.info.value = (f"<div class='dspex-opt' data-state='{'running' if running else 'done'}'>"
                           f"<b>{escape(self.name)}</b> {escape(str(s.get('optimizer') or ''))} "
                           f"run {escape(str(self.run_id or '–'))}<br>{cells}</div>")
        self.stop_button.disabled = not running

    # ------------------------------------------------------------------------------------------
    # buttons (any thread)

    def _on_pause(self, change: dict[str, Any]) -> None:
        self.plot.paused = bool(change["new"])
        self.pause.description = "Resume refresh" if change["new"] else "Pause refresh"
        if not change["new"]:
            self.portal.loop.call_soon_threadsafe(self._wake.set)

    def _on_stop(self, _button: Any = None) -> None:
        self.stop_button.disabled = True

        async def stop() -> None:
            try:
                await self.context.stop_optimization(self.name)
            except Exception as exc:  # e.g. it ended meanwhile: say so
                self.error = f"stop: {exc}"
            await self._refresh()

        self.portal.submit(stop())

    def stop_run(self) -> None:
        """Press Stop (from code)."""
        self._on_stop()

    def stop(self) -> None:
        """Stop refreshing (the run goes on): ``%var unwatch NAME``, unloading the extension."""
        if self._closed:
            return
        self._closed = True
        try:
            self.portal.loop.call_soon_threadsafe(self._watch.close)
        except RuntimeError:
            return
        for task in self._tasks:
            task.cancel()
        self.plot.close()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def __repr__(self) -> str:
        s = self.status
        return (f"<OptimizationPanel {self.name} run={self.run_id} "
                f"iteration={s.get('iteration')}/{s.get('max_iterations')} "
                f"{'running' if s.get('is_optimizing') else 'done'}>")
