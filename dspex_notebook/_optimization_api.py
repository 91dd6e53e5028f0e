"""The optimization-run methods of :class:`~dspex_notebook.SessionContext` (the spec's
"Optimization Integration"), a mixin so that ``_session.py`` stays a thin facade: the server
holds the run (lock, optimizer, trials), the client evaluates (``_runs.RunDriver``);
docs/optimization.md."""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, cast, overload

from ._errors import InvalidArgument
from ._types import Trial, Variable

if TYPE_CHECKING:
    from ._runs import RunDriver
    from ._session import SessionContext
    from ._wire.client import Bridge


class OptimizationMethods:
    """``start_optimization``, ``stop_optimization``, ``get_optimization_status`` and
    ``get_optimization_history`` (the spec's), plus ask/tell (``next_trial``,
    ``report_trial``), ``register_objective``, ``register_python_optimizer`` and
    ``wait_optimization``."""

    session_id: str
    _bridge: Bridge
    _drivers: dict[str, RunDriver]
    _objectives: dict[str, Callable[[Any], Any]]

    if TYPE_CHECKING:  # SessionContext's own
        def _wrote(self, ident: str, revision: int) -> None: ...

        async def get_variable_info(self, name: str) -> Variable: ...


    async def start_optimization(
        self, variable: str, optimizer_type: str = "bayesian",
        optimizer_config: Mapping[str, Any] | None = None, max_iterations: int = 100,
        convergence_threshold: float | None = 0.001, callback: Callable[..., Any] | None = None,
        *, objective: Callable[[Any], Any] | None = None, lease_seconds: float = 30.0,
    ) -> str:
        """Start a server-held optimization run of ``variable``; return its id.

        The server takes the variable's lock, proposes values (``bayesian``, ``grid_search``,
        ``gradient``; or, for a name given to :meth:`register_python_optimizer`, this client's
        optimizer proposes them) and records every trial. With ``objective`` (or one given to
        :meth:`register_objective`) this client evaluates the proposals in a background task
        and the call returns at once; without one the run waits for trials reported by any
        client (:meth:`next_trial` / :meth:`report_trial`).

        Parameters:
            variable: variable name or id (float, integer, boolean, choice or module).
            optimizer_type: optimizer name.
            optimizer_config: the optimizer's own keys (e.g. ``acquisition_function``, ``xi``,
                ``n_initial_points``) plus ``direction`` (``"maximize"``, the default, or
                ``"minimize"``), ``metric`` (which metric is the objective; default
                ``"objective"``, or the only one reported) and ``seed``.
            max_iterations: evaluation budget.
            convergence_threshold: passed to the optimizer (None: its default / off).
            callback: ``callback(iteration, value, metrics)`` after each trial (sync or async).
            objective: ``objective(value) -> float | dict`` (sync or async).
            lease_seconds: the run ends as ``abandoned`` if this client stops calling for so long.

        Raises:
            OptimizationConflict (a ValueError, "already being optimized"): a run holds it.
            InvalidArgument (a ValueError): unknown optimizer, bad config, not searchable.
        """
        from ._optimize import BUILTIN_OPTIMIZERS, default_registry, make_optimizer, space_for
        from ._runs import RunDriver

        config = dict(optimizer_config or {})
        objective = objective or self._objectives.get(variable)
        client_side = (optimizer_type not in BUILTIN_OPTIMIZERS
                       and optimizer_type in default_registry.names())
        local = None
        if client_side:
            info = await self.get_variable_info(variable)
            local = make_optimizer(
                optimizer_type, space_for(info.type, info.constraints, info.name),
                {k: v for k, v in config.items() if k not in ("direction", "metric", "seed")},
                direction=config.get("direction", "maximize"), seed=config.get("seed"),
                max_iterations=max_iterations, convergence_threshold=convergence_threshold)
        run_id, _status = await self._bridge.start_optimization(
            self.session_id, variable, optimizer_type, config, max_iterations, convergence_threshold,
            client_side, lease_seconds, objective is not None)
        self._wrote(variable, 0)  # the run writes it from now on: read it fresh
        old = self._drivers.pop(variable, None)
        if old is not None:
            old.cancel()
        self._drivers[variable] = RunDriver(
            cast("SessionContext", self), variable, run_id, objective=objective,
            callback=callback, lease=lease_seconds, metric=config.get("metric", "objective"),
            local=local)
        return run_id

    def register_objective(self, variable: str, objective: Callable[[Any], Any]) -> None:
        """Use ``objective(value)`` for runs of ``variable`` started without one (sync)."""
        self._objectives[variable] = objective

    async def register_python_optimizer(self, name: str, optimizer_class: type) -> None:
        """Make a :class:`~dspex_notebook.optimize.BaseOptimizer` subclass available to
        :meth:`start_optimization` under ``name``. It runs in this client (the server still
        holds the lock and records the trials)."""
        from ._optimize import register_optimizer

        register_optimizer(name, optimizer_class)

    async def stop_optimization(self, variable: str) -> None:
        """Stop the variable's run; the variable keeps the best value found (or its original
        value if no trial completed).

        Raises:
            InvalidArgument (a ValueError): the variable is not being optimized.
        """
        driver = self._drivers.pop(variable, None)
        if driver is not None:
            driver.cancel()
        await self._bridge.stop_optimization(self.session_id, variable)
        self._wrote(variable, 0)

    async def wait_optimization(self, variable: str) -> str | None:
        """Wait until this client's driver of the variable's run is done; return the stop
        reason (None if this client does not drive a run of it)."""
        driver = self._drivers.get(variable)
        return None if driver is None else await driver.wait()

    async def get_optimization_status(self, variable: str) -> dict[str, Any]:
        """The spec's keys (``is_optimizing``, ``optimization_id``, ``iteration``,
        ``best_value``, ``best_metrics``, ``started_at``, ``last_update``) plus ``optimizer``,
        ``max_iterations``, ``stop_reason``, ``direction``, ``metric`` and
        ``waiting_for_trial`` (a trial handed out and not reported yet); of the current run, or
        the last one."""
        status = await self._bridge.optimization_query("GetOptimizationStatus", self.session_id,
                                                       variable)
        for key in ("started_at", "last_update"):
            status[key] = _when(status.get(key))
        driver = self._drivers.get(variable)
        status["callback_errors"] = [repr(e) for e in driver.errors] if driver is not None else []
        return dict(status)

    async def get_optimization_history(self, variable: str, limit: int = 100,
                                       since: Any = None, optimizer_id: str | None = None,
                                       ) -> list[dict[str, Any]]:
        """Trials of the variable's runs, oldest first (the last ``limit``): ``iteration``,
        ``value``, ``metrics``, ``objective``, ``state`` (``complete``/``failed``/``pending``),
        ``timestamp``, ``optimization_id``, ``error``. ``since`` is a datetime or epoch seconds."""
        cutoff = since.timestamp() if hasattr(since, "timestamp") else float(since or 0)
        trials = await self._bridge.optimization_query(
            "GetOptimizationHistory", self.session_id, variable, optimizer_id or "", limit, cutoff)
        for t in trials:
            t["timestamp"] = _when(t.get("timestamp"))
        return list(trials)

    async def next_trial(self, variable: str) -> Trial | None:
        """Ask the variable's run for a value to evaluate (the server writes it to the variable);
        None when the run is over. For external ask/tell workers."""
        trial_id, value, _reason, run_id = await self._bridge.next_trial(self.session_id,
                                                                         variable)
        if not trial_id:
            return None
        if not run_id:  # an older server: one more round trip for the run's id
            status = await self._bridge.optimization_query("GetOptimizationStatus",
                                                           self.session_id, variable)
            run_id = status.get("optimization_id") or ""
        return Trial(trial_id, value, run_id, variable)

    @overload
    async def report_trial(self, variable: str, trial_id: int, metrics: Any = None, *,
                           error: str = "", next: Literal[False] = False) -> dict[str, Any]: ...

    @overload
    async def report_trial(self, variable: str, trial_id: int, metrics: Any = None, *,
                           error: str = "", next: Literal[True]) -> Trial | None: ...

    async def report_trial(self, variable: str, trial_id: int, metrics: Any = None, *,
                           error: str = "", next: bool = False) -> dict[str, Any] | Trial | None:
        """Report a trial's ``metrics`` (a number or ``{name: number}``); ``error`` (or NaN)
        records a failed trial. Returns the run's status. Unknown or already-reported trials
        are refused (the same report twice is accepted, as a retry).

        With ``next=True`` the same round trip also asks for the next trial and returns it
        (what :meth:`next_trial` would return right after: None when the run is over) instead
        of the status, so an ask/tell worker makes one call per trial::

            trial = await session.next_trial("x")
            while trial is not None:
                trial = await session.report_trial("x", trial.id, evaluate(trial.value), next=True)
        """
        if error == "" and metrics is not None and not isinstance(metrics, (int, float, dict)):
            raise InvalidArgument(f"metrics must be a number or a dict of numbers, got {metrics!r}")
        if isinstance(metrics, float) and not math.isfinite(metrics):
            error = error or f"objective is {metrics}"
        if not next:
            return await self._bridge.report_trial(self.session_id, variable, "", trial_id,
                                                   metrics, error)
        status, nxt = await self._bridge.report_and_next(self.session_id, variable, "", trial_id,
                                                         metrics, error, status=False)
        if nxt is None:  # a server without ReportTrialRequest.next: ask separately
            return None if not status.get("is_optimizing", True) else await self.next_trial(variable)
        next_id, value, _reason, run_id = nxt
        return Trial(next_id, value, run_id, variable) if next_id else None


def _when(seconds: Any) -> _dt.datetime | None:
    return None if seconds is None else _dt.datetime.fromtimestamp(float(seconds), _dt.UTC)
