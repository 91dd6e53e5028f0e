"""Plain data types shared by client and server (no I/O, no grpc)."""

from __future__ import annotations

import datetime as _dt
import enum
from dataclasses import dataclass, field
from typing import Any


class VariableType(enum.StrEnum):
    """The variable types of the spec, as their wire names."""

    FLOAT = "float"
    INTEGER = "integer"
    STRING = "string"
    BOOLEAN = "boolean"
    CHOICE = "choice"
    MODULE = "module"
    EMBEDDING = "embedding"
    TENSOR = "tensor"
    LIST = "list"
    DICT = "dict"


TYPE_NAMES: tuple[str, ...] = tuple(t.value for t in VariableType)

#: Names other implementations use for the same types (Elixir's ``:map``, Python habits).
TYPE_ALIASES: dict[str, str] = {"map": "dict", "int": "integer", "bool": "boolean", "str": "string"}


@dataclass(frozen=True, slots=True)
class Variable:
    """A variable as stored on the server: value plus everything known about it.

    ``version`` starts at 0 and grows by one per write; ``mod_revision`` is the store-wide
    revision of the last write and ``create_revision`` the one of its registration.
    """

    id: str
    name: str
    type: str
    value: Any
    constraints: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    version: int = 0
    mod_revision: int = 0
    create_revision: int = 0
    source: str = "python"
    updated_at: _dt.datetime | None = None
    optimizing: bool = False
    #: the owning session (a dspex server says; empty from a v0.4.x server)
    session_id: str = field(default="", compare=False)

    def as_dict(self) -> dict[str, Any]:
        """The metadata view used by ``get_variables(..., include_metadata=True)``."""
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "constraints": dict(self.constraints),
            "metadata": dict(self.metadata),
            "version": self.version,
            "mod_revision": self.mod_revision,
            "create_revision": self.create_revision,
            "source": self.source,
            "updated_at": self.updated_at,
            "optimizing": self.optimizing,
        }

    def _fields(self) -> tuple[tuple[str, Any], ...]:
        return (
            ("value", self.value),
            ("type", self.type),
            ("version", self.version),
            ("constraints", self.constraints),
            ("metadata", self.metadata),
            ("id", self.id),
            ("updated_at", self.updated_at),
        )

    def _repr_html_(self) -> str:
        from html import escape

        rows = "".join(
            f"<tr><th style='text-align:left'>{escape(k)}</th>"
            f"<td style='text-align:left'><code>{escape(repr(v))}</code></td></tr>"
            for k, v in self._fields()
        )
        return f"<table><caption><b>{escape(self.name)}</b></caption>{rows}</table>"

    def _repr_markdown_(self) -> str:
        rows = "\n".join(f"| {k} | `{repr(v).replace('|', '/')}` |" for k, v in self._fields())
        return f"**{self.name}**\n\n| field | value |\n|---|---|\n{rows}"


@dataclass(frozen=True, slots=True)
class VariableUpdate:
    """One change of a watched variable, as a watch yields it.

    The spec's fields (``variable_id``, ``value``, ``old_value``, ``metadata``, ``timestamp``,
    ``source``) plus ``name``, ``revision`` (store-wide, of the write), ``version`` (of the
    variable), ``type`` and ``kind``:

    * ``"initial"``: the current value when the watch started (``include_initial``);
    * ``"set"``: a write; ``"register"``: (re-)registration, ``constraints`` may have changed;
    * ``"delete"``: the variable was deleted (``value`` is None, ``old_value`` the last value);
    * ``"resync"``: the watch lost its place (history compacted, the server's store changed or
      it fell behind) and relisted: ``value`` is the current value, changes in between may be
      missing.

    ``upstream_of`` is set on an update that a watch with ``include_upstream=True`` delivers
    because a variable its watched ones depend on changed: ``name`` is that upstream variable,
    ``upstream_of`` the watched variables that depend on it (directly or not); see
    :attr:`is_upstream`.
    """

    variable_id: str
    name: str
    value: Any
    old_value: Any
    kind: str
    revision: int
    version: int = 0
    type: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    timestamp: _dt.datetime | None = None
    source: str = ""
    constraints: dict[str, Any] | None = None
    upstream_of: tuple[str, ...] = ()

    @property
    def is_upstream(self) -> bool:
        """True for an upstream change (see ``upstream_of``)."""
        return bool(self.upstream_of)


@dataclass(frozen=True, slots=True)
class Trial:
    """One proposal of an optimization run to evaluate (``next_trial``): report its metrics with
    ``report_trial(variable, trial.id, metrics)``."""

    id: int
    value: Any
    optimization_id: str
    variable: str
