"""DSPyOptimizationBridge: sync_dspy_parameters both ways, variable-aware teleprompters."""

from __future__ import annotations

import asyncio

import pytest
from dspy_helpers import need_dspy

dspy = need_dspy()

from dspy.teleprompt import BootstrapFewShot  # noqa: E402

from dspex_notebook import VariableNotFoundError  # noqa: E402
from dspex_notebook.dspy import DSPyOptimizationBridge  # noqa: E402
from dspex_notebook.dspy.testing import FakeEngine  # noqa: E402


async def test_sync_creates_typed_variables_from_the_programs_settings(session):
    lm = FakeEngine().lm(temperature=0.7, max_tokens=256)
    bridge = DSPyOptimizationBridge(session)
    cot = dspy.ChainOfThought("question -> answer", temperature=0.3)
    with dspy.context(lm=lm):
        mappings = await bridge.sync_dspy_parameters(cot, variable_prefix="cot_")
    assert mappings == {"cot_temperature": "predict.config.temperature",
                        "cot_max_tokens": "predict.config.max_tokens"}
    t = await session.get_variable_info("cot_temperature")
    m = await session.get_variable_info("cot_max_tokens")
    assert (t.type, t.value, t.constraints) == ("float", 0.3, {"min": 0.0, "max": 2.0})
    assert (m.type, m.value) == ("integer", 256) and m.constraints["min"] == 1
    assert t.metadata["dspy.target"] == "predict.config.temperature"
    assert t.metadata["dspy.program"] == "cot"
    await bridge.close()


async def test_sync_both_ways(session, server):
    from dspex_notebook.testing import session_for

    engine = FakeEngine()
    bridge = DSPyOptimizationBridge(session)
    program = dspy.ChainOfThought("question -> answer")
    program.summarize = dspy.Predict("answer -> summary", max_tokens=20)
    mappings = await bridge.sync_dspy_parameters(program, "qa_", lm=engine.lm(temperature=0.5,
                                                                               max_tokens=99))
    assert mappings == {"qa_predict_temperature": "predict.config.temperature",
                        "qa_predict_max_tokens": "predict.config.max_tokens",
                        "qa_summarize_temperature": "summarize.config.temperature",
                        "qa_summarize_max_tokens": "summarize.config.max_tokens"}
    assert await session.get_variables(list(mappings)) == {
        "qa_predict_temperature": 0.5, "qa_predict_max_tokens": 99,
        "qa_summarize_temperature": 0.5, "qa_summarize_max_tokens": 20}

    # variables -> program: another client's write arrives through the watch
    async with session_for(server, session.session_id) as other:
        await other.set_variable("qa_summarize_temperature", 1.1)
    for _ in range(200):  # bounded
        if program.summarize.config.get("temperature") == 1.1:
            break
        await asyncio.sleep(0.01)
    assert program.summarize.config["temperature"] == 1.1
    with dspy.context(lm=engine.lm()):
        program.summarize(answer="x")  # a direct call: the program itself holds the value
    assert engine.last["temperature"] == 1.1 and engine.last["max_tokens"] == 20

    # program -> variables: only what changed is written, in one atomic batch
    program.predict.update_config(temperature=0.05, max_tokens=512)
    written = await bridge.push_dspy_parameters(program)
    assert written == {"qa_predict_temperature": 0.05, "qa_predict_max_tokens": 512}
    history = await session.get_variable_history("qa_predict_max_tokens")
    assert history[0]["value"] == 512
    assert await bridge.push_dspy_parameters(program) == {}

    # a second program synced to the same variables takes the session's values
    again = dspy.ChainOfThought("question -> answer")
    again.summarize = dspy.Predict("answer -> summary")
    await bridge.sync_dspy_parameters(again, "qa_", lm=engine.lm(temperature=0.5), follow=False)
    assert again.predict.config == {"temperature": 0.05, "max_tokens": 512}
    await bridge.close()


async def test_push_refuses_a_value_the_variable_cannot_take(session):
    bridge = DSPyOptimizationBridge(session)
    program = dspy.Predict("question -> answer", temperature=0.4)
    await bridge.sync_dspy_parameters(program, "p_", knobs=["temperature"], follow=False)
    program.update_config(temperature=9.0)
    with pytest.raises(ValueError, match="p_temperature"):
        await bridge.push_dspy_parameters(program)
    assert await session.get_variable("p_temperature") == 0.4
    with pytest.raises(KeyError, match="was not synced"):
        await bridge.push_dspy_parameters(dspy.Predict("a -> b"))
    with pytest.raises(ValueError, match="unknown knobs"):
        await bridge.sync_dspy_parameters(program, "p_", knobs=["warmth"])


