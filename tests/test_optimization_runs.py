"""Server-held optimization runs through the public API (seeded; no timing assertions).

Real servers: the embedded one on 127.0.0.1:0 and, for restarts and dead drivers, a
``dspex-notebook serve`` process and a driver process killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import textwrap

import pytest

import dspex_notebook as dn
from dspex_notebook.optimize import BaseOptimizer
from dspex_notebook.testing import running_server, session_for

FORRESTER_MIN = -6.020740


def forrester(x: float) -> float:
    return (6 * x - 2) ** 2 * math.sin(12 * x - 4)


@pytest.fixture
def server():
    with running_server() as srv:
        yield srv


async def _unit(session, name: str = "x", value: float = 0.5) -> None:
    await session.register_variable(name, "float", value, constraints={"min": 0.0, "max": 1.0},
                                    replace=True)


async def test_bayesian_run_reaches_the_forrester_minimum_for_most_seeds(server):
    hits = 0
    async with session_for(server, "bo") as session:
        for seed in range(10):
            await _unit(session)
            await session.start_optimization(
                "x", "bayesian", {"direction": "minimize", "seed": seed}, max_iterations=30,
                convergence_threshold=None, objective=forrester)
            assert await session.wait_optimization("x") == "max_iterations"
            status = await session.get_optimization_status("x")
            assert status["stop_reason"] == "max_iterations" and status["iteration"] == 30
            best = status["best_objective"]
            hits += best <= FORRESTER_MIN + 0.01
            # the variable is left at the best value found
            assert await session.get_variable("x", bypass_cache=True) == status["best_value"]
    assert hits >= 9, hits


async def test_grid_visits_in_order_and_returns_the_best_point(server):
    async with session_for(server, "grid") as session:
        await _unit(session)
        seen = []
        await session.start_optimization("x", "grid_search", {"direction": "minimize", "n_points": 11},
                                         objective=forrester,
                                         callback=lambda i, v, m: seen.append((i, v)))
        assert await session.wait_optimization("x") == "grid_exhausted"
        assert [v for _, v in seen] == pytest.approx([i / 10 for i in range(11)])
        assert [i for i, _ in seen] == list(range(1, 12))
        assert await session.get_variable("x", bypass_cache=True) == pytest.approx(0.8)
        status = await session.get_optimization_status("x")
        assert status["stop_reason"] == "grid_exhausted" and not status["is_optimizing"]


async def test_gradient_from_07_and_from_01(server):
    async with session_for(server, "grad") as session:
        await _unit(session, value=0.7)
        await session.start_optimization("x", "gradient", {"direction": "minimize", "seed": 0},
                                         max_iterations=40, objective=forrester)
        await session.wait_optimization("x")
        assert (await session.get_optimization_status("x"))["best_objective"] < -6.0
        await _unit(session, value=0.1)
        await session.start_optimization("x", "gradient", {"direction": "minimize", "seed": 0},
                                         max_iterations=200, objective=forrester)
        assert await session.wait_optimization("x") == "converged"


async def test_racing_starts_one_wins_and_writes_are_refused_while_it_runs(server):
    async with session_for(server, "race") as a, session_for(server, "race") as b, \
            session_for(server, "race") as c:
        await _unit(a)
        results = await asyncio.gather(
            a.start_optimization("x", "bayesian", {"direction": "minimize"}),
            b.start_optimization("x", "bayesian", {"direction": "minimize"}),
            return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(errors) == 1 and isinstance(errors[0], ValueError)
        assert "already being optimized" in str(errors[0])
        run_id = next(r for r in results if isinstance(r, str))
        with pytest.raises(dn.OptimizationConflict, match=run_id):
            await c.set_variable("x", 0.3)
        with pytest.raises(dn.OptimizationConflict):
            await c.delete_variable("x")
        assert "being optimized" in (await c.update_variables({"x": 0.3}))["x"]
        status = await c.get_optimization_status("x")
        assert status["is_optimizing"] and status["waiting"]  # no objective: waits for reports
        winner = a if a._drivers.get("x") and a._drivers["x"].run_id == run_id else b
        await winner.stop_optimization("x")
        assert await c.get_variable("x", bypass_cache=True) == 0.5  # no trial: original kept
        await c.set_variable("x", 0.3)  # the lock is gone
        with pytest.raises(ValueError, match="not being optimized"):
            await c.stop_optimization("x")


async def test_external_ask_tell_workers(server):
    async with session_for(server, "ask") as owner, session_for(server, "ask") as worker:
        await _unit(owner)
        await owner.start_optimization("x", "grid_search", {"direction": "maximize", "n_points": 3,
                                                           "metric": "accuracy"})
        watch = worker.watch_variable("x", include_initial=False)
        trial = await worker.next_trial("x")
        assert trial is not None and trial.value == 0.0
        assert await worker.next_trial("x") == trial  # the pending trial again, not a new one
        # the run id comes with the trial (NextTrialResponse.optimization_id), one round trip
        status = await owner.get_optimization_status("x")
        assert trial.optimization_id and trial.optimization_id == status["optimization_id"]
        _, _, _, run_id = await worker._bridge.next_trial(worker.session_id, "x")
        assert run_id == status["optimization_id"]
        update = await asyncio.wait_for(watch.__anext__(), 10)
        assert update.value == 0.0 and update.source.startswith("optimizer_")  # proposals are writes
        await watch.aclose()
        status = await worker.report_trial("x", trial.id, {"accuracy": 0.5, "loss": 2.0})
        assert status["iteration"] == 1 and status["best_metrics"]["accuracy"] == 0.5
        await worker.report_trial("x", trial.id, {"accuracy": 0.5, "loss": 2.0})  # a retry: fine
        with pytest.raises(ValueError, match="already reported"):
            await worker.report_trial("x", trial.id, {"accuracy": 0.9})
        with pytest.raises(ValueError, match="no trial 7"):
            await worker.report_trial("x", 7, 1.0)
        second = await worker.next_trial("x")
        await worker.report_trial("x", second.id, float("nan"))  # a failed trial
        third = await worker.next_trial("x")
        await worker.report_trial("x", third.id, error="RuntimeError: the evaluation crashed")
        assert await worker.next_trial("x") is None  # grid exhausted
        history = await worker.get_optimization_history("x")
        assert [t["state"] for t in history] == ["complete", "failed", "failed"]
        assert [t["iteration"] for t in history] == [1, 2, 3]
        assert history[2]["error"].startswith("RuntimeError")
        assert await worker.get_variable("x", bypass_cache=True) == 0.0  # the only success
        assert (await worker.get_optimization_history("x", limit=1))[0]["iteration"] == 3


async def test_report_with_next_returns_the_next_trial_in_one_round_trip(server):
    async with session_for(server, "next") as owner, session_for(server, "next") as worker:
        await _unit(owner)
        await owner.start_optimization("x", "grid_search", {"direction": "minimize", "n_points": 4})
        trial = await worker.next_trial("x")
        assert trial is not None and trial.value == 0.0
        seen = []
        while trial is not None:  # bounded: a 4-point grid
            seen.append(trial)
            assert len(seen) <= 4
            nxt = await worker.report_trial("x", trial.id, (trial.value - 0.6) ** 2, next=True)
            if nxt is not None:
                # the next proposal is already pending and written to the variable
                assert nxt.id == trial.id + 1 and nxt.optimization_id == trial.optimization_id
                assert (await owner.get_optimization_status("x"))["waiting_for_trial"] == nxt.id
                assert await owner.get_variable("x", bypass_cache=True) == pytest.approx(nxt.value)
                # a retry of the same report (a lost reply) hands out the same pending trial
                again = await worker.report_trial("x", trial.id, (trial.value - 0.6) ** 2, next=True)
                assert again == nxt
            trial = nxt
        assert [t.value for t in seen] == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])
        assert await owner.get_variable("x", bypass_cache=True) == pytest.approx(2 / 3)  # the best
        status = await owner.get_optimization_status("x")
        assert status["stop_reason"] == "grid_exhausted" and status["iteration"] == 4
        history = await owner.get_optimization_history("x")
        assert [t["state"] for t in history] == ["complete"] * 4
        assert status["best_value"] == pytest.approx(2 / 3)
        # a failed trial reported with next=True is recorded and the run goes on
        await owner.start_optimization("x", "grid_search", {"n_points": 2})
        first = await worker.next_trial("x")
        second = await worker.report_trial("x", first.id, error="RuntimeError: crashed", next=True)
        assert second is not None and second.id == 2
        assert await worker.report_trial("x", second.id, float("nan"), next=True) is None
        assert [t["state"] for t in await owner.get_optimization_history(
            "x", optimizer_id=first.optimization_id)] == ["failed", "failed"]
        # without next the reply is the status, as before
        await owner.start_optimization("x", "grid_search", {"n_points": 2})
        first = await worker.next_trial("x")
        status = await worker.report_trial("x", first.id, 1.0)
        assert status["iteration"] == 1 and status["is_optimizing"]
        await owner.stop_optimization("x")


async def test_failed_evaluations_and_a_failing_callback_do_not_kill_the_run(server):
    calls = []

    def objective(x):
        calls.append(x)
        if len(calls) == 2:
            raise RuntimeError("flaky evaluation")
        return {"accuracy": -abs(x - 0.3)}

    async def callback(iteration, value, metrics):
        if iteration == 3:
            raise ValueError("a bug in the callback")

    async with session_for(server, "flaky") as session:
        await _unit(session)
        await session.start_optimization("x", "bayesian", {"metric": "accuracy", "seed": 1},
                                         max_iterations=6, objective=objective, callback=callback)
        assert await session.wait_optimization("x") == "max_iterations"
        status = await session.get_optimization_status("x")
        assert status["iteration"] == 6 and status["direction"] == "maximize"
        assert any("a bug in the callback" in e for e in status["callback_errors"])
        states = [t["state"] for t in await session.get_optimization_history("x")]
        assert states.count("failed") == 1 and len(states) == 6


async def test_same_seed_same_proposals(server):
    async def proposals(session_id: str) -> list[float]:
        async with session_for(server, session_id) as session:
            await _unit(session)
            await session.start_optimization("x", "bayesian", {"direction": "minimize", "seed": 7},
                                             max_iterations=8, convergence_threshold=None,
                                             objective=forrester)
            await session.wait_optimization("x")
            return [t["value"] for t in await session.get_optimization_history("x")]

    assert await proposals("s1") == await proposals("s2")


class RandomSearch(BaseOptimizer):
    name = "random_search"
    config_defaults = {}

    def propose(self):
        return self.space.sample(self.rng)


async def test_user_optimizer_runs_client_side_with_the_server_holding_the_lock(server):
    async with session_for(server, "user") as session, session_for(server, "user") as other:
        await _unit(session)
        await session.register_python_optimizer("random_search", RandomSearch)
        run_id = await session.start_optimization("x", "random_search",
                                                  {"direction": "minimize", "seed": 3},
                                                  max_iterations=12, objective=forrester)
        with pytest.raises(dn.OptimizationConflict):
            await other.set_variable("x", 0.2)
        assert await session.wait_optimization("x") in ("max_iterations", "finished")
        status = await other.get_optimization_status("x")
        assert status["optimization_id"] == run_id and status["client_side"]
        assert status["iteration"] == 12 and not status["is_optimizing"]
        assert len(await other.get_optimization_history("x", optimizer_id=run_id)) == 12


async def test_client_side_report_with_next_carries_the_proposal_and_a_refused_one_keeps_the_report(
        server):
    async with session_for(server, "csnext") as session:
        await _unit(session)
        await session.register_python_optimizer("random_search", RandomSearch)
        await session.start_optimization("x", "random_search", {"direction": "minimize"},
                                         max_iterations=3)  # no objective: this test drives
        bridge, sid = session._bridge, session.session_id
        trial_id, value, _, _ = await bridge.next_trial(sid, "x", "", 0.25)
        assert (trial_id, value) == (1, 0.25)
        _, nxt = await bridge.report_and_next(sid, "x", "", 1, 0.5, "", 0.75)
        assert nxt is not None and nxt[:2] == (2, 0.75)
        with pytest.raises(dn.InvalidArgument):  # outside [0, 1]: refused ...
            await bridge.report_and_next(sid, "x", "", 2, 0.1, "", 7.0)
        history = await session.get_optimization_history("x")
        assert [t["state"] for t in history] == ["complete", "complete"]  # ... the report stands
        _, nxt = await bridge.report_and_next(sid, "x", "", 2, 0.1, "", 0.5)  # a retry, new proposal
        assert nxt is not None and nxt[:2] == (3, 0.5)
        status, nxt = await bridge.report_and_next(sid, "x", "", 3, 0.3, "", 0.6)
        assert nxt is not None and nxt[0] == 0 and nxt[2] == "max_iterations"  # the budget
        assert not status["is_optimizing"] and status["iteration"] == 3
        assert await session.get_variable("x", bypass_cache=True) == 0.75  # the best


async def test_bad_starts_are_clear(server):
    async with session_for(server, "bad") as session:
        await _unit(session)
        await session.register_variable("name", "string", "a")
        with pytest.raises(dn.InvalidArgument, match="nope"):
            await session.start_optimization("x", "nope")
        with pytest.raises(dn.InvalidArgument, match="direction"):
            await session.start_optimization("x", "bayesian", {"direction": "up"})
        with pytest.raises(dn.InvalidArgument, match="cannot be optimized"):
            await session.start_optimization("name", "bayesian")
        with pytest.raises(dn.VariableNotFoundError):
            await session.start_optimization("missing", "bayesian")
        assert not (await session.get_optimization_status("x"))["is_optimizing"]


# ---------------------------------------------------------------------------------------------
# processes: a dead driver, a dead server


def _serve(tmp_path, port: int) -> subprocess.Popen:
    env = dict(os.environ, DSPEX_RUNTIME_DIR=str(tmp_path / "rt"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "dspex_notebook", "serve", "--port", str(port),
         "--db", str(tmp_path / "store.sqlite3"), "--token-file", str(tmp_path / "token")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert "serving" in proc.stdout.readline()
    return proc


def _end(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _connect(port: int, session_id: str = "proc"):
    return await dn.SessionContext.connect(session_id, address=f"127.0.0.1:{port}",
                                           token="opt-test-token")


@pytest.mark.slow
async def test_killed_driver_ends_as_abandoned_and_releases_the_lock(tmp_path):
    (tmp_path / "token").write_text("opt-test-token")
    port = _free_port()
    server = _serve(tmp_path, port)
    try:
        ctx = await _connect(port)
        await _unit(ctx)
        driver = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
            import asyncio, time
            import dspex_notebook as dn
            async def main():
                s = await dn.SessionContext.connect("proc", address="127.0.0.1:{port}",
                                                    token="opt-test-token")
                def slow(x):
                    time.sleep(60)
                    return x
                await s.start_optimization("x", "bayesian", lease_seconds=1.0, objective=slow)
                print("started", flush=True)
                await asyncio.sleep(60)
            asyncio.run(main())
        """)], stdout=subprocess.PIPE, text=True)
        try:
            assert driver.stdout.readline().strip() == "started"
            assert (await ctx.get_optimization_status("x"))["is_optimizing"]
            driver.send_signal(signal.SIGKILL)
            driver.wait(10)
        finally:
            _end(driver)
        for _ in range(100):  # bounded: the lease is 1 s, checked every 0.25 s
            status = await ctx.get_optimization_status("x")
            if not status["is_optimizing"]:
                break
            await asyncio.sleep(0.1)
        assert status["stop_reason"] == "abandoned"
        await ctx.set_variable("x", 0.25)  # the lock was released
        await ctx.close()
    finally:
        _end(server)


