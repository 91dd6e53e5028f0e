"""Live plots: a Figure rendered to PNG into an ``ipywidgets.Image``, from the IO thread.

ipympl cannot repaint while the cell that owns the figure is busy (ipympl #258), and displaying
from a thread is unsupported; setting ``Image.value`` from a background thread is documented
and reaches the browser while cells run. So a :class:`LivePlot` keeps one Figure, and a render
task on the IO loop redraws it when its data changed — at most ``fps`` times a second, in a
worker thread (``asyncio.to_thread``) so the loop keeps serving watches and widget writes
meanwhile. Frames are coalesced: however fast the data changes, there is at most one render in
flight and one pending, so there is never a backlog.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable
from typing import Any

from .._types import VariableUpdate
from .._watch import Clock, MonotonicClock
from .buffer import SeriesBuffer
from .render import draw_series, new_figure, png

log = logging.getLogger("dspex_notebook.plotting")

__all__ = ["LivePlot", "ValuePlot"]


class LivePlot:
    """An ``ipywidgets.Image`` (:attr:`widget`) showing ``draw(fig, snapshot())``, redrawn on
    :meth:`dirty`.

    Parameters:
        loop: the IO loop the render task runs on.
        snapshot: returns a copy of the data (called on the IO loop, where the data changes).
        draw: ``draw(fig, data)`` updates the figure (called in a worker thread with the
            snapshot, never two at once).
        fps: at most this many frames per second.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, snapshot: Callable[[], Any],
                 draw: Callable[[Any, Any], Any], *,
                 fps: float = 4.0, width: float = 7.0, height: float = 3.0,
                 clock: Clock | None = None) -> None:
        import ipywidgets

        if fps <= 0:
            raise ValueError("fps must be > 0")
        self.widget = ipywidgets.Image(format="png", layout=ipywidgets.Layout(max_width="100%"))
        self.widget.add_class("dspex-plot")
        self.figure = new_figure(width, height)
        self.frames = 0  #: PNGs rendered
        self.paused = False
        self._draw = draw
        self._snapshot = snapshot
        self._interval = 1.0 / fps
        self._clock: Clock = clock or MonotonicClock()
        self._loop = loop
        self._wake = asyncio.Event()
        self._task: concurrent.futures.Future[None] = asyncio.run_coroutine_threadsafe(
            self._run(), loop)
        self.rendering = False

    def dirty(self) -> None:
        """The data changed: draw a frame soon (call on the IO loop)."""
        self._wake.set()

    def dirty_threadsafe(self) -> None:
        self._loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        last = -1e18
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.paused:
                continue
            wait = last + self._interval - self._clock.now()
            if wait > 0:
                await self._clock.sleep(wait)
            self._wake.clear()  # changes meanwhile are in this frame
            last = self._clock.now()
            self.rendering = True
            try:
                data = await asyncio.to_thread(self._render, self._snapshot())
            except Exception:
                log.exception("live plot frame failed")
                continue
            finally:
                self.rendering = False
            self.widget.value = data
            self.frames += 1

    def _render(self, data: Any) -> bytes:
        self._draw(self.figure, data)
        return png(self.figure)

    def close(self) -> None:
        self._task.cancel()


class ValuePlot:
    """A variable's value over time, live (:attr:`widget`); :meth:`stop` ends it."""

    def __init__(self, session: Any, name: str, *, fps: float = 4.0, units: str = "",
                 maxlen: int = 2000) -> None:
        from ..widgets.binding import _resolve

        self.context, self.portal = _resolve(session, None)
        self.name = name
        self.buffer = SeriesBuffer(name, maxlen)
        self.units = units
        self.plot = LivePlot(self.portal.loop, self.buffer.copy,
                             lambda fig, data: draw_series(fig, data, units), fps=fps)
        self.widget = self.plot.widget

        async def start() -> Any:
            return self.context.watch_variable(name, include_initial=True)

        self._watch = self.portal.run(start())
        self._task = self.portal.submit(self._pump())

    async def _pump(self) -> None:
        async for update in self._watch:
            self._add(update)

    def _add(self, update: VariableUpdate) -> None:
        self.buffer.add(update)
        self.plot.dirty()

    def stop(self) -> None:
        try:
            self.portal.loop.call_soon_threadsafe(self._watch.close)
        except RuntimeError:
            pass
        self._task.cancel()
        self.plot.close()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
