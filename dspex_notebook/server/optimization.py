"""Server-held optimization runs: the lock, the optimizer state, the trials, ask/tell.

The server owns what must be shared and durable; the client evaluates the objective
(docs/optimization.md):

* **the lock**: starting a run commits a run record in state ``running``; while it is there the
  view refuses ordinary writes to the variable (``writes.check_unlocked``) with an
  ``OptimizationConflict`` naming the run. Two racing starts are serialized by the server loop:
  exactly one wins, the other is told the variable is "already being optimized";
* **the optimizer** (built-ins: ``bayesian``, ``grid_search``, ``gradient``) lives here; its
  ``suggest()`` runs in a worker thread so a slow suggestion never holds the event loop. A
  *client-side* run (a user optimizer registered in the client) sends its proposals instead;
* **every trial** is a commit: ``next_trial`` writes the proposal to the variable (watchers,
  widgets and plots see it) together with a ``pending`` trial record, ``report_trial`` records
  the metrics (a failed evaluation, NaN or inf is a ``failed`` trial, not learned from);
* **the end**: max iterations, convergence, grid exhausted, ``stop``, or the driver's lease
  expiring (``abandoned``) — the variable is left at the best value found (or restored to its
  original value when no trial completed) and the lock is released, in one commit;
* **restarts**: run and trial records are persisted with the commits; at start the optimizer is
  rebuilt from its config and seed and the stored trials are replayed into it (suggest, then
  observe the recorded result), as Optuna does: same proposals as an uninterrupted run, and
  never a pickle.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._errors import InvalidArgument, OptimizationConflict, VersionConflict
from .._optimize import (
    BaseOptimizer,
    BayesianOptimizer,
    GradientOptimizer,
    GridSearchOptimizer,
    make_optimizer,
    space_for,
)
from .._optimize.space import same_value
from .backends.base import Commit, Compare, Put, RunRow, StoredVariable, TrialRow
from .writes import next_state

if TYPE_CHECKING:
    from .store import Store

log = logging.getLogger("dspex_notebook.server")

#: config keys the run itself uses (the rest goes to the optimizer)
RUN_KEYS = ("direction", "metric", "seed")
#: the stop reasons a run reports (the optimizer's own, finer reason is ``stop_detail``)
STOP_REASONS = ("converged", "max_iterations", "grid_exhausted", "stopped", "error", "abandoned")


def stop_reason(detail: str) -> str:
    """The run-level reason for an optimizer's (or the server's) stop reason."""
    if detail.startswith("converged"):
        return "converged"
    if detail in ("grid_exhausted", "space_exhausted", "exhausted"):
        return "grid_exhausted"  # nothing left to propose in a finite space
    if detail == "failed":
        return "error"
    return detail if detail in STOP_REASONS else "stopped"
DEFAULT_LEASE = 30.0
MAX_LEASE = 24 * 3600.0
#: built-ins whose suggest/observe are a few microseconds of pure Python (a list index, a
#: generator step): called on the loop, since a worker-thread round trip costs far more than
#: the call (0.1-1 ms on a busy 2-core machine). Anything else (a GP fit) runs in a thread.
INLINE_OPTIMIZERS: tuple[type[BaseOptimizer], ...] = (GridSearchOptimizer, GradientOptimizer)


def _inline(optimizer: BaseOptimizer) -> bool:
    """Whether ``optimizer.suggest()`` is cheap enough for the event loop: the cheap
    built-ins, and ``bayesian`` while its next proposal needs no model fit (the start value,
    the initial design, a sweep of options)."""
    if type(optimizer) in INLINE_OPTIMIZERS:
        return True
    return isinstance(optimizer, BayesianOptimizer) and not optimizer.next_fits_model()


async def _call(optimizer: BaseOptimizer, fn: Any, *args: Any) -> Any:
    """``fn(*args)`` (a method of ``optimizer``): inline when cheap (:func:`_inline`), else in a
    worker thread so a slow suggestion never holds the event loop."""
    if _inline(optimizer):
        return fn(*args)
    return await asyncio.to_thread(fn, *args)


class Run:
    """A run in memory: its record, trials, and (server-side runs) the optimizer."""

    def __init__(self, row: RunRow, trials: list[dict[str, Any]], optimizer: BaseOptimizer | None,
                 lease: float) -> None:
        self.row = row
        self.trials = trials
        self.optimizer = optimizer
        self.lease = lease
        self.expires = time.monotonic() + lease
        self.lock = asyncio.Lock()
        #: (shared store) another server advanced this run: rebuild the optimizer before use
        self.stale = False
        self.refreshed = time.monotonic()  # (shared store) when its etcd lease was last kept alive

    @property
    def id(self) -> str:
        return self.row.id

    @property
    def doc(self) -> dict[str, Any]:
        return self.row.doc

    @property
    def running(self) -> bool:
        return self.doc["state"] == "running"

    def touch(self) -> None:
        self.expires = time.monotonic() + self.lease

    def pending(self) -> dict[str, Any] | None:
        return self.trials[-1] if self.trials and self.trials[-1]["state"] == "pending" else None

    def status(self) -> dict[str, Any]:
        d = self.doc
        pending = self.pending()
        return {
            "is_optimizing": self.running, "optimization_id": self.id,
            # only the last trial can be pending (next_trial hands it out again until reported)
            "iteration": len(self.trials) - (pending is not None),
            "best_value": d.get("best_value"), "best_metrics": d.get("best_metrics"),
            "best_objective": d.get("best_objective"),
            "started_at": d["started_at"], "last_update": d["updated_at"],
            "optimizer": d["optimizer"], "max_iterations": d["max_iterations"],
            "stop_reason": d.get("stop_reason"), "stop_detail": d.get("stop_detail"),
            "direction": d["direction"], "metric": d["metric"],
            "variable": d["var_name"], "client_side": d["client_side"],
            "waiting_for_trial": pending["iteration"] if pending is not None else None,
            # no objective in the starting client: the run waits for any client's reports
            "waiting": self.running and (not d.get("driven") or pending is not None),
        }


def _loss(direction: str, objective: float) -> float:
    return objective if direction == "minimize" else -objective


class Optimizations:
    """Every run of one server (held by the :class:`Store`)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.runs: dict[str, Run] = {}
        self.active: dict[str, str] = {}  # var id -> run id
        self.latest: dict[str, str] = {}  # var id -> id of its newest run
        self._ticker: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------------------------------
    # loading (server start)

    def load(self, runs: list[RunRow], trials: list[TrialRow]) -> None:
        by_run: dict[str, list[dict[str, Any]]] = {}
        for t in trials:
            by_run.setdefault(t.run_id, []).append(t.doc)
        for row in sorted(runs, key=lambda r: r.doc.get("started_at", 0)):
            docs = sorted(by_run.get(row.id, []), key=lambda d: d["iteration"])
            optimizer = None
            if row.doc["state"] == "running" and not row.doc["client_side"]:
                try:
                    optimizer = self._replay(row, docs)
                except Exception:  # a run that cannot be rebuilt ends instead of blocking the variable
                    log.exception("optimization run %s cannot be rebuilt; ending it", row.id)
                    row.doc.update(state="finished", stop_reason="error", stop_detail="replay failed")
            run = Run(row, docs, optimizer, row.doc.get("lease", DEFAULT_LEASE))
            self.runs[row.id] = run
            self.latest[row.var_id] = row.id
            if run.running:
                self.active[row.var_id] = row.id

    def _replay(self, row: RunRow, trials: list[dict[str, Any]]) -> BaseOptimizer:
        var = self.store.view.vars[row.var_id]
        optimizer = self._make(row.doc, var)
        for t in trials:
            proposal = optimizer.suggest()
            if proposal is None or not same_value(proposal, t["value"]):
                log.warning("run %s trial %s: replay proposed %r, stored %r", row.id,
                            t["iteration"], proposal, t["value"])
            if t["state"] != "pending":
                optimizer.observe(t["value"], t.get("objective"))
        return optimizer

    @staticmethod
    def _make(doc: Mapping[str, Any], var: StoredVariable) -> BaseOptimizer:
        space = space_for(var.type, var.constraints, var.name)
        return make_optimizer(
            doc["optimizer"], space, doc["config"], direction=doc["direction"], seed=doc["seed"],
            max_iterations=doc["max_iterations"], convergence_threshold=doc["convergence_threshold"],
        )

    # ------------------------------------------------------------------------------------------

    def _run_of(self, principal: str, session_id: str, ident: str, run_id: str = "",
                active: bool = True,
                compares: list[Any] | None = None) -> tuple[StoredVariable, Run | None]:
        # another session's variable (by id) needs 'optimize' (server/access.py)
        var, found = self.store.reach(principal, session_id, ident, "optimize")
        if compares is not None:
            compares.extend(found)
        rid = run_id or (self.active.get(var.id) if active else self.latest.get(var.id))
        run = self.runs.get(rid or "")
        if run is not None and run.row.var_id != var.id:
            raise InvalidArgument(f"optimization {run_id!r} is not a run of {var.name!r}")
        if run_id and run is None:
            raise InvalidArgument(f"unknown optimization {run_id[:80]!r} for {var.name!r}")
        return var, run

    def _commit(self, commit: Commit, principal: str) -> int:
        return self.store._commit(commit, principal)

    def start(self, principal: str, session_id: str, ident: str, optimizer: str,
              config: Mapping[str, Any], max_iterations: int | None,
              convergence_threshold: float | None, client_side: bool,
              lease: float, driven: bool = False) -> Run:
        """Create a run and take the variable's lock.

        Raises:
            OptimizationConflict: the variable is already being optimized.
            InvalidArgument: unknown optimizer, bad config, a variable that cannot be searched.
        """
        doc_compares: list[Any] = []
        var, current = self._run_of(principal, session_id, ident, compares=doc_compares)
        if current is not None:
            raise OptimizationConflict(
                f"variable {var.name!r} is already being optimized (run {current.id!r}, "
                f"{current.doc['optimizer']}, iteration {current.status()['iteration']})"
            )
        if not isinstance(config, Mapping):
            raise InvalidArgument("optimizer_config must be an object")
        direction = config.get("direction", "maximize")
        metric = config.get("metric", "objective")
        seed = config.get("seed")
        if direction not in ("minimize", "maximize"):
            raise InvalidArgument(f"optimizer_config direction must be 'minimize' or 'maximize', "
                                  f"got {direction!r}")
        if not isinstance(metric, str) or not metric:
            raise InvalidArgument(f"optimizer_config metric must be a name, got {metric!r}")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise InvalidArgument(f"optimizer_config seed must be an integer, got {seed!r}")
        if not 0 < lease <= MAX_LEASE:
            raise InvalidArgument(f"lease_seconds must be in (0, {MAX_LEASE:g}], got {lease!r}")
        now = time.time()
        doc: dict[str, Any] = {
            "optimizer": optimizer, "config": {k: v for k, v in config.items() if k not in RUN_KEYS},
            "direction": direction, "metric": metric, "seed": seed,
            "max_iterations": max_iterations, "convergence_threshold": convergence_threshold,
            "client_side": client_side, "var_name": var.name, "original": var.value,
            "state": "running", "stop_reason": None, "started_at": now, "updated_at": now,
            "principal": principal, "lease": lease, "driven": driven, "stop_detail": None,
        }
        _check_json(doc["original"], var.name)
        if not client_side and "initial_value" in _defaults(optimizer) and not (
                config.get("initial_value") is not None or config.get("x0") is not None):
            doc["config"]["initial_value"] = var.value  # start where the variable is
        engine = None if client_side else self._make(doc, var)  # config errors now, not later
        if client_side:
            space_for(var.type, var.constraints, var.name)  # the variable must be searchable
        row = RunRow(f"opt-{uuid.uuid4().hex[:12]}", var.session_id, var.id, doc)
        if self.shared:  # the lock lives on an etcd lease that any server can keep alive
            doc["lease_id"] = self.store.backend.grant_lock(lease)  # type: ignore[attr-defined]
        self._commit(Commit(runs=[row], doc_compares=doc_compares, ts=now), principal)
        run = Run(row, [], engine, lease)
        self.runs[row.id] = run
        self.active[var.id] = self.latest[var.id] = row.id
        self._ensure_ticker()
        return run

    async def next_trial(self, principal: str, session_id: str, ident: str, run_id: str,
                         proposal: Any = None,
                         has_proposal: bool = False) -> tuple[dict[str, Any] | None, Run]:
        """The trial to evaluate (the pending one again if not yet reported), or None when
        the run is over. Writes the proposal to the variable."""
        # from another session: 'optimize', compared again in the write's commit (the
        # suggestion is awaited in between, so a revoke may land meanwhile)
        doc_compares: list[Any] = []
        var, run = self._run_of(principal, session_id, ident, run_id, active=False,
                                compares=doc_compares)
        if run is None:
            raise InvalidArgument(f"variable {var.name!r} is not being optimized")
        async with run.lock:
            trial = await self._next_locked(run, principal, doc_compares, proposal, has_proposal)
            return trial, run

    async def _next_locked(self, run: Run, principal: str, doc_compares: list[Any],
                           proposal: Any, has_proposal: bool,
                           carry: Commit | None = None) -> dict[str, Any] | None:
        """``next_trial`` under ``run.lock``: the pending trial, a new one (suggested, written
        and committed), or None when the run is over. ``carry`` (a report's commit, when the
        suggestion needs no await) is committed with whatever this commits: one per trial."""
        if not run.running:
            if carry is not None:
                self._commit(carry, principal)
            return None
        self._touch(run)
        self._rebuild(run)
        pending = run.pending()
        if pending is not None:
            if carry is not None:
                self._commit(carry, principal)
            return pending
        var = self.store.view.vars[run.row.var_id]
        try:
            if run.doc["client_side"]:
                full = (run.doc["max_iterations"] is not None
                        and len(run.trials) >= run.doc["max_iterations"])
                if not full and not has_proposal:
                    raise InvalidArgument(f"run {run.id!r} is client-side: next_trial needs a proposal")
                value = None if full else space_for(var.type, var.constraints, var.name).validate(proposal)
                reason = "max_iterations"
            else:
                assert run.optimizer is not None
                value = await _call(run.optimizer, run.optimizer.suggest)
                reason = run.optimizer.stop_reason or "exhausted"
        except Exception:
            if carry is not None:  # a refused proposal or a failing optimizer: the report stands
                self._commit(carry, principal)
            raise
        if value is None:
            self._finish(run, reason, principal, carry)
            return None
        if not run.running:  # stopped while the suggestion was computed
            if carry is not None:
                self._commit(carry, principal)
            return None
        value = _plain(value)
        var = self.store.view.vars[run.row.var_id]
        now = time.time()
        trial = {"iteration": len(run.trials) + 1, "value": value, "metrics": None,
                 "objective": None, "state": "pending", "timestamp": now, "error": None}
        new = next_state(self.store.limits, var, value, now)
        run.doc["updated_at"] = now
        meta = {"source": f"optimizer_{run.id}", "optimization_id": run.id,
                "trial": str(trial["iteration"])}
        commit = carry or Commit(runs=[run.row])
        commit.puts.append(Put(new, "set", f"optimizer_{run.id}", meta))
        commit.compares.append(Compare(var.session_id, var.name, var.id, var.version))
        commit.trials.append(TrialRow(run.id, trial["iteration"], trial))
        commit.doc_compares.extend(doc_compares)
        commit.ts = now
        self._commit(commit, principal)
        run.trials.append(trial)
        return trial

    async def report_trial(self, principal: str, session_id: str, ident: str, run_id: str,
                           trial_id: int, metrics: Any, error: str = "", *, next: bool = False,
                           proposal: Any = None, has_proposal: bool = False,
                           ) -> tuple[Run, dict[str, Any] | None]:
        """Record a trial's metrics (a number, or named metrics of which ``metric`` is the
        objective); ``error`` or a non-finite objective make it a failed trial.

        With ``next``, also hand out the next trial under the same lock, as ``next_trial``
        would right after (``proposal``: a client-side run's next value): report and ask in
        one round trip. Returns ``(run, next trial or None)``; the trial is None without
        ``next`` or when the run is over.
        """
        var, run = self._run_of(principal, session_id, ident, run_id, active=not run_id)
        if run is None:
            raise InvalidArgument(f"variable {var.name!r} is not being optimized")
        async with run.lock:
            # the lock may have been awaited: check 'optimize' again with no await between the
            # check and the trial's update (a report writes no variable, so no compare)
            _, doc_compares = self.store.reach(principal, session_id, ident, "optimize")
            self._touch(run)
            self._rebuild(run)
            if not 1 <= trial_id <= len(run.trials):
                raise InvalidArgument(f"run {run.id!r} has no trial {trial_id}")
            trial = run.trials[trial_id - 1]
            named, objective = _metrics(metrics, run.doc["metric"], error)
            if trial["state"] != "pending":
                if trial["metrics"] == named and bool(trial.get("error")) == bool(error):
                    # the same report again (a retry after a lost reply)
                    return run, (await self._next_locked(run, principal, list(doc_compares),
                                                         proposal, has_proposal)
                                 if next else None)
                raise InvalidArgument(f"trial {trial_id} of run {run.id!r} was already reported")
            if not run.running:
                raise InvalidArgument(f"run {run.id!r} has ended ({run.doc['stop_reason']})")
            now = time.time()
            trial.update(metrics=named, objective=objective, timestamp=now, error=error or None,
                         state="complete" if objective is not None else "failed")
            doc = run.doc
            doc["updated_at"] = now
            if objective is not None and (doc.get("best_objective") is None or _loss(
                    doc["direction"], objective) < _loss(doc["direction"], doc["best_objective"])):
                doc.update(best_value=trial["value"], best_metrics=named, best_objective=objective)
            reason = None
            if run.optimizer is not None:
                # observe is bookkeeping in every built-in (a GP is fitted in suggest): inline
                run.optimizer.observe(trial["value"], objective)
                reason = run.optimizer.stop_reason
            elif doc["max_iterations"] is not None and len(run.trials) >= doc["max_iterations"]:
                reason = "max_iterations"
            commit = Commit(runs=[run.row], trials=[TrialRow(run.id, trial_id, trial)], ts=now)
            if reason is not None and run.running:
                self._finish(run, reason, principal, commit)
                return run, None
            if not next:
                self._commit(commit, principal)
                return run, None
            if run.doc["client_side"] or (run.optimizer is not None and _inline(run.optimizer)):
                # nothing is awaited before the next trial's commit: one commit for both
                return run, await self._next_locked(run, principal, list(doc_compares), proposal,
                                                    has_proposal, carry=commit)
            self._commit(commit, principal)  # recorded before the suggestion is awaited
            return run, await self._next_locked(run, principal, list(doc_compares), proposal,
                                                has_proposal)

    def stop(self, principal: str, session_id: str, ident: str, run_id: str = "",
             reason: str = "stopped") -> Run:
        """End the variable's run (best value kept, or the original restored).

        Raises:
            InvalidArgument (a ValueError): the variable is not being optimized.
        """
        var, run = self._run_of(principal, session_id, ident, run_id)
        if run is None or not run.running:
            raise InvalidArgument(f"variable {var.name!r} is not being optimized")
        self._finish(run, reason, principal)
        return run

    def keep_alive(self, principal: str, session_id: str, ident: str, run_id: str) -> Run:
        var, run = self._run_of(principal, session_id, ident, run_id)
        if run is None or not run.running:
            raise InvalidArgument(f"variable {var.name!r} is not being optimized")
        self._touch(run)
        return run

    def status(self, principal: str, session_id: str, ident: str, run_id: str = "") -> dict[str, Any]:
        var, run = self._run_of(principal, session_id, ident, run_id, active=False)
        if run is None:
            return {"is_optimizing": False, "optimization_id": None, "iteration": 0,
                    "best_value": None, "best_metrics": None, "started_at": None,
                    "last_update": None, "optimizer": None, "max_iterations": None,
                    "stop_reason": None, "variable": var.name, "waiting_for_trial": None}
        return run.status()

    def history(self, principal: str, session_id: str, ident: str, run_id: str = "",
                limit: int = 100, since: float = 0.0) -> list[dict[str, Any]]:
        var, _ = self._run_of(principal, session_id, ident, active=False)
        runs = [r for r in self.runs.values() if r.row.var_id == var.id and (not run_id or r.id == run_id)]
        if run_id and not runs:
            raise InvalidArgument(f"unknown optimization {run_id[:80]!r} for {var.name!r}")
        out = [dict(t, optimization_id=r.id) for r in sorted(runs, key=lambda r: r.doc["started_at"])
               for t in r.trials if t["timestamp"] > since]
        return out[-limit:] if limit > 0 else out

    # ------------------------------------------------------------------------------------------

    def _finish(self, run: Run, reason: str, principal: str, commit: Commit | None = None) -> None:
        """End ``run``: variable at the best value (or the original), lock released, one commit."""
        commit = commit or Commit(ts=time.time())
        doc = run.doc
        doc.update(state="finished", stop_reason=stop_reason(str(reason)), stop_detail=str(reason),
                   updated_at=commit.ts or time.time())
        var = self.store.view.vars.get(run.row.var_id)
        final = doc.get("best_value") if doc.get("best_objective") is not None else doc["original"]
        if var is not None and not same_value(var.value, final):
            new = next_state(self.store.limits, var, final, doc["updated_at"])
            commit.puts.append(Put(new, "set", f"optimizer_{run.id}",
                                   {"source": f"optimizer_{run.id}", "optimization_id": run.id,
                                    "final": reason}))
            commit.compares.append(Compare(var.session_id, var.name, var.id, var.version))
        commit.runs.append(run.row)
        try:
            self._commit(commit, principal)
        finally:
            self.active.pop(run.row.var_id, None)
            if run.optimizer is not None:
                run.optimizer.stop(reason)
        if self.shared and doc.get("lease_id"):
            self._release(int(doc["lease_id"]))

    def finish_session(self, session_id: str, principal: str) -> list[RunRow]:
        """Rows ending the session's runs (committed with the session's cleanup)."""
        rows = []
        for run in list(self.runs.values()):
            if run.row.session_id == session_id:
                if run.running:
                    run.doc.update(state="finished", stop_reason="stopped", stop_detail="session cleaned up",
                                   updated_at=time.time())
                    self.active.pop(run.row.var_id, None)
                    rows.append(run.row)
                self.runs.pop(run.id, None)
                if self.latest.get(run.row.var_id) == run.id:
                    del self.latest[run.row.var_id]
        return rows

    def _ensure_ticker(self) -> None:
        if self.shared:  # etcd expires the lock's lease; every server then ends the run
            return
        if self._ticker is None or self._ticker.done():
            try:
                self._ticker = asyncio.get_running_loop().create_task(self._leases())
            except RuntimeError:  # no loop (a Store used synchronously): leases checked lazily
                self._ticker = None

    async def _leases(self) -> None:
        """End runs whose driver stopped calling (``abandoned``) and release their locks."""
        while self.active:
            await asyncio.sleep(min(1.0, min((r.lease for r in self._active_runs()), default=1.0) / 4))
            now = time.monotonic()
            for run in self._active_runs():
                if run.expires < now and not run.lock.locked():
                    log.info("optimization %s abandoned: its driver stopped calling", run.id)
                    try:
                        self._finish(run, "abandoned", run.doc.get("principal", ""))
                    except Exception:
                        log.exception("could not end abandoned run %s", run.id)

    # ------------------------------------------------------------------------------------------
    # several servers over one store (etcd): runs started or advanced elsewhere

    @property
    def shared(self) -> bool:
        return bool(getattr(self.store.backend, "shared", False))

    def _touch(self, run: Run) -> None:
        """The driver called: push the lease back (and, shared, keep the etcd lease alive,
        at most every third of its time to live)."""
        run.touch()
        lease_id = run.doc.get("lease_id")
        if self.shared and lease_id and time.monotonic() - run.refreshed > run.lease / 3:
            run.refreshed = time.monotonic()
            self.store.backend.refresh_lock(int(lease_id))  # type: ignore[attr-defined]

    def _release(self, lease_id: int) -> None:
        try:
            self.store.backend.release_lock(lease_id)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - the lease then just expires
            log.warning("could not revoke lease %x: %s", lease_id, exc)

    def _rebuild(self, run: Run) -> None:
        """A server-side run another server advanced: replay its trials into a fresh
        optimizer here (as after a restart) so this server proposes what it would have."""
        if run.stale and not run.doc["client_side"] and run.running:
            run.optimizer = self._replay(run.row, list(run.trials))
        run.stale = False

    def followed(self, commit: Commit) -> None:
        """Another server's commit touched runs: take its records and trials."""
        for row in commit.runs:
            run = self.runs.get(row.id)
            if run is None:
                run = Run(row, [], None, row.doc.get("lease", DEFAULT_LEASE))
                self.runs[row.id] = run
                self.latest[row.var_id] = row.id
            run.row = row
            run.stale = True
            if run.running:
                self.active[row.var_id] = row.id
            else:
                if self.active.get(row.var_id) == row.id:
                    del self.active[row.var_id]
                if run.optimizer is not None:
                    run.optimizer.stop(str(row.doc.get("stop_detail") or "stopped"))
                run.optimizer = None
        for t in commit.trials:
            run = self.runs.get(t.run_id)
            if run is None:
                continue
            i = t.iteration - 1
            if i < len(run.trials):
                run.trials[i] = t.doc
            elif i == len(run.trials):
                run.trials.append(t.doc)
            run.stale = True
        for sid in commit.session_deletes:
            for run in [r for r in self.runs.values() if r.row.session_id == sid]:
                self.runs.pop(run.id, None)
                self.active.pop(run.row.var_id, None)
                if self.latest.get(run.row.var_id) == run.id:
                    del self.latest[run.row.var_id]

    def lock_lost(self, run_id: str, revision: int) -> None:
        """etcd deleted a run's lock (its lease expired: neither its driver nor any server
        kept it alive): end the run as ``abandoned``, from the loop, not inside the drain."""
        try:
            asyncio.get_running_loop().call_soon(self._abandon, run_id)
        except RuntimeError:
            self._abandon(run_id)

    def _abandon(self, run_id: str) -> None:
        run = self.runs.get(run_id)
        if run is None or not run.running:
            return
        log.info("optimization %s abandoned: its lease expired", run_id)
        try:
            self._finish(run, "abandoned", run.doc.get("principal", ""))
        except VersionConflict:  # another server ended it first; its commit follows
            pass
        except Exception:
            log.exception("could not end abandoned run %s", run_id)

    def _active_runs(self) -> list[Run]:
        return [self.runs[rid] for rid in list(self.active.values()) if rid in self.runs]

    def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()