@pytest.mark.slow
async def test_server_killed_mid_run_keeps_its_trials_and_continues_identically(tmp_path):
    (tmp_path / "token").write_text("opt-test-token")
    port = _free_port()

    async def run(kill_after: int | None) -> list[float]:
        db = tmp_path / "store.sqlite3"
        if db.exists():
            for suffix in ("", "-wal", "-shm", ".lock"):
                (tmp_path / f"store.sqlite3{suffix}").unlink(missing_ok=True)
        server = _serve(tmp_path, port)
        try:
            ctx = await _connect(port)
            await _unit(ctx)
            await ctx.start_optimization("x", "bayesian", {"direction": "minimize", "seed": 11},
                                         max_iterations=10, convergence_threshold=None)
            for i in range(10):  # an external worker, so the kill lands between two trials
                if kill_after is not None and i == kill_after:
                    _end(server)
                    server = _serve(tmp_path, port)  # same file, same port, same token
                trial = None
                for _ in range(100):  # bounded: reconnecting after the restart
                    try:
                        trial = await ctx.next_trial("x")
                        break
                    except dn.BridgeUnavailable:
                        await asyncio.sleep(0.1)
                assert trial is not None
                await ctx.report_trial("x", trial.id, forrester(trial.value))
            history = await ctx.get_optimization_history("x")
            assert [t["iteration"] for t in history] == list(range(1, 11))
            await ctx.close()
            return [t["value"] for t in history]
        finally:
            _end(server)

    uninterrupted = await run(None)
    assert await run(4) == uninterrupted
