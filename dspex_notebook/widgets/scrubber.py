"""A history scrubber: a slider over a variable's versions, with value, author and time, and a
Restore button that rolls back (``rollback_variable``: a NEW version with the old value;
history stays append-only). New versions written by anyone extend the slider live."""

from __future__ import annotations

import asyncio
import datetime as _dt
from html import escape
from typing import Any

from .._display import short
from .binding import _resolve

__all__ = ["HistoryScrubber"]


class HistoryScrubber:
    """Scrub through ``name``'s last ``limit`` versions; :attr:`widget` shows it."""

    def __init__(self, session: Any, name: str, *, limit: int = 100, timeout: float = 10.0) -> None:
        import ipywidgets

        self.context, self.portal = _resolve(session, None)
        self.name = name
        self.names = [name]
        self.limit = limit
        self.entries: dict[int, dict[str, Any]] = {}  # version -> history entry
        self.message = ""
        self.slider = ipywidgets.IntSlider(description="version", min=0, max=0,
                                           continuous_update=True)
        self.slider.add_class("dspex-scrubber")
        self.detail = ipywidgets.HTML()
        self.restore = ipywidgets.Button(description="Restore this version", icon="undo",
                                         tooltip="write this version's value as a new version")
        self.restore.add_class("dspex-restore")
        self.widget = ipywidgets.VBox([ipywidgets.HBox([self.slider, self.restore]), self.detail])
        self.slider.observe(lambda _c: self._render(), "value")
        self.restore.on_click(lambda _b: self.restore_selected())
        self._closed = False

        async def start() -> Any:
            await self._reload(follow=True)
            return self.context.watch_variable(name, include_initial=False, throttle_ms=100)

        self._watch = self.portal.run(start(), timeout)
        self._task = self.portal.submit(self._pump())

    async def _pump(self) -> None:
        async for update in self._watch:
            if update.kind != "delete":
                # follow the newest version only if the user was looking at it
                await self._reload(follow=self.slider.value == self.slider.max)

    async def _reload(self, follow: bool) -> None:
        entries = await self.context.get_variable_history(self.name, limit=self.limit)
        self.entries = {int(e["version"]): e for e in entries}
        if not self.entries:
            return
        lo, hi = min(self.entries), max(self.entries)
        with self.slider.hold_sync():
            if lo > self.slider.max:
                self.slider.max, self.slider.min = hi, lo
            else:
                self.slider.min, self.slider.max = lo, hi
            if follow:
                self.slider.value = hi
        self._render()

    def selected(self) -> dict[str, Any] | None:
        """The history entry the slider is on (None if that version is not kept)."""
        return self.entries.get(int(self.slider.value))

    def _render(self) -> None:
        entry = self.selected()
        if entry is None:
            self.detail.value = f"<i>version {self.slider.value} is not in the kept history</i>"
            return
        when = entry.get("updated_at")
        when_text = (when.strftime("%Y-%m-%d %H:%M:%S UTC") if isinstance(when, _dt.datetime)
                     else str(when or "–"))
        meta = entry.get("metadata") or {}
        newest = int(entry["version"]) == max(self.entries)
        rows = [("value", short(entry.get("value"), 80)), ("version", str(entry["version"])),
                ("by", str(entry.get("updated_by") or "")), ("at", when_text),
                ("metadata", ", ".join(f"{k}={v}" for k, v in meta.items()) or "–")]
        cells = "".join(f"<tr><th style='text-align:left;padding-right:8px'>{escape(k)}</th>"
                        f"<td class='dspex-h-{k}'><code>{escape(v)}</code></td></tr>" for k, v in rows)
        note = f"<div class='dspex-h-message'>{escape(self.message)}</div>" if self.message else ""
        self.detail.value = (f"<div class='dspex-history' data-version='{entry['version']}'>"
                             f"<table>{cells}</table>{note}</div>")
        self.restore.disabled = newest

    def restore_selected(self) -> None:
        """Roll back to the selected version (from any thread; the result shows below)."""
        entry = self.selected()
        if entry is None:
            return
        version = int(entry["version"])
        self.restore.disabled = True

        async def rollback() -> None:
            try:
                new = await self.context.rollback_variable(self.name, version, "history scrubber")
                self.message = f"restored version {version} as version {new}"
            except Exception as exc:  # e.g. an optimization run holds the variable
                self.message = f"restore refused: {exc}"
            await self._reload(follow=True)

        asyncio.run_coroutine_threadsafe(rollback(), self.portal.loop)

    def stop(self) -> None:
        """Stop following new versions (``%var unwatch NAME``)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.portal.loop.call_soon_threadsafe(self._watch.close)
        except RuntimeError:
            return
        self._task.cancel()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def __repr__(self) -> str:
        return f"<HistoryScrubber {self.name} versions {self.slider.min}..{self.slider.max}>"
