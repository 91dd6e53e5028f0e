"""The client's part of an optimization run: evaluate the objective, keep the lease alive.

The server holds the run (lock, optimizer, trials; ``server/optimization.py``). A
:class:`RunDriver` runs on the session's loop as a task:

* with an ``objective``: ask (``next_trial``) → evaluate (an async function is awaited, a sync
  one runs in a worker thread so the loop — the notebook's IO thread — stays free) → tell and
  ask again in one round trip (``report_trial`` with ``next``; an exception or a non-finite
  result is a *failed* trial) → ``callback`` (sync or async; its exceptions are logged and
  kept in :attr:`RunDriver.errors`, the run goes on) — until the run ends;
* for a *client-side* run (a user optimizer from ``register_python_optimizer``) it also asks
  the local optimizer for each proposal and tells it each result;
* always: a keep-alive every third of the lease, so a run whose objective takes long (or that
  waits for external workers' reports) is not ``abandoned``; when this process dies, the calls
  stop and the server ends the run as ``abandoned`` once the lease expires.

Calls that fail because the server is unavailable are retried with backoff (a restarted server
has the run and its trials), a bounded number of times.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._errors import DspexError
from ._wire.client import NO_PROPOSAL
from ._wire.status import BridgeUnavailable

if TYPE_CHECKING:
    from ._optimize import BaseOptimizer
    from ._session import SessionContext

log = logging.getLogger("dspex_notebook.optimize")

RETRIES = 40  # ~2 minutes of backoff (capped at 3 s) before a driver gives up on the server
_EXHAUSTED: Any = object()  # the local optimizer of a client-side run has nothing to propose


def objective_value(metrics: Any, metric: str) -> float | None:
    """The objective in ``metrics`` (a number or named metrics), None for a failed trial."""
    if isinstance(metrics, bool):
        return None
    if isinstance(metrics, (int, float)):
        value = float(metrics)
    elif isinstance(metrics, dict):
        if metric in metrics:
            value = metrics[metric]
        elif len(metrics) == 1:
            value = next(iter(metrics.values()))
        else:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        value = float(value)
    else:
        return None
    return value if math.isfinite(value) else None


class RunDriver:
    """Drives one run from this client (see the module docstring)."""

    def __init__(self, session: SessionContext, variable: str, run_id: str, *,
                 objective: Callable[[Any], Any] | None, callback: Callable[..., Any] | None,
                 lease: float, metric: str, local: BaseOptimizer | None = None) -> None:
        self.session = session
        self.variable = variable
        self.run_id = run_id
        self.objective = objective
        self.callback = callback
        self.lease = lease
        self.metric = metric
        self.local = local
        self.errors: list[BaseException] = []  #: exceptions raised by the callback
        self.stop_reason: str | None = None
        loop = asyncio.get_running_loop()
        self.task: asyncio.Task[None] | None = (
            loop.create_task(self._drive(), name=f"dspex-run-{run_id}") if objective else None)
        self._keepalive = loop.create_task(self._keep_alive(), name=f"dspex-lease-{run_id}")

    @property
    def done(self) -> bool:
        return self.stop_reason is not None

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        delay = 0.05
        for attempt in range(RETRIES):
            try:
                return await fn(*args, **kwargs)
            except BridgeUnavailable:
                if attempt == RETRIES - 1:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 3.0)
        raise AssertionError("unreachable")

    async def _drive(self) -> None:
        bridge, sid, var, rid = self.session._bridge, self.session.session_id, self.variable, self.run_id
        try:
            proposal = self._propose()
            if proposal is _EXHAUSTED:
                await self._call(bridge.stop_optimization, sid, var, rid)
                self.stop_reason = self._local_reason()
                return
            trial_id, value, reason, _ = await self._call(bridge.next_trial, sid, var, rid, proposal)
            while trial_id:
                metrics, error = await self._evaluate(value)
                if self.local is not None:
                    self.local.observe(value, None if error else objective_value(metrics, self.metric))
                proposal = self._propose()
                if proposal is _EXHAUSTED:  # the local optimizer is done: report, then stop
                    status = await self._call(bridge.report_trial, sid, var, rid, trial_id,
                                              metrics, error)
                    await self._progress(trial_id, value, metrics)
                    if status.get("is_optimizing", True):
                        await self._call(bridge.stop_optimization, sid, var, rid)
                        self.stop_reason = self._local_reason()
                    else:
                        self.stop_reason = status.get("stop_reason") or "finished"
                    return
                # report and ask in one round trip (the status is not needed: the next
                # trial says whether the run goes on)
                status, nxt = await self._call(bridge.report_and_next, sid, var, rid, trial_id,
                                               metrics, error, proposal, False)
                await self._progress(trial_id, value, metrics)
                if nxt is None:  # a server without ReportTrialRequest.next: ask separately
                    if not status.get("is_optimizing", True):
                        self.stop_reason = status.get("stop_reason") or "finished"
                        return
                    nxt = await self._call(bridge.next_trial, sid, var, rid, proposal)
                trial_id, value, reason, _ = nxt
            self.stop_reason = reason or "finished"
        except asyncio.CancelledError:
            raise
        except DspexError as exc:
            log.warning("optimization %s of %r stopped driving: %s", self.run_id, self.variable, exc)
            self.stop_reason = self.stop_reason or f"error: {exc}"
        finally:
            self._keepalive.cancel()

    def _propose(self) -> Any:
        """The local optimizer's next proposal (client-side runs), ``_EXHAUSTED`` when it has
        none, or ``NO_PROPOSAL`` for a server-side run."""
        if self.local is None:
            return NO_PROPOSAL
        proposal = self.local.suggest()
        return _EXHAUSTED if proposal is None else _plain(proposal)

    def _local_reason(self) -> str:
        assert self.local is not None
        return self.local.stop_reason or "exhausted"

    async def _evaluate(self, value: Any) -> tuple[Any, str]:
        assert self.objective is not None
        try:
            if inspect.iscoroutinefunction(self.objective):
                result = await self.objective(value)
            else:
                result = await asyncio.to_thread(self.objective, value)
                if inspect.isawaitable(result):
                    result = await result
        except Exception as exc:  # a failed evaluation is a failed trial, not a dead run
            return None, f"{type(exc).__name__}: {exc}"
        if isinstance(result, dict):
            named = {str(k): _number(v) for k, v in result.items()}
            finite = {k: v for k, v in named.items() if v is not None}
            if objective_value(finite, self.metric) is None:
                return None, f"objective returned {result!r}: no finite metric {self.metric!r}"
            return finite, ""
        number = _number(result)
        if number is None:
            return None, f"objective returned {result!r}, not a number or a dict of numbers"
        return number, ""

    async def _progress(self, iteration: int, value: Any, metrics: Any) -> None:
        if self.callback is None:
            return
        if isinstance(metrics, dict):
            named = metrics
        else:
            named = {self.metric: metrics} if metrics is not None else {}
        try:
            result = self.callback(iteration, value, named)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:  # reported, not swallowed; the run goes on
            log.exception("optimization callback failed at iteration %d", iteration)
            self.errors.append(exc)

    async def _keep_alive(self) -> None:
        bridge, sid = self.session._bridge, self.session.session_id
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await bridge.optimization_query("KeepAliveOptimization", sid, self.variable,
                                                self.run_id)
            except BridgeUnavailable:
                continue  # the server may be restarting: the next round tries again
            except DspexError:  # the run is over
                return

    async def wait(self) -> str | None:
        """Wait for the driving task (if any) to end; return the stop reason."""
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)
        return self.stop_reason

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self._keepalive.cancel()


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        item = getattr(value, "item", None)  # numpy scalars
        if not callable(item):
            return None
        value = item()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
    value = float(value)
    return value if math.isfinite(value) else None


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) else value
