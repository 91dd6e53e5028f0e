"""Which ipywidgets control shows a variable, and how a control follows a constraint change.

The mapping (docs/widgets.md) follows Panel's ``param`` and ipywidgets' ``interact``:

=========================================  ==================================================
type + constraints                         control (kind)
=========================================  ==================================================
float / integer with ``min`` and ``max``   ``FloatSlider`` / ``IntSlider`` ("slider"), step
                                           from the ``step`` constraint (floats: range/100)
float / integer missing a bound            ``FloatText`` / ``IntText`` ("number")
choice, module with ``choices``;           ``Dropdown`` ("dropdown")
string with ``enum``/``choices``
boolean                                    ``Checkbox`` ("checkbox")
string, module without choices             ``Text`` ("text")
embedding, tensor, list, dict              read-only ``HTML`` summary ("summary"): shape,
                                           dtype, norm and a sparkline for arrays
=========================================  ==================================================

:func:`reshape` changes a live control in place when the constraints change (new bounds, step,
choices) as long as the same kind still fits; otherwise it says so and the caller decides (a
panel swaps the control).
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

from .._display import short

__all__ = ["kind_for", "kind_of_widget", "make_control", "reshape", "summary_html", "to_widget"]

NUMERIC = ("float", "integer")
_SPARK = "▁▂▃▄▅▆▇█"


def kind_for(type_name: str, constraints: dict[str, Any] | None) -> str:
    """The control kind for a variable of ``type_name`` with ``constraints``."""
    c = constraints or {}
    if type_name in NUMERIC:
        return "slider" if "min" in c and "max" in c else "number"
    if type_name == "boolean":
        return "checkbox"
    if type_name in ("choice", "module"):
        return "dropdown" if c.get("choices") else "text"
    if type_name == "string":
        return "dropdown" if c.get("enum") or c.get("choices") else "text"
    return "summary"


def kind_of_widget(widget: Any) -> str:
    """The kind of a widget given to ``bind`` (so it gets the matching behaviour)."""
    import ipywidgets as w

    if isinstance(widget, (w.FloatSlider, w.IntSlider, w.FloatLogSlider, w.SelectionSlider)):
        return "slider"
    if isinstance(widget, (w.FloatText, w.IntText, w.BoundedFloatText, w.BoundedIntText)):
        return "number"
    if isinstance(widget, (w.Dropdown, w.Select, w.RadioButtons, w.ToggleButtons)):
        return "dropdown"
    if isinstance(widget, (w.Checkbox, w.ToggleButton)):
        return "checkbox"
    if isinstance(widget, (w.Text, w.Textarea)):
        return "text"
    if isinstance(widget, (w.HTML, w.Label, w.HTMLMath)):
        return "summary"
    if "value" in widget.traits():
        return "value"
    raise TypeError(f"cannot bind a {type(widget).__name__}: it has no 'value' trait")


def _choices(type_name: str, c: dict[str, Any]) -> list[str]:
    if type_name == "string":
        return list(c.get("enum") or c.get("choices") or [])
    return list(c.get("choices") or [])


def _float_step(c: dict[str, Any]) -> float:
    if "step" in c:
        return float(c["step"])
    span = float(c["max"]) - float(c["min"])
    return span / 100 if span > 0 else 0.01


def make_control(type_name: str, constraints: dict[str, Any] | None, value: Any, *,
                 description: str = "", continuous_update: bool = True) -> tuple[Any, str]:
    """A new control for the variable and its kind."""
    import ipywidgets as w

    c = dict(constraints or {})
    kind = kind_for(type_name, c)
    style = {"description_width": "initial"}
    common: dict[str, Any] = {"description": description, "style": style}
    if kind == "slider":
        cls = w.FloatSlider if type_name == "float" else w.IntSlider
        step = _float_step(c) if type_name == "float" else int(c.get("step", 1))
        widget = cls(min=c["min"], max=c["max"], step=step, value=to_widget(kind, value),
                     continuous_update=continuous_update, **common)
        if type_name == "float":
            widget.readout_format = _readout_format(step)
    elif kind == "number":
        cls = w.FloatText if type_name == "float" else w.IntText
        widget = cls(value=to_widget(kind, value), continuous_update=False, **common)
        if "step" in c:
            widget.step = c["step"]
    elif kind == "dropdown":
        options = _choices(type_name, c)
        if value not in options:  # an old value outside new choices: show it, don't lose it
            options = [*options, value]
        widget = w.Dropdown(options=options, value=value, **common)
    elif kind == "checkbox":
        widget = w.Checkbox(value=bool(value), indent=False, **common)
    elif kind == "text":
        widget = w.Text(value=str(value), continuous_update=continuous_update, **common)
    else:
        widget = w.HTML(value=summary_html(value), **common)
    return widget, kind


def _readout_format(step: float) -> str:
    """Enough decimals to show every grid point (0.05 -> .2f, 0.001 -> .3f, 5 -> .0f)."""
    if step <= 0 or not math.isfinite(step):
        return ".3g"
    text = repr(round(step, 8))
    decimals = len(text.split(".")[1].rstrip("0")) if "." in text and "e" not in text else 3
    return f".{min(decimals, 8)}f"


def to_widget(kind: str, value: Any) -> Any:
    """A variable's value as the control's ``value`` trait takes it."""
    if kind == "summary":
        return summary_html(value)
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", 0) == 0:
        value = item()  # numpy scalar
    return value


def reshape(widget: Any, kind: str, type_name: str, constraints: dict[str, Any] | None) -> bool:
    """Apply new constraints to a live control of ``kind``; False when the kind no longer fits
    (e.g. a slider whose bound was removed). Call inside ``widget.hold_sync()``."""
    c = dict(constraints or {})
    if kind_for(type_name, c) != kind:
        return False
    if kind == "slider":
        lo, hi = c["min"], c["max"]
        # ipywidgets refuses min > max at every step: move the bound that keeps them ordered first
        if lo > widget.max:
            widget.max, widget.min = hi, lo
        else:
            widget.min, widget.max = lo, hi
        if type_name == "float":
            widget.step = _float_step(c)
            widget.readout_format = _readout_format(widget.step)
        else:
            widget.step = int(c.get("step", 1))
    elif kind == "number" and "step" in c:
        widget.step = c["step"]
    elif kind == "dropdown":
        options = _choices(type_name, c)
        current = widget.value
        if current is not None and current not in options:
            options = [*options, current]
        widget.options = options
        if current is not None:
            widget.value = current
    return True


def summary_html(value: Any) -> str:
    """A read-only summary: arrays as shape, dtype, norm and a sparkline; others as a short repr."""
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "dtype"):
        import numpy as np

        arr = np.asarray(value)
        flat = arr.astype(np.float64, copy=False).ravel() if arr.dtype != bool else arr.ravel()
        norm = float(np.linalg.norm(flat)) if flat.size and arr.dtype != bool else 0.0
        return (f"<span class='dspex-summary'><code>{escape(str(arr.dtype))}"
                f"{escape(str(list(shape)))}</code> norm {norm:.4g} "
                f"<span class='dspex-spark'>{sparkline(flat)}</span></span>")
    return f"<code class='dspex-summary'>{escape(short(value, 80))}</code>"


def sparkline(values: Any, width: int = 32) -> str:
    """Unicode block characters for the first ``width`` values (min..max scaled)."""
    import numpy as np

    arr = np.asarray(values, dtype=np.float64).ravel()[:width]
    arr = arr[np.isfinite(arr)]
    if not arr.size:
        return ""
    lo, hi = float(arr.min()), float(arr.max())
    if hi - lo < 1e-12:
        return _SPARK[3] * arr.size
    idx = np.round((arr - lo) / (hi - lo) * (len(_SPARK) - 1)).astype(int)
    return "".join(_SPARK[i] for i in idx)
