"""``DSPyOptimizationBridge``: DSPy programs and optimizers driven by session variables.

* :meth:`~DSPyOptimizationBridge.sync_dspy_parameters` creates one variable per LM request
  kwarg in effect for each predictor (``cot_temperature``, ``cot_max_tokens``), typed and
  constrained (``_knobs.KNOBS``), and keeps program and variables in sync: variables →
  program as changes arrive (a watch) and at each call through the binding; program →
  variables with :meth:`~DSPyOptimizationBridge.push_dspy_parameters`. Values travel as typed
  variables (JSON on the wire), never pickled.
* :meth:`~DSPyOptimizationBridge.create_variable_aware_optimizer`: see ``optimizer.py``.
* :meth:`~DSPyOptimizationBridge.program_objective`: a DSPy program scored on a dev set as the
  ``objective`` of ``session.start_optimization``.
* :meth:`~DSPyOptimizationBridge.bind`: any other binding (program-wide LM kwargs, the model).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ._access import SessionAccess
from ._knobs import KNOBS, META_PROGRAM, META_ROLE, META_TARGET, Target, variable_name
from ._load import load_dspy
from .binding import ProgramBinding
from .optimizer import VariableAwareOptimizer

dspy = load_dspy()

DEFAULT_KNOBS = ("temperature", "max_tokens")
_MISSING = "\x00dspex-missing\x00"


class DSPyOptimizationBridge:
    """Bridge between a session's variables and DSPy programs and optimizers.

    Parameters:
        session_context: a SessionContext (or the notebook's ``session``).
    """

    def __init__(self, session_context: Any) -> None:
        self.session_context = session_context
        self.access = SessionAccess(session_context)
        self._optimization_tasks: dict[str, asyncio.Task[Any]] = {}
        self._registered_optimizers: dict[str, type] = {}
        self._bindings: dict[int, ProgramBinding] = {}

    # -- bindings ------------------------------------------------------------------------------

    async def bind(self, program: Any, bindings: Mapping[str, str], *,
                   lms: Mapping[str, Any] | None = None, lm: Any = None,
                   follow: bool = False) -> ProgramBinding:
        """Bind existing variables to knobs of ``program`` (targets: ``_knobs``); the values
        are read and applied now.

        Raises:
            VariableNotFoundError: a variable does not exist.
            ValueError / TypeError: a bad target, or a value the knob cannot take.
        """
        binding = ProgramBinding(self.session_context, program, bindings, lms=lms, lm=lm)
        await (binding.follow() if follow else binding.refresh())
        return binding

    async def sync_dspy_parameters(
        self, dspy_module: Any, variable_prefix: str = "", *,
        knobs: Iterable[str] = DEFAULT_KNOBS, lm: Any = None, follow: bool = True,
    ) -> dict[str, str]:
        """Create variables for the LM settings of every predictor of ``dspy_module``.

        For each predictor (``named_predictors()``) and each knob, the value in effect is the
        predictor's ``config`` entry, else its LM's (``predictor.lm``, else ``lm``, else
        ``dspy.settings.lm``) kwarg; a knob with no value in effect is bound only if its variable
        already exists. Names are
        ``<prefix><knob>`` for a one-predictor program (``cot_temperature``), else
        ``<prefix><path>_<knob>``. A variable that already exists keeps its value and the
        program takes it (the session is the source of truth); new ones start at the
        program's value. Each variable's metadata records its target (``dspy.target``).

        Parameters:
            dspy_module: the program.
            variable_prefix: prefix of the variable names.
            knobs: which request kwargs (of ``temperature max_tokens top_p n seed``).
            lm: the LM whose kwargs count for predictors without their own.
            follow: apply later variable changes to the program as they arrive.

        Returns:
            ``{variable_name: target}``, e.g. ``{"cot_temperature": "predict.config.temperature"}``.

        Raises:
            ValueError: no predictors, an unknown knob, or an existing variable of a wrong type.
        """
        knobs = list(knobs)
        unknown = [k for k in knobs if k not in KNOBS]
        if unknown:
            raise ValueError(f"unknown knobs {unknown} (known: {', '.join(KNOBS)})")
        predictors = list(dspy_module.named_predictors())
        if not predictors:
            raise ValueError(f"{type(dspy_module).__name__} has no predictors to sync")
        base = lm or dspy.settings.lm
        plan: dict[str, tuple[Target, Any]] = {}
        for path, predictor in predictors:
            in_effect = predictor.lm or base
            for key in knobs:
                value = predictor.config.get(key)
                if value is None and in_effect is not None:
                    value = getattr(in_effect, "kwargs", {}).get(key)
                name = variable_name(variable_prefix, path, key, len(predictors) == 1)
                plan[name] = (Target(path, key), value)
        program = variable_prefix.rstrip("_") or type(dspy_module).__name__
        bound = await self._ensure(plan, program)
        old = self._bindings.pop(id(dspy_module), None)
        if old is not None:
            await old.aclose()
        mappings = {name: str(plan[name][0]) for name in plan if name in bound}
        binding = ProgramBinding(self.session_context, dspy_module, mappings, lm=lm)
        await (binding.follow() if follow else binding.refresh())
        self._bindings[id(dspy_module)] = binding
        return mappings

    async def _ensure(self, plan: Mapping[str, tuple[Target, Any]], program: str) -> set[str]:
        """Register the planned variables that do not exist and have a value in effect;
        return the names that exist afterwards."""
        if not plan:
            return set()
        existing = await self.session_context.get_variables(
            list(plan), defaults=dict.fromkeys(plan, _MISSING))
        bound = {name for name in plan if existing[name] is not _MISSING}
        new: list[dict[str, Any]] = []
        for name, (target, value) in plan.items():
            if name in bound or value is None:
                continue
            assert target.key is not None
            type_name, limits = KNOBS[target.key]
            constraints = dict(limits)
            number = float(value) if type_name == "float" else int(value)
            if "max" in constraints and number > constraints["max"]:
                constraints["max"] = number
            if "min" in constraints and number < constraints["min"]:
                constraints["min"] = number
            new.append({"name": name, "type": type_name, "initial_value": number,
                        "constraints": constraints,
                        "metadata": {META_TARGET: str(target), META_PROGRAM: program,
                                     META_ROLE: "parameter"}})
        if new:
            await self.session_context.register_variables(new)
        return bound | {spec["name"] for spec in new}

    def binding_for(self, dspy_module: Any) -> ProgramBinding:
        """The binding :meth:`sync_dspy_parameters` made for ``dspy_module``.

        Raises:
            KeyError: the program was not synced by this bridge.
        """
        binding = self._bindings.get(id(dspy_module))
        if binding is None or binding.program is not dspy_module:
            raise KeyError(f"{type(dspy_module).__name__} was not synced with sync_dspy_parameters")
        return binding

    async def push_dspy_parameters(self, dspy_module: Any) -> dict[str, Any]:
        """Program → variables: write the synced program's current settings (those that changed
        since they were last applied), atomically; return what was written."""
        return await self.binding_for(dspy_module).push("dspy:push")

    async def pull_dspy_parameters(self, dspy_module: Any) -> dict[str, Any]:
        """Variables → program now (without waiting for the watch); return the values."""
        return await self.binding_for(dspy_module).refresh()

    # -- optimizers ----------------------------------------------------------------------------

    async def create_variable_aware_optimizer(
        self, optimizer_class: type, variable_mappings: Mapping[str, str], *,
        teacher_lm: Any = None, result_prefix: str | None = None, **kwargs: Any,
    ) -> VariableAwareOptimizer:
        """A teleprompter whose settings come from variables (``optimizer.py`` documents every
        mapping); ``await optimizer.compile(student, trainset=...)`` compiles off the event loop
        and writes the results back as variables.

        Parameters:
            optimizer_class: e.g. ``dspy.teleprompt.BootstrapFewShot``.
            variable_mappings: ``{setting: variable_name}``.
            teacher_lm: base LM of ``teacher_*`` settings (default ``dspy.settings.lm``).
            result_prefix: prefix of the result variables (default ``<class name lower>_``).
            kwargs: passed to ``optimizer_class`` (``metric=...``).

        Raises:
            VariableNotFoundError: a mapped variable does not exist.
            ValueError: a setting the optimizer does not have.
        """
        optimizer = VariableAwareOptimizer(
            self.session_context, optimizer_class, variable_mappings, kwargs,
            teacher_lm=teacher_lm, result_prefix=result_prefix)
        await self.access.values(variable_mappings.values())  # missing variables fail now
        self._registered_optimizers[optimizer_class.__name__] = optimizer_class
        return optimizer

    def program_objective(
        self, program: Any, devset: Sequence[Any], metric: Callable[..., Any], *,
        variable: str, target: str, bindings: Mapping[str, str] | None = None,
        lms: Mapping[str, Any] | None = None, lm: Any = None, metric_name: str = "score",
        num_threads: int = 1,
    ) -> Callable[[Any], Any]:
        """An ``objective`` for ``session.start_optimization(variable, ...)``: apply the trial
        value to ``target`` of ``program`` (other ``bindings`` are read fresh), evaluate the
        program on ``devset`` with ``dspy.Evaluate`` in a worker thread, and return
        ``{metric_name: score in [0, 1]}``.

        The LM is ``lm``, else ``dspy.settings.lm`` *now* (captured, because the run's driver
        may run on another thread, e.g. the notebook's IO thread).
        """
        binding = ProgramBinding(self.session_context, program, {**(bindings or {}), variable: target},
                                 lms=lms, lm=lm or dspy.settings.lm)
        others = [n for n in binding.targets if n != variable]
        evaluate = dspy.Evaluate(devset=list(devset), metric=metric, num_threads=num_threads,
                                 display_progress=False)

        def run() -> float:
            with dspy.context(lm=binding.call_lm()):
                return float(evaluate(program).score) / 100.0

        async def objective(value: Any) -> dict[str, float]:
            if others:
                binding.apply(await binding.access.values(others))
            binding.apply({variable: value})
            return {metric_name: await asyncio.to_thread(run)}

        objective.binding = binding  # type: ignore[attr-defined]
        return objective

    async def close(self) -> None:
        """Stop following variable changes for every synced program."""
        bindings, self._bindings = list(self._bindings.values()), {}
        for binding in bindings:
            await binding.aclose()
        for task in self._optimization_tasks.values():
            task.cancel()
