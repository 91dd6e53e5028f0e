"""Data behind the live plots, without matplotlib (testable and cheap to fill from the IO loop).

* :class:`SeriesBuffer`: a variable's values over time, fed by watch updates (bounded).
* :class:`TrialBuffer`: an optimization run's trials, fed by ``get_optimization_history``
  entries (upserted by run and iteration, so a pending trial that completes replaces itself),
  with the best-so-far line computed for the run's direction.

Each buffer counts its changes (:attr:`changes`), so a renderer redraws only when it moved.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from .._types import VariableUpdate

__all__ = ["SeriesBuffer", "TrialBuffer"]


def _seconds(when: Any) -> float | None:
    if isinstance(when, _dt.datetime):
        return when.timestamp()
    if isinstance(when, (int, float)):
        return float(when)
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    return None


class SeriesBuffer:
    """The last ``maxlen`` values of a variable: ``(seconds, value, version, source)``."""

    def __init__(self, name: str, maxlen: int = 2000) -> None:
        self.name = name
        self.points: deque[tuple[float, Any, int, str]] = deque(maxlen=maxlen)
        self.changes = 0
        self.type = ""

    def add(self, update: VariableUpdate, now: float | None = None) -> None:
        """Append a watch update (deletes and resyncs of an unchanged version are skipped)."""
        if update.kind == "delete":
            return
        if self.points and update.version == self.points[-1][2] and update.kind != "set":
            return
        t = _seconds(update.timestamp)
        if t is None:
            t = now if now is not None else _dt.datetime.now(_dt.UTC).timestamp()
        self.type = update.type or self.type
        self.points.append((t, update.value, update.version, update.source))
        self.changes += 1

    def copy(self) -> SeriesBuffer:
        """A copy to render from another thread while this one keeps filling."""
        other = SeriesBuffer(self.name, self.points.maxlen or 2000)
        other.points.extend(self.points)
        other.changes, other.type = self.changes, self.type
        return other

    def xy(self) -> tuple[list[float], list[float]]:
        """Seconds since the first point, and the numeric values (booleans as 0/1)."""
        if not self.points:
            return [], []
        t0 = self.points[0][0]
        xs, ys = [], []
        for t, value, _v, _s in self.points:
            y = _number(value)
            if y is not None:
                xs.append(t - t0)
                ys.append(y)
        return xs, ys


class TrialBuffer:
    """Trials of one optimization run (or of the runs of one variable)."""

    def __init__(self, direction: str = "maximize", metric: str = "objective") -> None:
        self.direction = direction
        self.metric = metric
        self.trials: dict[tuple[str, int], dict[str, Any]] = {}
        self.changes = 0
        self.last_timestamp = 0.0  #: the newest trial timestamp seen (for ``since=``)

    @classmethod
    def from_history(cls, history: Iterable[Mapping[str, Any]], direction: str = "maximize",
                     metric: str = "objective") -> TrialBuffer:
        buffer = cls(direction, metric)
        buffer.add(history)
        return buffer

    def copy(self) -> TrialBuffer:
        """A copy to render from another thread while this one keeps filling."""
        other = TrialBuffer(self.direction, self.metric)
        other.trials = dict(self.trials)
        other.changes, other.last_timestamp = self.changes, self.last_timestamp
        return other

    def clear(self) -> None:
        self.trials.clear()
        self.last_timestamp = 0.0
        self.changes += 1

    def add(self, entries: Iterable[Mapping[str, Any]]) -> int:
        """Upsert history entries; returns how many were new or changed."""
        changed = 0
        for entry in entries:
            key = (str(entry.get("optimization_id") or ""), int(entry["iteration"]))
            row = dict(entry)
            if self.trials.get(key) != row:
                self.trials[key] = row
                changed += 1
            ts = _seconds(row.get("timestamp"))
            if ts is not None and ts > self.last_timestamp:
                self.last_timestamp = ts
        if changed:
            self.changes += 1
        return changed

    def ordered(self) -> list[dict[str, Any]]:
        """Trials by run start then iteration (runs in the order they were first seen)."""
        runs: dict[str, int] = {}
        for run, _i in self.trials:
            runs.setdefault(run, len(runs))
        return [self.trials[k] for k in sorted(self.trials, key=lambda k: (runs[k[0]], k[1]))]

    def complete(self) -> list[dict[str, Any]]:
        return [t for t in self.ordered() if t.get("state") == "complete"
                and _number(t.get("objective")) is not None]

    def series(self) -> tuple[list[int], list[float]]:
        """Completed trials: ``(iterations, objectives)``."""
        done = self.complete()
        return [int(t["iteration"]) for t in done], [float(t["objective"]) for t in done]

    def best_so_far(self) -> tuple[list[int], list[float]]:
        """The best objective after each completed trial (for the run's direction)."""
        xs, ys = self.series()
        best: list[float] = []
        for y in ys:
            if not best:
                best.append(y)
            elif self.direction == "minimize":
                best.append(min(best[-1], y))
            else:
                best.append(max(best[-1], y))
        return xs, best

    def values_and_objectives(self) -> tuple[list[Any], list[float], list[str]]:
        """Trial values against objectives; non-numeric values (choices, modules) become
        category positions, whose labels are the third list."""
        done = self.complete()
        labels: list[str] = []
        xs: list[Any] = []
        numeric = all(_number(t.get("value")) is not None for t in done)
        for t in done:
            if numeric:
                xs.append(float(t["value"]))
            else:
                label = str(t.get("value"))
                if label not in labels:
                    labels.append(label)
                xs.append(float(labels.index(label)))
        return xs, [float(t["objective"]) for t in done], labels

    def best(self) -> dict[str, Any] | None:
        done = self.complete()
        if not done:
            return None
        key = (lambda t: t["objective"]) if self.direction != "minimize" else (lambda t: -t["objective"])
        return max(done, key=key)

    def __len__(self) -> int:
        return len(self.trials)