def _defaults(optimizer: str) -> Mapping[str, Any]:
    from .._optimize import BUILTIN_OPTIMIZERS

    cls = BUILTIN_OPTIMIZERS.get(optimizer)
    return (cls.config_defaults or {}) if cls is not None else {}


def _plain(value: Any) -> Any:
    """A JSON value from an optimizer's proposal (numpy scalars become Python ones)."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _check_json(value: Any, name: str) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"variable {name!r} cannot be optimized: its value is not a scalar") from None


def _metrics(metrics: Any, metric: str,
             error: str) -> tuple[dict[str, float | None] | None, float | None]:
    """``(named metrics, objective)``; the objective is None for a failed trial."""
    if error:
        return None, None
    if isinstance(metrics, bool) or metrics is None:
        raise InvalidArgument(f"metrics must be a number or an object of numbers, got {metrics!r}")
    named: dict[str, float]
    if isinstance(metrics, (int, float)):
        named = {metric: float(metrics)}
    elif isinstance(metrics, Mapping):
        named = {}
        for key, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidArgument(f"metric {str(key)[:80]!r} must be a number, got {value!r}")
            named[str(key)] = float(value)
        if metric not in named:
            if len(named) != 1:
                raise InvalidArgument(
                    f"metrics {sorted(named)} do not include the run's metric {metric!r} "
                    "(set optimizer_config['metric'])")
            metric = next(iter(named))
    else:
        raise InvalidArgument(f"metrics must be a number or an object of numbers, got {metrics!r}")
    objective = named[metric]
    return {k: (v if math.isfinite(v) else None) for k, v in named.items()}, (
        objective if math.isfinite(objective) else None)
