"""``ModuleVariableResolver``: a DSPy module whose strategy is a ``module`` variable.

``await resolver.create_module("reasoning_strategy", "question -> answer")`` returns a
:class:`VariableModule`: each call reads the variable (a cache hit while the session's watch
keeps the cache coherent) and runs the DSPy module of that name — ``Predict``,
``ChainOfThought``, ``ReAct``, ``ProgramOfThought``, ``CodeAct`` where the installed dspy has
them, plus any registered with :meth:`ModuleVariableResolver.register` — built once per
strategy and kept, so demos a teleprompter gives one strategy stay with it. Switching the
variable (a widget, another client, an optimizer) switches the next call.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterable
from typing import Any

from ._access import SessionAccess
from ._load import load_dspy

dspy = load_dspy()
_Module: Any = dspy.Module  # a base class mypy cannot see through the lazy import

Factory = Callable[..., Any]  # factory(signature, tools=[...]) -> dspy.Module

#: strategy name -> how to build it from a signature (tools only where the module takes them)
BUILTIN: dict[str, Factory] = {
    "Predict": lambda signature, tools: dspy.Predict(signature),
    "ChainOfThought": lambda signature, tools: dspy.ChainOfThought(signature),
    "ReAct": lambda signature, tools: dspy.ReAct(signature, tools=list(tools)),
    # deprecated in dspy 3.4 (it warns); running it needs DSPy's PythonInterpreter (Deno)
    "ProgramOfThought": lambda signature, tools: dspy.ProgramOfThought(signature),
    "CodeAct": lambda signature, tools: dspy.CodeAct(signature, tools=list(tools)),
}


class ModuleVariableResolver:
    """Builds DSPy modules from ``module`` (or ``choice``) variables.

    Parameters:
        session: a SessionContext (or the notebook's ``session``).
        tools: tools for strategies that take them (``ReAct``, ``CodeAct``).
        config: LM request kwargs given to every predictor built (``temperature=0.3``).
    """

    def __init__(self, session: Any, *, tools: Iterable[Any] = (), **config: Any) -> None:
        self.access = SessionAccess(session)
        self.tools = list(tools)
        self.config = config
        self._factories: dict[str, Factory] = {
            name: factory for name, factory in BUILTIN.items() if hasattr(dspy, name)}

    def available(self) -> list[str]:
        """Strategy names this resolver can build (the installed dspy's and registered ones)."""
        return sorted(self._factories)

    def register(self, name: str, factory: Factory) -> None:
        """Make ``name`` a strategy: ``factory(signature, tools) -> dspy.Module``."""
        if not callable(factory):
            raise TypeError(f"factory for {name!r} must be callable")
        self._factories[name] = factory

    def build(self, strategy: Any, signature: Any, variable: str = "strategy") -> Any:
        """A new DSPy module for ``strategy``.

        Raises:
            ValueError: no such strategy here (the message lists the available ones).
        """
        factory = self._factories.get(strategy) if isinstance(strategy, str) else None
        if factory is None:
            raise ValueError(
                f"variable {variable!r} = {strategy!r}: the installed dspy {dspy.__version__} has "
                f"no module of that name here (available: {', '.join(self.available())}; add "
                "others with ModuleVariableResolver.register(name, factory))")
        module = factory(signature, self.tools)
        if self.config:
            for _name, predictor in module.named_predictors():
                predictor.update_config(**self.config)
        return module

    async def create_module(self, variable: str, signature: Any) -> VariableModule:
        """A module that runs the strategy ``variable`` names at each call.

        The variable's current strategy is built now, so a bad value fails here.

        Raises:
            VariableNotFoundError: no such variable.
            ValueError: its value names no available strategy.
        """
        module = VariableModule(self, variable, signature)
        strategy = (await self.access.values([variable]))[variable]
        module.module_for(strategy)
        return module


class VariableModule(_Module):
    """A ``dspy.Module`` that dispatches to the strategy its variable names (see the module
    docstring). ``await m.forward(...)``/``await m.acall(...)`` run it off the event loop;
    ``m(...)`` runs it synchronously (inside other programs, ``dspy.Evaluate``, teleprompters)."""

    def __init__(self, resolver: ModuleVariableResolver, variable: str, signature: Any) -> None:
        super().__init__()
        self._resolver = resolver
        self.variable = variable
        self.signature = signature
        self.strategies: dict[str, Any] = {}  # built modules (their predictors are parameters)
        self.strategy: str | None = None  #: the strategy of the latest call

    def module_for(self, strategy: Any) -> Any:
        """The module of ``strategy`` (built on first use)."""
        module = self.strategies.get(strategy)
        if module is None:
            module = self._resolver.build(strategy, self.signature, self.variable)
            self.strategies[strategy] = module
        self.strategy = strategy
        return module

    async def forward(self, **inputs: Any) -> Any:
        """Read the variable, then run that strategy in a worker thread (DSPy settings of the
        caller, ``dspy.context`` included, are carried into it)."""
        strategy = (await self._resolver.access.values([self.variable]))[self.variable]
        module = self.module_for(strategy)
        return await asyncio.to_thread(module, **inputs)

    def __getattribute__(self, name: str) -> Any:
        # dspy.Module warns when `forward` is called directly; here `await m.forward(...)` is
        # the documented entry point (the spec's examples), so it must not warn.
        if name == "forward":
            return object.__getattribute__(self, name)
        return super().__getattribute__(name)

    async def aforward(self, **inputs: Any) -> Any:
        return await self.forward(**inputs)

    async def acall(self, **inputs: Any) -> Any:
        return await self.forward(**inputs)

    def __call__(self, **inputs: Any) -> Any:
        strategy = self._resolver.access.values_sync([self.variable])[self.variable]
        return self.module_for(strategy)(**inputs)

    def __deepcopy__(self, memo: dict[int, Any]) -> VariableModule:
        # teleprompters deep-copy programs: copy the modules, share the session
        new = self.__class__.__new__(self.__class__)
        memo[id(self)] = new
        for key, value in self.__dict__.items():
            setattr(new, key, value if key == "_resolver" else copy.deepcopy(value, memo))
        return new

    def __repr__(self) -> str:
        return f"VariableModule({self.variable!r} -> {self.strategy}, {self.signature!r})"

