"""``%var watch``: a display that updates in place while variables change.

A :class:`LiveView` is an ``ipywidgets.HTML`` (one row per variable: value, version, revision,
who wrote it) fed by a :class:`~dspex_notebook.Watch` that runs on the IO thread. The IO thread
sets the widget's ``value`` directly — ipywidgets documents trait updates from background
threads, and they reach the browser while a cell is busy — instead of calling ``display`` from
a thread (which ipykernel does not support). Updates are throttled per variable (20 Hz by
default) so a fast writer cannot flood the frontend; the status line says "reconnecting…"
while the watch stream is down. :meth:`LiveView.stop` (``%var unwatch``, unloading the
extension, kernel shutdown) closes the watch.
"""

from __future__ import annotations

import asyncio
import logging
from html import escape
from typing import TYPE_CHECKING, Any

from .._display import short
from .._types import VariableUpdate

if TYPE_CHECKING:
    from .proxy import NotebookSession

log = logging.getLogger("dspex_notebook.notebook")

_STATUS = {"live": "live", "connecting": "connecting…", "reconnecting": "reconnecting…",
           "unsupported": "this server cannot watch (snakepit v0.4.x?)", "closed": "stopped",
           "idle": "starting…"}


class LiveView:
    """Live rows for ``names``; the widget is :attr:`widget` (shown by ``_ipython_display_``)."""

    def __init__(self, session: NotebookSession, names: list[str], throttle_ms: int = 50) -> None:
        import ipywidgets

        self.names = list(dict.fromkeys(names))
        self.session = session
        self.rows: dict[str, VariableUpdate] = {}
        self.widget = ipywidgets.HTML(value=self._html("starting…"))
        self.updates = 0
        ctx = session.context
        portal = session.portal

        async def start() -> tuple[Any, Any]:
            watch = ctx.watch_variables(self.names, include_initial=True, throttle_ms=throttle_ms)
            remove = ctx.on_watch_status(lambda _status: self._render())
            return watch, remove

        self._watch, self._remove_listener = portal.run(start())
        self._task = portal.submit(self._pump())

    async def _pump(self) -> None:
        try:
            async for update in self._watch:
                self.rows[update.name] = update
                self.updates += 1
                self._render()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # shown on the status line, not lost in a thread
            log.exception("%%var watch stopped")
            self.widget.value = self._html(f"stopped: {type(exc).__name__}: {exc}")

    @property
    def status(self) -> str:
        return "closed" if self._watch.closed else self._watch.status

    def _render(self) -> None:
        self.widget.value = self._html(_STATUS.get(self.status, self.status))

    def _html(self, status: str) -> str:
        rows = []
        for name in self.names:
            u = self.rows.get(name)
            if u is None:
                cells = (name, "–", "", "", "")
            elif u.kind == "delete":
                cells = (name, "(deleted)", str(u.version), str(u.revision), u.source)
            else:
                cells = (name, short(u.value), str(u.version), str(u.revision), u.source)
            rows.append("<tr>" + "".join(
                f"<td style='text-align:left;padding:0 8px'><code>{escape(c)}</code></td>"
                for c in cells) + "</tr>")
        head = "".join(f"<th style='text-align:left;padding:0 8px'>{h}</th>"
                       for h in ("name", "value", "version", "revision", "source"))
        return (f"<div class='dspex-watch'><table><thead><tr>{head}</tr></thead>"
                f"<tbody>{''.join(rows)}</tbody></table>"
                f"<small>watch: {escape(status)}</small></div>")

    def text(self) -> str:
        """The rows as plain text (terminals, logs)."""
        lines = []
        for name in self.names:
            u = self.rows.get(name)
            lines.append(f"{name} = {short(u.value)} (version {u.version})" if u is not None
                         and u.kind != "delete" else f"{name} = –")
        return "\n".join(lines + [f"[watch: {self.status}]"])

    def stop(self) -> None:
        """Close the watch and stop updating (idempotent)."""
        portal = self.session.portal
        if not portal.running:
            return
        try:
            portal.loop.call_soon_threadsafe(self._watch.close)
            portal.loop.call_soon_threadsafe(self._remove_listener)
        except RuntimeError:  # the IO loop is already closed
            return
        self._task.cancel()
        self.widget.value = self._html("stopped")

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def __repr__(self) -> str:
        return self.text()
