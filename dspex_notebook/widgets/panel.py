"""``control_for`` and the panel of controls that ``%var widget NAME ...`` shows."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .binding import Binding, _resolve
from .controls import make_control

log = logging.getLogger("dspex_notebook.widgets")

__all__ = ["VariablePanel", "bind", "control_for"]


def bind(widget: Any, session: Any, name: str, **options: Any) -> Binding:
    """Bind ``widget.value`` to variable ``name`` both ways; returns the :class:`Binding`.

    Parameters:
        widget: an ipywidgets control with a ``value`` trait.
        session: the notebook's ``session`` (``%load_ext dspex_notebook``).
        name: the variable (it should exist: its current value is shown at once).
        options: see :class:`Binding` (``throttle_ms``, ``continuous_update``, ``clock``, ...).

    Use :meth:`Binding.unlink` (or ``widget.close()``) to stop.
    """
    return Binding(widget, session, name, **options)


def control_for(session: Any, name: str, *, continuous_update: bool = True,
                **options: Any) -> Binding:
    """A control chosen from the variable's type and constraints (docs/widgets.md), bound to it.

    Returns the :class:`Binding`; its ``widget`` is the control, and displaying the binding
    shows the control above its status line.

    Raises:
        VariableNotFoundError: no such variable.
    """
    context, portal = _resolve(session, options.get("portal"))
    info = portal.run(context.get_variable_info(name), options.get("timeout", 10.0))
    widget, kind = make_control(info.type, info.constraints, info.value, description=name,
                                continuous_update=continuous_update)
    return Binding(widget, session, name, kind=kind, continuous_update=continuous_update,
                   **options)


class VariablePanel:
    """Labelled controls for several variables, each with its status line.

    A constraint change that needs another kind of control (a slider whose bound was removed,
    a text box that got choices) replaces that row's control in place.
    """

    def __init__(self, session: Any, names: list[str], **options: Any) -> None:
        import ipywidgets

        self.session = session
        self.names = list(dict.fromkeys(names))
        self.options = options
        self.bindings: dict[str, Binding] = {}
        self.rows: dict[str, Any] = {}
        try:
            for name in self.names:
                binding = control_for(session, name, on_kind_change=self._kind_changed, **options)
                self.bindings[name] = binding
                self.rows[name] = ipywidgets.HBox([binding.widget, binding.status_widget])
        except BaseException:  # e.g. the second name does not exist: release the first
            self.stop()
            raise
        self.widget = ipywidgets.VBox(list(self.rows.values()))
        self.widget.add_class("dspex-panel")

    def _kind_changed(self, binding: Binding) -> None:
        # on the IO thread, inside the watch's delivery: build the new control right after it
        asyncio.get_running_loop().create_task(self._replace(binding))

    async def _replace(self, old: Binding) -> None:
        from .controls import make_control

        name = old.name
        if self.bindings.get(name) is not old or old.closed:
            return
        try:
            info = await old.context.get_variable_info(name)
        except Exception as exc:
            old.note = f"cannot rebuild the control: {exc}"
            old._render()
            return
        old.unlink()
        old.widget.close()
        continuous = self.options.get("continuous_update", True)
        widget, kind = make_control(info.type, info.constraints, info.value, description=name,
                                    continuous_update=continuous)
        opts = {k: v for k, v in self.options.items() if k != "continuous_update"}
        binding = Binding(widget, self.session, name, kind=kind, continuous_update=continuous,
                          on_kind_change=self._kind_changed, **opts)
        self.bindings[name] = binding
        self.rows[name].children = (widget, binding.status_widget)

    @property
    def status(self) -> dict[str, str]:
        return {name: b.status for name, b in self.bindings.items()}

    def stop(self) -> None:
        """Unlink every control (``%var unwatch``, unloading the extension)."""
        for binding in self.bindings.values():
            binding.unlink()

    unlink = stop

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def __repr__(self) -> str:
        return "\n".join(repr(b) for b in self.bindings.values())
