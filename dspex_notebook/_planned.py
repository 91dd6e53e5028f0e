"""Features of the spec that do not exist yet, so that asking for one gets one line saying so
(an :class:`~._errors.Unsupported`) instead of an ``AttributeError``, an argparse "invalid
choice" or "Variable not found: export".

When a feature lands, its real method/command takes precedence (``__getattr__`` only sees names
that are not defined; the magic and the CLI dispatch their real commands first), and its entry
here should go.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from ._errors import Unsupported

#: SessionContext methods of variables-api-spec.md not built yet -> the feature they belong to
METHODS = {
    "create_variable_aware_optimizer": "the DSPy bridge",
    "sync_dspy_parameters": "the DSPy bridge",
}

#: ``%var WORD`` / ``dspex-notebook WORD`` commands not built yet -> feature
COMMANDS: dict[str, str] = {}  # every command of the spec exists now


def not_yet(feature: str) -> Unsupported:
    """The one-line error for a feature that is not built yet."""
    from . import __version__

    return Unsupported(f"{feature} is not available yet in dspex_notebook {__version__} (planned;"
                       " README.md 'What works today' lists what is)")


def method(owner: str, name: str) -> Callable[..., NoReturn]:
    """The stand-in for a planned method ``name`` (raises when called, awaited or not).

    Raises:
        AttributeError: ``name`` is not a planned method of the spec (a real typo).
    """
    feature = METHODS.get(name)
    if feature is None:
        raise AttributeError(f"{owner!r} object has no attribute {name!r}")

    def planned(*args: Any, **kwargs: Any) -> NoReturn:
        raise not_yet(f"{name}() ({feature})")

    planned.__name__ = planned.__qualname__ = name
    planned.__doc__ = f"Not available yet: {feature}."
    return planned
