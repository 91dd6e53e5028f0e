"""ModuleVariableResolver: the strategy variable picks the DSPy module of the next call."""

from __future__ import annotations

import warnings

import pytest
from dspy_helpers import need_dspy

dspy = need_dspy()

from dspex_notebook.dspy import ModuleVariableResolver  # noqa: E402
from dspex_notebook.dspy.testing import FakeEngine  # noqa: E402

CHOICES = ["Predict", "ChainOfThought", "ReAct", "ProgramOfThought", "TreeOfThought"]


async def _strategy(session, value="Predict"):
    await session.register_variable("reasoning_strategy", "module", value,
                                    constraints={"choices": CHOICES})


async def test_switching_the_variable_switches_the_module(session):
    engine = FakeEngine()
    await _strategy(session)
    resolver = ModuleVariableResolver(session, temperature=0.2)
    qa = await resolver.create_module("reasoning_strategy", "question -> answer")
    with dspy.context(lm=engine.lm()):
        first = await qa.forward(question="What is 2+2?")
        assert qa.strategy == "Predict" and "reasoning" not in first
        await session.set_variable("reasoning_strategy", "ChainOfThought")
        second = await qa.forward(question="What is 2+2?")
        assert qa.strategy == "ChainOfThought" and second.reasoning == "Let me think."
        await session.set_variable("reasoning_strategy", "ReAct")
        third = await qa.acall(question="What is 2+2?")
        assert qa.strategy == "ReAct" and "trajectory" in third
        assert qa(question="sync call") is not None  # inside other programs / Evaluate
    assert isinstance(qa.strategies["ChainOfThought"], dspy.ChainOfThought)
    assert {r["temperature"] for r in engine.requests} == {0.2}
    assert third.answer == "42"


async def test_a_strategy_dspy_lacks_is_a_clear_error(session):
    await _strategy(session, "TreeOfThought")
    resolver = ModuleVariableResolver(session)
    with pytest.raises(ValueError) as caught:
        await resolver.create_module("reasoning_strategy", "question -> answer")
    message = str(caught.value)
    assert "'reasoning_strategy' = 'TreeOfThought'" in message
    assert f"dspy {dspy.__version__}" in message
    assert "available: ChainOfThought, CodeAct, Predict, ProgramOfThought, ReAct" in message


async def test_program_of_thought_is_built_with_dspys_deprecation(session):
    await _strategy(session, "ProgramOfThought")
    resolver = ModuleVariableResolver(session)
    with pytest.warns(DeprecationWarning, match="ProgramOfThought is deprecated"):
        module = await resolver.create_module("reasoning_strategy", "question -> answer")
    assert isinstance(module.strategies["ProgramOfThought"], dspy.ProgramOfThought)


async def test_registered_strategies_and_teleprompter_copies(session):
    await _strategy(session, "ChainOfThought")
    resolver = ModuleVariableResolver(session)
    resolver.register("TreeOfThought", lambda signature, tools: dspy.ChainOfThought(signature))
    qa = await resolver.create_module("reasoning_strategy", "question -> answer")
    copy = qa.deepcopy()  # what teleprompters do: modules copied, session shared
    assert copy._resolver is resolver and copy.strategies["ChainOfThought"] is not qa.strategies[
        "ChainOfThought"]
    assert [n for n, _ in qa.named_predictors()] == ["strategies['ChainOfThought'].predict"]
    await session.set_variable("reasoning_strategy", "TreeOfThought")
    with dspy.context(lm=FakeEngine().lm()), warnings.catch_warnings():
        warnings.simplefilter("error")  # `await m.forward()` is the entry point: no dspy warning
        assert (await qa.forward(question="x")).answer == "42"
    assert qa.strategy == "TreeOfThought"
