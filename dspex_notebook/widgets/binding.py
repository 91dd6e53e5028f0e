"""Two-way binding of an ipywidgets control to a session variable.

Threads. Everything a :class:`Binding` decides happens on the session's IO loop (the portal
thread, ``dspex_notebook._loop``): the watch is read there, remote values are applied to the
widget from there (ipywidgets supports trait updates from a background thread, and they reach
the browser while a cell is busy), and writes are sent from there. The widget observer runs in
whatever thread ipykernel hands the frontend's message to; it only hands the value over with
``call_soon_threadsafe`` and never blocks.

Echoes (ipywidgets #3195/#3394, Panel's "boomerang"). Every write of a binding carries its id
and a sequence number in the write's metadata. The watch delivers events in revision order, so:

* an event with our own tag is our echo: it is never applied (the widget already shows that
  value or a newer one) and confirms our writes up to its sequence number;
* a foreign event that arrives while one of our writes is unconfirmed, or while the user has a
  value waiting to be sent, is older than our write (its echo would have come first): it is
  dropped, so the handle never jumps back while someone drags;
* otherwise the foreign value is the last writer's and is applied (throttled, coalesced).

Two people dragging the same variable therefore converge on whoever wrote last.

Writes are throttled (``throttle_ms``, default 100 ms) and coalesced to the latest value, with a
trailing write so the final position always lands; at most one write is in flight. A refused
write (constraint, type, permission, optimization lock) snaps the control back to the server's
value and shows the reason on the status line. Time comes from an injectable clock.

Status (:attr:`Binding.status`, shown by :attr:`Binding.status_widget`): ``connecting``,
``live``, ``pending`` (our write is not confirmed yet), ``rejected`` (the last write was
refused; :attr:`Binding.reason` says why), ``reconnecting`` (the watch stream is down),
``stale`` (down for longer than ``stale_after`` seconds, or the server cannot watch),
``deleted`` and ``unlinked``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
from collections.abc import Callable
from html import escape
from typing import Any

from .._display import short
from .._errors import DspexError
from .._types import VariableUpdate
from .._watch import Clock, MonotonicClock
from . import controls

log = logging.getLogger("dspex_notebook.widgets")

__all__ = ["Binding", "TAG", "SEQ"]

#: write-metadata keys a binding tags its writes with
TAG = "dspex.binding"
SEQ = "dspex.seq"

_NONE: Any = object()
_ids = itertools.count(1)
_LABELS = {"connecting": "connecting…", "live": "live", "pending": "pending…",
           "reconnecting": "reconnecting…", "stale": "stale", "rejected": "rejected",
           "deleted": "deleted", "unlinked": "unlinked"}


def _resolve(session: Any, portal: Any) -> tuple[Any, Any]:
    """``(SessionContext, Portal)`` from the notebook's ``session`` or a context + portal."""
    context = getattr(session, "context", None)
    if context is not None and portal is None:
        portal = getattr(session, "portal", None)
    if context is None:
        context = session
    if portal is None or not hasattr(context, "watch_variable"):
        raise TypeError(
            "bind() needs the notebook's `session` (from %load_ext dspex_notebook), or a "
            "SessionContext together with the Portal whose loop it runs on (portal=...)")
    return context, portal


