"""Errors raised by search spaces and optimizers.

Both are :class:`~dspex_notebook._errors.InvalidArgument` (so also ``ValueError``): a bad space
or a bad optimizer config is a bad request, and the wire layer maps it to INVALID_ARGUMENT.
"""

from __future__ import annotations

from .._errors import InvalidArgument

__all__ = ["OptimizerConfigError", "SearchSpaceError"]


class SearchSpaceError(InvalidArgument):
    """A variable cannot be searched: wrong type, missing bounds, or a value outside the space."""


class OptimizerConfigError(InvalidArgument):
    """An optimizer name, config key or config value is not valid."""
