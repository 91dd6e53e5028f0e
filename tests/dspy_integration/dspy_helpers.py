"""Shared by the DSPy integration tests (a plain module: test packages here have no
``__init__``, so the root conftest's ``require`` cannot be imported by name)."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

from dspex_notebook.dspy import available

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")  # as tests/conftest.py


def need_dspy() -> ModuleType:
    """``require(available(), 'dspy')`` at module level: dspy, or skip the module locally
    (fail in CI, whose ``make test`` installs the ``dspy`` extra)."""
    if available():
        return importlib.import_module("dspy")
    if IN_CI:
        pytest.fail("the dspy extra is required in CI but is not installed "
                    "(make's .venv/.synced installs it with --extra dspy)", pytrace=False)
    pytest.skip("the dspy extra is not installed (pip install 'dspex-notebook[dspy]')",
                allow_module_level=True)
    raise AssertionError("unreachable")