class Binding:
    """``widget.value`` <-> variable ``name`` of ``session``, both ways (module docstring).

    Parameters:
        widget: an ipywidgets control with a ``value`` trait (see :func:`control_for` to make
            one from the variable's type and constraints).
        session: the notebook's ``session`` (or a SessionContext, with ``portal``).
        name: the variable.
        throttle_ms: at most one write per this many ms while the user moves the control.
        apply_hz: at most this many remote values per second applied to the control.
        continuous_update: write while dragging (True) or on release (False); None leaves the
            widget's own setting.
        stale_after: seconds of a broken watch before the status says ``stale``.
        clock: time source (``dspex_notebook.testing.FakeClock`` in tests).
        status_widget: where the status line goes (a new ``ipywidgets.HTML`` by default).
        on_kind_change: ``callback(binding)`` when new constraints need another kind of control
            (a panel replaces the control); without it the status line says so.
    """

    def __init__(self, widget: Any, session: Any, name: str, *, throttle_ms: int = 100,
                 apply_hz: float = 20.0, continuous_update: bool | None = None,
                 stale_after: float = 5.0, clock: Clock | None = None,
                 status_widget: Any = None, on_kind_change: Callable[[Binding], Any] | None = None,
                 portal: Any = None, kind: str | None = None, timeout: float = 10.0) -> None:
        import ipywidgets

        self.context, self.portal = _resolve(session, portal)
        if throttle_ms < 0 or apply_hz <= 0:
            raise ValueError("throttle_ms must be >= 0 and apply_hz > 0")
        self.widget = widget
        self.name = name
        self.kind = kind or controls.kind_of_widget(widget)
        self.id = f"{os.getpid()}.{next(_ids)}.{id(self) & 0xFFFFFF:x}"
        self.status_widget = status_widget if status_widget is not None else ipywidgets.HTML()
        self.on_kind_change = on_kind_change
        self._throttle = throttle_ms / 1000
        self._apply_interval = 1.0 / apply_hz
        self._stale_after = stale_after
        self._clock: Clock = clock or MonotonicClock()
        #: what the server has (from the watch): value, version, revision, type, constraints
        self.server_value: Any = _NONE
        self.version = -1
        self.revision = 0
        self.type = ""
        self.constraints: dict[str, Any] = {}
        self.source = ""
        self.reason = ""  #: why the last write was refused ("" when it was not)
        self.note = ""  #: extra text on the status line (e.g. "constraints changed")
        self.deleted = False
        #: counters (tests, benchmarks): values applied, own echoes and stale values dropped,
        #: writes sent and refused
        self.applied = self.echoes = self.dropped = self.writes = self.refused = 0
        self._seq = 0
        self._inflight = False
        self._unconfirmed: set[int] = set()
        self._echoed = 0  # the highest sequence number whose echo arrived
        self._want: Any = _NONE
        self._last_send = -1e18
        self._last_apply = -1e18
        self._trailing: asyncio.Task[None] | None = None
        self._apply_task: asyncio.Task[None] | None = None
        self._apply_pending: VariableUpdate | None = None
        #: another writer's update that came while our write was pending (see _on_update)
        self._held: VariableUpdate | None = None
        self._stale_task: asyncio.Task[None] | None = None
        self._down_since: float | None = None
        self._applying: int | None = None
        self._idle: asyncio.Event | None = None
        self._closed = False
        self._shown = ""
        if continuous_update is not None and "continuous_update" in widget.traits():
            widget.continuous_update = continuous_update
        if self.portal.in_portal_thread():  # e.g. a panel replacing a control from a watch
            self._watch, self._remove_listener = self._open()
        else:
            self._watch, self._remove_listener = self.portal.run(self._start(), timeout)
        self._pump_task = self.portal.submit(self._pump())
        widget.observe(self._on_widget_change, "value")
        widget.observe(self._on_comm, "comm")
        self._render()

    # ------------------------------------------------------------------------------------------
    # state

    @property
    def status(self) -> str:
        """One word; see the module docstring."""
        if self._closed:
            return "unlinked"
        if self.deleted:
            return "deleted"
        hub = self._watch.status
        if hub == "unsupported":
            return "stale"
        if hub != "live":
            if self._down_since is not None and (
                    self._clock.now() - self._down_since >= self._stale_after):
                return "stale"
            return "connecting" if self.server_value is _NONE else "reconnecting"
        if self.server_value is _NONE:
            return "connecting"
        if self.pending:
            return "pending"
        if self.reason:
            return "rejected"
        return "live"

    @property
    def pending(self) -> bool:
        """True while a write of ours is waiting, in flight, or not yet confirmed by its echo."""
        return (self._inflight or bool(self._unconfirmed) or self._want is not _NONE
                or self._trailing is not None)

    @property
    def closed(self) -> bool:
        return self._closed

    def _render(self) -> None:
        state = self.status
        text = _LABELS.get(state, state)
        if state == "stale" and self._watch.status == "unsupported":
            text = "stale (this server cannot watch: values are not live)"
        elif state == "stale":
            text = "stale (the watch is down; reconnecting…)"
        detail = self.reason if state == "rejected" else ""
        if self.note:
            detail = f"{detail}; {self.note}" if detail else self.note
        html = (f"<span class='dspex-status' data-state='{state}' data-name='{escape(self.name)}'>"
                f"{escape(text)}{(': ' + escape(detail)) if detail else ''}</span>")
        if html != self._shown:
            self._shown = html
            self.status_widget.value = html
        if not self.pending and self._held is not None and not self._closed:
            held, self._held = self._held, None
            self._apply_later(held)
        if self._idle is not None and not self.pending:
            self._idle.set()

    # ------------------------------------------------------------------------------------------
    # IO loop: watch side

    async def _start(self) -> tuple[Any, Callable[[], None]]:
        return self._open()

    def _open(self) -> tuple[Any, Callable[[], None]]:
        watch = self.context.watch_variable(self.name, include_initial=True)
        remove = self.context.on_watch_status(self._on_hub_status)
        self._idle = asyncio.Event()
        return watch, remove

    def _on_hub_status(self, status: str) -> None:
        if self._closed:
            return
        if status in ("reconnecting", "connecting"):
            if self._down_since is None:
                self._down_since = self._clock.now()
                self._stale_task = asyncio.get_running_loop().create_task(self._stale_timer())
        elif status == "live":
            self._down_since = None
            if self._stale_task is not None:
                self._stale_task.cancel()
                self._stale_task = None
        self._render()

    async def _stale_timer(self) -> None:
        await self._clock.sleep(self._stale_after)
        self._stale_task = None
        self._render()

    async def _pump(self) -> None:
        try:
            async for update in self._watch:
                self._on_update(update)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # shown, not lost in a thread
            log.exception("binding of %r stopped", self.name)
            self.note = f"watch stopped: {type(exc).__name__}: {exc}"
            self._render()

    def _on_update(self, u: VariableUpdate) -> None:
        if self._closed:
            return
        if u.kind == "delete":
            self.deleted = True
            self.server_value = _NONE
            self._set_disabled(True)
            self._render()
            return
        if self.deleted:
            self.deleted = False
            self._set_disabled(False)
        self.server_value, self.version, self.revision = u.value, u.version, u.revision
        self.source = u.source
        if u.type:
            self.type = u.type
        mine = u.metadata.get(TAG) == self.id
        if u.constraints is not None and (u.constraints != self.constraints or u.kind == "initial"):
            self.constraints = dict(u.constraints)
            # bounds and value in one message: the control never shows a clamped value
            take = not mine and not self.pending
            self._reshape(u.value if take else _NONE)
            if take:
                self._last_apply = self._clock.now()
                self.applied += 1
                self._render()
                return
        if mine:  # our echo: confirms, never applied
            self.echoes += 1
            try:
                seq = int(u.metadata.get(SEQ, "0"))
            except ValueError:
                seq = 0
            self._echoed = max(self._echoed, seq)
            self._unconfirmed = {s for s in self._unconfirmed if s > seq}
            self._held = None  # our write came after whatever another writer did before it
            self._render()
            return
        if u.kind in ("initial", "resync"):  # a snapshot is after every write we saw complete
            self._unconfirmed.clear()
        if self.pending:
            # older than our unconfirmed write, or the user is moving it — unless our write's
            # echo came first and only its reply is still on the way: then this update is
            # newer than our write and must show once we are idle (held until then; our
            # next echo, being newer still, drops it)
            self.dropped += 1
            self._held = u
            self._render()
            return
        self._apply_later(u)

    def _apply_later(self, u: VariableUpdate) -> None:
        now = self._clock.now()
        due = self._last_apply + self._apply_interval
        if now >= due and self._apply_task is None:
            self._apply(u)
            return
        self._apply_pending = u  # coalesce: only the latest is applied
        if self._apply_task is None:
            self._apply_task = asyncio.get_running_loop().create_task(
                self._apply_after(max(0.0, due - now)))

    async def _apply_after(self, delay: float) -> None:
        await self._clock.sleep(delay)
        self._apply_task = None
        u, self._apply_pending = self._apply_pending, None
        if u is not None and not self._closed and not self.pending:
            self._apply(u)

    def _apply(self, u: VariableUpdate) -> None:
        self._last_apply = self._clock.now()
        self._set_value(u.value)
        self.applied += 1
        self._render()

    def _set_value(self, value: Any) -> None:
        """Put ``value`` into the widget from this thread without taking it for a user change."""
        widget_value = controls.to_widget(self.kind, value)
        widget = self.widget
        outer, self._applying = self._applying, threading.get_ident()
        try:
            with widget.hold_sync():
                if self.kind == "dropdown" and widget_value not in widget.options:
                    widget.options = [*widget.options, widget_value]
                widget.value = widget_value
        except Exception as exc:  # e.g. a value the control cannot hold: say so
            self.note = f"cannot show {short(value)}: {exc}"
        finally:
            self._applying = outer

    def _reshape(self, value: Any = _NONE) -> None:
        outer, self._applying = self._applying, threading.get_ident()
        try:
            with self.widget.hold_sync():
                fits = controls.reshape(self.widget, self.kind, self.type, self.constraints)
                if fits and value is not _NONE:
                    self._set_value(value)
        finally:
            self._applying = outer
        if fits:
            self.note = ""
            return
        if self.on_kind_change is not None:
            try:
                self.on_kind_change(self)
            except Exception:
                log.exception("on_kind_change of %r failed", self.name)
            return
        self.note = (f"constraints changed to {self.constraints}: a "
                     f"{controls.kind_for(self.type, self.constraints)} fits them now")

    def _set_disabled(self, disabled: bool) -> None:
        if "disabled" in self.widget.traits():
            self.widget.disabled = disabled

    # ------------------------------------------------------------------------------------------
    # user side

    def _on_widget_change(self, change: dict[str, Any]) -> None:
        if self._closed or self._applying == threading.get_ident() or self.kind == "summary":
            return
        value = change["new"]
        if self.portal.in_portal_thread():
            self._user_changed(value)
            return
        try:
            self.portal.loop.call_soon_threadsafe(self._user_changed, value)
        except RuntimeError:  # the IO loop is gone (extension unloaded)
            pass

    def _user_changed(self, value: Any) -> None:
        if self._closed:
            return
        self._want = value
        self._schedule_write()
        self._render()

    def _schedule_write(self) -> None:
        if self._inflight or self._want is _NONE or self._closed:
            return
        now = self._clock.now()
        due = self._last_send + self._throttle
        if now >= due:
            self._send(now)
        elif self._trailing is None:
            self._trailing = asyncio.get_running_loop().create_task(self._send_after(due - now))

    async def _send_after(self, delay: float) -> None:
        await self._clock.sleep(delay)
        self._trailing = None
        self._schedule_write()
        self._render()

    def _send(self, now: float) -> None:
        value, self._want = self._want, _NONE
        self._seq += 1
        self._inflight = True
        self._last_send = now
        self.writes += 1
        asyncio.get_running_loop().create_task(self._write(self._seq, value))

    async def _write(self, seq: int, value: Any) -> None:
        metadata = {"source": "widget", TAG: self.id, SEQ: str(seq)}
        try:
            await self.context.set_variable(self.name, value, metadata=metadata)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._inflight = False
            await self._refused(value, exc)
        else:
            self._inflight = False
            self.reason = ""
            # the echo may have come before the reply; without a watch no echo will ever come
            if seq > self._echoed and self._watch.status != "unsupported":
                self._unconfirmed.add(seq)
        self._schedule_write()
        self._render()

    async def _refused(self, value: Any, exc: BaseException) -> None:
        self.refused += 1
        message = str(exc) if isinstance(exc, DspexError) else f"{type(exc).__name__}: {exc}"
        self.reason = f"{short(value, 40)} refused: {message}"
        log.info("widget write of %r refused: %s", self.name, message)
        if self._want is not _NONE or self._closed:  # the user has moved on: that write decides
            return
        try:  # snap back to what the server has (the watch may not have told us everything)
            info = await self.context.get_variable_info(self.name)
        except Exception as read_error:
            self.note = f"cannot read the current value: {read_error}"
            return
        if self._want is not _NONE or self._closed:
            return
        self.server_value, self.version, self.type = info.value, info.version, info.type
        if info.constraints != self.constraints:
            self.constraints = dict(info.constraints)
            self._reshape()
        self._set_value(info.value)

    # ------------------------------------------------------------------------------------------
    # lifecycle

    async def wait_idle(self) -> None:
        """(IO loop) Wait until no write is waiting, in flight or unconfirmed."""
        assert self._idle is not None
        while self.pending and not self._closed:
            self._idle.clear()
            await self._idle.wait()

    def _on_comm(self, change: dict[str, Any]) -> None:
        if change.get("new") is None:  # widget.close(): release everything
            self.unlink()

    def unlink(self) -> None:
        """Stop the binding: release the watch and the widget observers (idempotent). A value
        the user set that was not written yet is still written once."""
        if self._closed:
            return
        self._closed = True
        for handler, trait in ((self._on_widget_change, "value"), (self._on_comm, "comm")):
            try:
                self.widget.unobserve(handler, trait)
            except ValueError:
                pass
        if not self.portal.running:
            return
        try:
            self.portal.loop.call_soon_threadsafe(self._release)
        except RuntimeError:  # the IO loop is already closed
            return
        self._pump_task.cancel()
        self._render()

    def _release(self) -> None:
        self._watch.close()
        self._remove_listener()
        for task in (self._trailing, self._apply_task, self._stale_task):
            if task is not None:
                task.cancel()
        self._trailing = self._apply_task = self._stale_task = None
        if self._want is not _NONE and not self._inflight:  # the final position still lands
            value, self._want = self._want, _NONE
            self._seq += 1
            asyncio.get_running_loop().create_task(self._write(self._seq, value))
        if self._idle is not None:
            self._idle.set()

    def box(self) -> Any:
        """The control above its status line (what displaying the binding shows)."""
        import ipywidgets

        return ipywidgets.VBox([self.widget, self.status_widget])

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.box())

    def __repr__(self) -> str:
        value = "–" if self.server_value is _NONE else short(self.server_value)
        return f"<Binding {self.name}={value} v{self.version} {self.status}>"
