"""A DSPy program on a dev set as the objective of a server-held run, and the spec's
"Real-Time Adaptive System" example, offline."""

from __future__ import annotations

import asyncio

from dspy_helpers import need_dspy

dspy = need_dspy()

from dspex_notebook.dspy import DSPyOptimizationBridge, ModuleVariableResolver  # noqa: E402
from dspex_notebook.dspy.testing import FakeEngine, TemperatureTask  # noqa: E402


def test_the_fake_task_peaks_where_it_says():
    task = TemperatureTask(n=20, peak=0.7, step=0.05)
    assert task.accuracy(0.7) == 1.0
    assert task.accuracy(0.2) < task.accuracy(0.5) < task.accuracy(0.68)
    assert task.accuracy(1.2) < task.accuracy(0.9)


async def test_bayesian_run_over_temperature_finds_the_peak(session):
    task = TemperatureTask(n=20, peak=0.7, step=0.05)
    await session.register_variable("temperature", "float", 0.0, constraints={"min": 0.0, "max": 2.0})
    program = dspy.Predict("question -> answer")
    bridge = DSPyOptimizationBridge(session)
    objective = bridge.program_objective(
        program, task.examples, task.metric, variable="temperature",
        target="self.config.temperature", lm=task.engine.lm(), metric_name="accuracy")
    seen = []
    await session.start_optimization(
        "temperature", "bayesian", {"metric": "accuracy", "seed": 0, "n_initial_points": 5},
        max_iterations=20, convergence_threshold=None, objective=objective,
        callback=lambda i, value, metrics: seen.append((value, metrics["accuracy"])))
    assert await session.wait_optimization("temperature") == "max_iterations"
    status = await session.get_optimization_status("temperature")
    assert abs(status["best_value"] - 0.7) < 0.1
    assert status["best_metrics"]["accuracy"] >= 0.9
    assert await session.get_variable("temperature", bypass_cache=True) == status["best_value"]
    # every trial's accuracy is what the engine produces at that temperature: the program ran
    assert len(seen) == 20
    assert all(abs(acc - task.accuracy(value)) < 1e-9 for value, acc in seen)
    # ... and the LM received the trial's temperature
    received = {round(r["temperature"], 9) for r in task.engine.requests}
    assert {round(v, 9) for v, _ in seen} <= received
    assert len(task.engine.requests) == 20 * 20


async def test_objective_reads_the_other_bound_variables_fresh(session):
    task = TemperatureTask(n=4)
    await session.register_variable("temperature", "float", 0.7, constraints={"min": 0.0, "max": 2.0})
    await session.register_variable("tokens", "integer", 32, constraints={"min": 1, "max": 1000})
    program = dspy.Predict("question -> answer")
    objective = DSPyOptimizationBridge(session).program_objective(
        program, task.examples, task.metric, variable="temperature",
        target="self.config.temperature", bindings={"tokens": "lm.max_tokens"},
        lm=task.engine.lm())
    assert await objective(0.7) == {"score": 1.0}
    assert task.engine.last["max_tokens"] == 32
    await session.set_variable("tokens", 77)
    assert await objective(1.0) == {"score": task.accuracy(1.0)}
    assert task.engine.last["max_tokens"] == 77 and task.engine.last["temperature"] == 1.0


async def test_real_time_adaptive_system_example_runs(session, capsys):
    # the spec's example, verbatim except for the fake LM and asserting what it prints
    engine = FakeEngine()
    with dspy.context(lm=engine.lm()):
        await session.register_variable(
            'reasoning_strategy',
            'module',
            'ChainOfThought',
            constraints={
                'choices': ['Predict', 'ChainOfThought', 'ReAct', 'ProgramOfThought']
            }
        )
        await session.register_variable(
            'complexity_threshold',
            'float',
            0.5,
            constraints={'min': 0.0, 'max': 1.0}
        )
        resolver = ModuleVariableResolver(session)

        changes = []

        async def strategy_watcher():
            async for update in session.watch_variable('reasoning_strategy'):
                print(f"Strategy changed to: {update.value}")
                changes.append(update.value)

        watcher_task = asyncio.create_task(strategy_watcher())

        async def answer_question(question: str):
            complexity = len(question.split()) / 20.0
            threshold = await session.get_variable('complexity_threshold')
            if complexity > threshold:
                await session.set_variable('reasoning_strategy', 'ChainOfThought')
            else:
                await session.set_variable('reasoning_strategy', 'Predict')
            qa_module = await resolver.create_module(
                'reasoning_strategy',
                "question -> answer"
            )
            return await qa_module.forward(question=question), qa_module.strategy

        simple_q = "What is 2+2?"
        complex_q = ("Explain the philosophical implications of consciousness in artificial "
                     "intelligence systems, their history and their consequences for the design of "
                     "machines")  # the spec's question has 10 words (< 0.5 * 20): made longer
        simple_ans, simple_strategy = await answer_question(simple_q)
        complex_ans, complex_strategy = await answer_question(complex_q)

        stats = await session.get_variable_stats()
        print(f"Total variable updates: {stats['write_count']}")
        print(f"Cache hit rate: {stats['cache_hit_rate']:.2%}")
        for _ in range(200):  # bounded: let the watcher see the last change
            if "Predict" in changes and changes[-1] == "ChainOfThought":
                break
            await asyncio.sleep(0.01)
        watcher_task.cancel()

    assert (simple_strategy, complex_strategy) == ("Predict", "ChainOfThought")
    assert simple_ans.answer == complex_ans.answer == "42"
    assert "reasoning" not in simple_ans and complex_ans.reasoning == "Let me think."
    assert stats["write_count"] >= 2
    assert [r["inputs"]["question"] for r in engine.requests] == [simple_q, complex_q]
    # the initial value (ChainOfThought, or Predict if the first write landed before the watch
    # started), then each change
    assert changes[-2:] == ["Predict", "ChainOfThought"]
    out = capsys.readouterr().out
    assert "Strategy changed to: Predict" in out and "Cache hit rate: " in out
