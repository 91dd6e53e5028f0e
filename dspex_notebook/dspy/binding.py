"""Variables bound to a DSPy program's knobs, resolved when the program is called.

A :class:`ProgramBinding` maps variable names to targets (``dspex_notebook.dspy._knobs``) and
applies the variables' current values through DSPy's own mechanisms:

* ``<path>.config.<key>``: ``predictor.update_config(key=value)`` — DSPy merges a predictor's
  config over its LM's kwargs on every call;
* ``<path>.lm``: ``predictor.lm = <LM for the value>`` (the model, from a choice/module variable);
* ``lm`` / ``lm.<key>``: the call runs under ``dspy.context(lm=base.copy(key=value, ...))``,
  where ``base`` is the LM chosen by the ``lm`` variable, else the binding's ``lm=``, else
  ``dspy.settings.lm`` of the caller.

Resolution happens at call time: :meth:`ProgramBinding.acall` / ``__call__`` / :meth:`context`
read the variables (cache hits while the session's watch keeps the cache coherent) and apply
them before the program runs, so a change from a slider, another client or an optimizer
changes the next call. :meth:`follow` also applies changes as they arrive, so direct calls of
the program (``program(...)``) see per-predictor values without going through the binding.
DSPy's own precedence holds: a predictor's config beats the LM's kwargs, a predictor's ``lm``
beats the program-wide LM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from ._access import SessionAccess
from ._knobs import Target, coerce, parse_target
from ._load import load_dspy

log = logging.getLogger("dspex_notebook.dspy")


class ProgramBinding:
    """Bind variables to knobs of ``program`` (see the module docstring).

    Parameters:
        session: a SessionContext (or the notebook's ``session``).
        program: a ``dspy.Module``.
        bindings: ``{variable_name: target}``, e.g. ``{"temperature": "lm.temperature",
            "gen_tokens": "generate.config.max_tokens", "model": "lm"}``.
        lms: the LMs a model variable may name (``{"small": lm1, "large": lm2}``); without it a
            model variable's value is a model string given to ``dspy.LM(value)``.
        lm: the program-wide base LM (default: ``dspy.settings.lm`` at call time).

    Raises:
        ValueError: a bad target, or a predictor path the program does not have (the error
            lists the paths it has).
    """

    def __init__(self, session: Any, program: Any, bindings: Mapping[str, str], *,
                 lms: Mapping[str, Any] | None = None, lm: Any = None) -> None:
        self._dspy = load_dspy()
        if not isinstance(program, self._dspy.Module):
            raise TypeError(f"expected a dspy.Module, got {type(program).__name__}")
        self.access = SessionAccess(session)
        self.session = session
        self.program = program
        self.lms = dict(lms or {})
        self.lm = lm
        self.targets: dict[str, Target] = {}
        self.predictors = dict(program.named_predictors())
        for name, text in bindings.items():
            target = parse_target(text)
            if target.path is not None and target.path not in self.predictors:
                raise ValueError(
                    f"variable {name!r} is bound to {text!r}, but the program has no predictor "
                    f"{target.path!r} (it has: {', '.join(self.predictors) or 'none'})")
            self.targets[name] = target
        self.applied: dict[str, Any] = {}  #: variable -> the value last applied
        self._model: Any = None  # the LM chosen by an `lm` variable
        self._kwargs: dict[str, Any] = {}  # `lm.<key>` values
        self._made: dict[str, Any] = {}  # model string -> dspy.LM made for it
        self._copies: dict[tuple[Any, ...], Any] = {}
        self._follow: asyncio.Task[None] | None = None

    # -- resolution ----------------------------------------------------------------------------

    async def refresh(self) -> dict[str, Any]:
        """Read every bound variable now and apply it; return ``{variable: value}``."""
        values = await self.access.values(self.targets)
        self.apply(values)
        return values

    def refresh_sync(self) -> dict[str, Any]:
        """:meth:`refresh` from synchronous code (any thread; see ``_access``)."""
        values = self.access.values_sync(self.targets)
        self.apply(values)
        return values

    def apply(self, values: Mapping[str, Any]) -> None:
        """Apply ``{variable: value}`` to the program (only bound variables are read).

        Raises:
            TypeError / ValueError: a value the knob cannot take (named with its variable).
        """
        for name, value in values.items():
            target = self.targets.get(name)
            if target is None:
                continue
            if target.key is None:
                lm = self._lm_for(name, value)
                if target.path is None:
                    self._model = lm
                else:
                    self.predictors[target.path].lm = lm
            else:
                number = coerce(target.key, value, name)
                if target.path is None:
                    self._kwargs[target.key] = number
                else:
                    predictor = self.predictors[target.path]
                    if predictor.config.get(target.key) != number:
                        predictor.update_config(**{target.key: number})
            self.applied[name] = value

    def _lm_for(self, variable: str, value: Any) -> Any:
        if isinstance(value, self._dspy.BaseLM):
            return value
        if not isinstance(value, str):
            raise TypeError(f"variable {variable!r} chooses the DSPy LM but holds {value!r}, "
                            "not a model name")
        if self.lms:
            if value not in self.lms:
                raise ValueError(f"variable {variable!r} = {value!r} names no LM of this binding "
                                 f"(it has: {', '.join(self.lms)})")
            return self.lms[value]
        if value not in self._made:
            self._made[value] = self._dspy.LM(value)
        return self._made[value]

    def call_lm(self) -> Any:
        """The program-wide LM of the next call (None: leave ``dspy.settings.lm`` alone)."""
        base = self._model or self.lm
        if not self._kwargs:
            return base
        base = base or self._dspy.settings.lm
        if base is None:
            raise ValueError(
                f"variables {', '.join(n for n, t in self.targets.items() if t.path is None)} "
                "set LM kwargs, but there is no LM: pass lm= or use dspy.configure(lm=...) / "
                "dspy.context(lm=...)")
        key = (id(base), *sorted(self._kwargs.items()))
        lm = self._copies.get(key)
        if lm is None:
            if len(self._copies) > 64:  # a long tuning run: keep the copies bounded
                self._copies.clear()
            lm = self._copies[key] = base.copy(**self._kwargs)
        return lm

    @contextlib.contextmanager
    def context(self) -> Iterator[Any]:
        """Refresh (synchronously), then run the block under the bound program-wide LM::

            with binding.context():
                program(question="...")
        """
        self.refresh_sync()
        lm = self.call_lm()
        if lm is None:
            yield self.program
            return
        with self._dspy.context(lm=lm):
            yield self.program

    # -- calling -------------------------------------------------------------------------------

    def __call__(self, **inputs: Any) -> Any:
        """Call the program with the variables' current values (synchronously)."""
        with self.context():
            return self.program(**inputs)

    async def acall(self, **inputs: Any) -> Any:
        """Call the program with the variables' current values, in a worker thread (DSPy's
        settings of the caller, ``dspy.context`` included, are carried into it)."""
        await self.refresh()
        lm = self.call_lm()
        return await asyncio.to_thread(self._run, lm, inputs)

    def _run(self, lm: Any, inputs: dict[str, Any]) -> Any:
        if lm is None:
            return self.program(**inputs)
        with self._dspy.context(lm=lm):
            return self.program(**inputs)

    # -- following changes and writing back --------------------------------------------------

    async def follow(self) -> ProgramBinding:
        """Apply the variables now and then every change as it arrives (a watch task on the
        current loop), until :meth:`aclose`."""
        await self.refresh()
        if self._follow is None or self._follow.done():
            self._follow = asyncio.get_running_loop().create_task(
                self._following(), name="dspex-dspy-follow")
        return self

    async def _following(self) -> None:
        watch = self.session.watch_variables(list(self.targets), include_initial=False)
        try:
            async for update in watch:
                if update.kind == "delete":
                    log.warning("variable %r bound to DSPy %s was deleted; keeping its last value",
                                update.name, self.targets.get(update.name))
                    continue
                try:
                    self.apply({update.name: update.value})
                except (TypeError, ValueError) as exc:
                    log.warning("not applied to the DSPy program: %s", exc)
        finally:
            await watch.aclose()

    def current(self) -> dict[str, Any]:
        """``{variable: value}`` as the program holds them now (predictor config and LMs, and
        the binding's program-wide values)."""
        out: dict[str, Any] = {}
        for name, target in self.targets.items():
            if target.key is None:
                lm = self._model if target.path is None else self.predictors[target.path].lm
                label = self._label_of(lm)
                if label is not None:
                    out[name] = label
            elif target.path is None:
                if target.key in self._kwargs:
                    out[name] = self._kwargs[target.key]
            else:
                value = self.predictors[target.path].config.get(target.key)
                if value is not None:
                    out[name] = value
        return out

    def _label_of(self, lm: Any) -> str | None:
        if lm is None:
            return None
        for label, known in self.lms.items():
            if known is lm:
                return label
        for label, made in self._made.items():
            if made is lm:
                return label
        return getattr(lm, "model", None) if not self.lms else None

    async def push(self, reason: str = "dspy") -> dict[str, Any]:
        """Write the program's own values to the variables (program → variables), atomically;
        return what was written (only values that differ from the last applied ones)."""
        changed = {name: value for name, value in self.current().items()
                   if self.applied.get(name, _UNSET) != value}
        await self.access.write(changed, reason)
        self.applied.update(changed)
        return changed

    async def aclose(self) -> None:
        """Stop following changes."""
        task, self._follow = self._follow, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def __repr__(self) -> str:
        pairs = ", ".join(f"{n}->{t}" for n, t in self.targets.items())
        return f"<ProgramBinding {type(self.program).__name__} {pairs}>"


_UNSET = object()
