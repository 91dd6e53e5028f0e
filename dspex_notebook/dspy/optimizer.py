"""``VariableAwareOptimizer``: a DSPy teleprompter configured from variables.

``variable_mappings`` maps an optimizer setting to a variable: ``{setting: variable_name}``.
At each :meth:`VariableAwareOptimizer.compile` the variables are read and each setting is
translated — never dropped silently:

* a parameter of the optimizer's ``__init__`` (``max_bootstrapped_demos``, ``max_labeled_demos``,
  ``max_rounds``, ``metric_threshold``, ...) is passed as is (an integral float becomes an int
  where the parameter's default is an int);
* a parameter of its ``compile`` (``num_trials``, ``minibatch_size`` for MIPROv2, ...) is passed
  to ``compile``;
* ``teacher_<kwarg>`` (``teacher_temperature``, ``teacher_max_tokens``, ``teacher_top_p``):
  DSPy has no such arguments. The teacher runs under ``dspy.context(**teacher_settings)``, so
  they become ``teacher_settings={"lm": teacher_lm.copy(<kwarg>=value)}``, ``teacher_lm`` being
  the one given, else ``dspy.settings.lm`` of the caller. DSPy's precedence still applies: a
  teacher predictor's own ``config`` wins over the LM's kwargs, and BootstrapFewShot's rounds
  after the first use ``temperature=1.0`` (its rule);
* anything else is an error that lists what the optimizer accepts.

``compile`` runs in a worker thread (``asyncio.to_thread``: the caller's DSPy settings,
``dspy.context`` included, are carried into it). Afterwards the results are written as
variables (registered on first use; every compile adds a version, so ``get_variable_history``
is the record): ``<prefix>score`` (the metric on ``valset`` — or on the trainset when no valset
is given — in [0, 1], with ``dspy.Evaluate``; absent without a ``metric``), ``<prefix>demos``
(demos in the compiled program) and ``<prefix>result`` (a dict: optimizer, the settings used,
demos per predictor, score, where it was measured).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from ._access import SessionAccess
from ._knobs import KNOBS, META_PROGRAM, META_ROLE, coerce
from ._load import load_dspy

dspy = load_dspy()


class VariableAwareOptimizer:
    """See the module docstring. Made by
    :meth:`DSPyOptimizationBridge.create_variable_aware_optimizer`."""

    def __init__(self, session: Any, optimizer_class: type, variable_mappings: Mapping[str, str],
                 kwargs: Mapping[str, Any], *, teacher_lm: Any = None,
                 result_prefix: str | None = None) -> None:
        self.access = SessionAccess(session)
        self.session = session
        self.optimizer_class = optimizer_class
        self.variable_mappings = dict(variable_mappings)
        self.kwargs = dict(kwargs)
        self.teacher_lm = teacher_lm
        self.prefix = f"{optimizer_class.__name__.lower()}_" if result_prefix is None else result_prefix
        self._init = _parameters(optimizer_class)  # the signature of a class is its __init__'s
        self._compile = _parameters(getattr(optimizer_class, "compile", None))
        for setting in self.variable_mappings:
            self._kind(setting)  # unknown settings fail here, not at compile time
            if setting in self.kwargs:
                raise ValueError(f"{setting!r} is given both as a keyword argument and in "
                                 "variable_mappings; give it once")
        self.optimizer: Any = None  #: the teleprompter of the latest compile
        self.last_result: dict[str, Any] | None = None

    def _kind(self, setting: str) -> str:
        if setting.startswith("teacher_") and setting[len("teacher_"):] in KNOBS:
            if "teacher_settings" not in self._init:
                raise ValueError(f"{setting!r}: {self.optimizer_class.__name__} has no "
                                 "teacher_settings to carry a teacher LM setting")
            return "teacher"
        if setting in self._init and setting not in ("self", "metric"):
            return "init"
        if setting in self._compile and setting not in ("self", "student", "trainset"):
            return "compile"
        accepted = sorted({*self._init, *self._compile} - {"self", "metric", "student", "trainset"})
        if "teacher_settings" in self._init:
            accepted += [f"teacher_{k}" for k in KNOBS]
        raise ValueError(f"{self.optimizer_class.__name__} has no setting {setting!r} "
                         f"(variable_mappings may use: {', '.join(accepted)})")

    def settings(self, values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(init_kwargs, compile_kwargs)`` for the variables' ``values`` (see the module
        docstring)."""
        init = dict(self.kwargs)
        compile_kwargs: dict[str, Any] = {}
        teacher: dict[str, Any] = {}
        for setting, variable in self.variable_mappings.items():
            value = values[variable]
            kind = self._kind(setting)
            if kind == "teacher":
                key = setting[len("teacher_"):]
                teacher[key] = coerce(key, value, variable)
            elif kind == "init":
                init[setting] = _like(self._init[setting], value)
            else:
                compile_kwargs[setting] = _like(self._compile[setting], value)
        if teacher:
            base = self.teacher_lm or dspy.settings.lm
            if base is None:
                raise ValueError(f"{', '.join('teacher_' + k for k in teacher)} set the teacher's LM, "
                                 "but there is no LM: pass teacher_lm= or use dspy.context(lm=...)")
            merged = dict(init.get("teacher_settings") or {})
            merged["lm"] = (merged.get("lm") or base).copy(**teacher)
            init["teacher_settings"] = merged
        return init, compile_kwargs

    async def compile(self, student: Any, *, trainset: Sequence[Any], teacher: Any = None,
                      valset: Sequence[Any] | None = None, **compile_kwargs: Any) -> Any:
        """Read the variables, compile ``student`` off the event loop, write the results.

        Returns:
            The compiled program.
        """
        values = await self.access.values(self.variable_mappings.values())
        init, from_vars = self.settings(values)
        self.optimizer = self.optimizer_class(**init)
        extra = {**from_vars, **compile_kwargs}
        if teacher is not None:
            extra["teacher"] = teacher
        if valset is not None and "valset" in self._compile:
            extra["valset"] = valset
        program = await asyncio.to_thread(self.optimizer.compile, student, trainset=trainset, **extra)
        score, measured_on = await self._score(program, trainset, valset)
        demos = {name: len(getattr(p, "demos", []) or []) for name, p in program.named_predictors()}
        result = {
            "optimizer": self.optimizer_class.__name__,
            "settings": {s: values[v] for s, v in self.variable_mappings.items()},
            "demos_per_predictor": demos, "score": score, "score_on": measured_on,
        }
        await self._write(score, sum(demos.values()), result)
        self.last_result = result
        return program

    async def _score(self, program: Any, trainset: Sequence[Any],
                     valset: Sequence[Any] | None) -> tuple[float | None, str]:
        metric = self.kwargs.get("metric")
        if metric is None:
            return None, "none"
        devset, where = (valset, "valset") if valset is not None else (trainset, "trainset")
        evaluate = dspy.Evaluate(devset=list(devset), metric=metric, num_threads=1,
                                 display_progress=False)
        outcome = await asyncio.to_thread(evaluate, program)
        return float(outcome.score) / 100.0, where

    async def _write(self, score: float | None, demos: int, result: dict[str, Any]) -> None:
        meta = {META_ROLE: "result", META_PROGRAM: self.optimizer_class.__name__}
        entries: list[tuple[str, str, Any, dict[str, Any]]] = [
            (f"{self.prefix}demos", "integer", demos, {"min": 0}),
            (f"{self.prefix}result", "dict", result, {}),
        ]
        if score is not None:
            entries.insert(0, (f"{self.prefix}score", "float", score, {"min": 0.0, "max": 1.0}))
        existing = await self.session.get_variables([e[0] for e in entries],
                                                    defaults={e[0]: _MISSING for e in entries})
        new = [{"name": n, "type": t, "initial_value": v, "constraints": c, "metadata": meta}
               for n, t, v, c in entries if existing[n] is _MISSING]
        updates = {n: v for n, _t, v, _c in entries if existing[n] is not _MISSING}
        if new:
            await self.session.register_variables(new)
        await self.access.write(updates, f"dspy:{self.optimizer_class.__name__}.compile")


_MISSING = "\x00dspex-missing\x00"  # a default no real result variable can hold


def _parameters(fn: Any) -> dict[str, Any]:
    if fn is None:
        return {}
    params = inspect.signature(fn).parameters
    return {name: p.default for name, p in params.items()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _like(default: Any, value: Any) -> Any:
    """``value`` in the type of the parameter's default (JSON may turn 4 into 4.0)."""
    if isinstance(default, bool) or isinstance(value, bool):
        return value
    if isinstance(default, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    return value