async def _bootstrap_setup(session):
    await session.register_variable("temperature", "float", 0.9, constraints={"min": 0, "max": 2})
    await session.register_variable("max_demos", "integer", 2, constraints={"min": 0, "max": 8})
    trainset = [dspy.Example(question=f"q{i}", answer=f"a{i}").with_inputs("question")
                for i in range(4)]
    engine = FakeEngine({f"q{i}": f"a{i}" for i in range(4)})
    return trainset, engine


def accuracy_metric(example, prediction, trace=None):
    return example.answer == prediction.answer


async def test_variable_aware_bootstrap_few_shot_as_the_spec_shows(session):
    trainset, engine = await _bootstrap_setup(session)
    bridge = DSPyOptimizationBridge(session)
    optimizer = await bridge.create_variable_aware_optimizer(
        BootstrapFewShot,
        variable_mappings={"teacher_temperature": "temperature",
                           "max_bootstrapped_demos": "max_demos"},
        metric=accuracy_metric)
    student = dspy.ChainOfThought("question -> answer")
    with dspy.context(lm=engine.lm(temperature=0.0)):
        optimized_program = await optimizer.compile(student, trainset=trainset)
    assert optimizer.optimizer.max_bootstrapped_demos == 2
    assert optimizer.optimizer.teacher_settings["lm"].kwargs["temperature"] == 0.9
    demos = optimized_program.predict.demos
    assert sum(bool(d.get("augmented")) for d in demos) == 2  # bootstrapped, at most max_demos
    assert len(demos) == 4  # + the labeled examples left (max_labeled_demos=16)
    teacher_calls = [r for r in engine.requests if r["temperature"] == 0.9]
    assert len(teacher_calls) == 2  # the teacher ran at the variable's temperature
    assert await session.get_variable("bootstrapfewshot_score") == 1.0
    assert await session.get_variable("bootstrapfewshot_demos") == 4
    result = await session.get_variable("bootstrapfewshot_result")
    assert result["settings"] == {"teacher_temperature": 0.9, "max_bootstrapped_demos": 2}
    assert result["score_on"] == "trainset"

    await session.set_variable("max_demos", 1)  # a second compile, with history
    with dspy.context(lm=engine.lm()):
        again = await optimizer.compile(dspy.ChainOfThought("question -> answer"),
                                        trainset=trainset, valset=trainset[:2])
    assert sum(bool(d.get("augmented")) for d in again.predict.demos) == 1
    history = await session.get_variable_history("bootstrapfewshot_result")  # newest first
    assert [h["value"]["settings"]["max_bootstrapped_demos"] for h in history] == [1, 2]
    assert (await session.get_variable("bootstrapfewshot_result"))["score_on"] == "valset"


async def test_compile_runs_off_the_loop_with_the_callers_dspy_context(session):
    import threading

    trainset, engine = await _bootstrap_setup(session)
    seen = []
    loop_thread = threading.get_ident()

    def metric(example, prediction, trace=None):
        seen.append((threading.get_ident(), dspy.settings.lm))
        return True

    lm = engine.lm()
    bridge = DSPyOptimizationBridge(session)
    optimizer = await bridge.create_variable_aware_optimizer(
        BootstrapFewShot, {"max_bootstrapped_demos": "max_demos"}, metric=metric)
    with dspy.context(lm=lm):
        await optimizer.compile(dspy.Predict("question -> answer"), trainset=trainset)
    assert seen and all(t != loop_thread for t, _ in seen)
    assert any(current is lm for _, current in seen)


async def test_unknown_settings_and_missing_variables_fail_at_creation(session):
    await session.register_variable("max_demos", "integer", 2)
    bridge = DSPyOptimizationBridge(session)
    with pytest.raises(ValueError, match=r"no setting 'teacher_warmth' .*teacher_temperature"):
        await bridge.create_variable_aware_optimizer(BootstrapFewShot, {"teacher_warmth": "max_demos"})
    with pytest.raises(VariableNotFoundError):
        await bridge.create_variable_aware_optimizer(BootstrapFewShot,
                                                     {"max_rounds": "no_such_variable"})
    with pytest.raises(ValueError, match="both as a keyword argument and in variable_mappings"):
        await bridge.create_variable_aware_optimizer(
            BootstrapFewShot, {"max_rounds": "max_demos"}, max_rounds=2)
