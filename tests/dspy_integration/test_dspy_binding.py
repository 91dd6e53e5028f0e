"""Variables bound to DSPy knobs: what the LM receives follows the variables, call by call."""

from __future__ import annotations

import asyncio

import pytest
from dspy_helpers import need_dspy

dspy = need_dspy()

from dspex_notebook.dspy import ProgramBinding  # noqa: E402
from dspex_notebook.dspy.testing import FakeEngine  # noqa: E402


async def _temperature(session, name="temperature", value=0.3):
    await session.register_variable(name, "float", value, constraints={"min": 0.0, "max": 2.0})


async def test_predictor_config_follows_the_variable_on_the_next_call(session):
    engine = FakeEngine()
    lm = engine.lm(temperature=0.5, max_tokens=100)
    await _temperature(session)
    await session.register_variable("tokens", "integer", 64, constraints={"min": 1, "max": 4096})
    cot = dspy.ChainOfThought("question -> answer")
    binding = ProgramBinding(session, cot, {"temperature": "predict.config.temperature",
                                            "tokens": "predict.config.max_tokens"}, lm=lm)
    with dspy.context(lm=lm):
        await binding.acall(question="q")
        assert (engine.last["temperature"], engine.last["max_tokens"]) == (0.3, 64)
        await session.set_variable("temperature", 1.25)
        await session.set_variable("tokens", 300)
        out = await binding.acall(question="q")
    assert (engine.last["temperature"], engine.last["max_tokens"]) == (1.25, 300)
    assert out.answer == "42"
    assert cot.predict.config == {"temperature": 1.25, "max_tokens": 300}  # DSPy's own knob


async def test_program_wide_lm_kwargs_and_the_model_variable(session):
    small, large = FakeEngine(lambda i, r: "small"), FakeEngine(lambda i, r: "large")
    lms = {"small": small.lm("openai/small", max_tokens=50), "large": large.lm("openai/large")}
    await _temperature(session, value=0.2)
    await session.register_variable("model", "choice", "small",
                                    constraints={"choices": ["small", "large", "absent"]})
    program = dspy.Predict("question -> answer")
    binding = ProgramBinding(session, program, {"temperature": "lm.temperature", "model": "lm"},
                             lms=lms)
    assert (await binding.acall(question="q")).answer == "small"
    assert small.last["temperature"] == 0.2 and small.last["max_tokens"] == 50
    await session.update_variables({"model": "large", "temperature": 0.9})
    assert (await binding.acall(question="q")).answer == "large"
    assert large.last["temperature"] == 0.9 and large.last["model"] == "openai/large"
    assert lms["small"].kwargs["temperature"] is None  # the caller's LMs are not changed
    await session.set_variable("model", "absent")
    with pytest.raises(ValueError, match=r"'model' = 'absent' names no LM .*small, large"):
        await binding.acall(question="q")


async def test_predictor_config_wins_over_program_wide_kwargs_as_in_dspy(session):
    engine = FakeEngine()
    await _temperature(session, "global_t", 0.4)
    await _temperature(session, "answer_t", 1.5)
    prog = dspy.ChainOfThought("question -> answer")
    plain = dspy.Predict("question -> answer")
    prog.other = plain
    names = dict(prog.named_predictors())
    assert set(names) == {"predict", "other"}
    binding = ProgramBinding(session, prog, {"global_t": "lm.temperature",
                                             "answer_t": "predict.config.temperature"},
                             lm=engine.lm())
    with binding.context():
        prog.predict(question="a")
        plain(question="b")
    assert [r["temperature"] for r in engine.requests] == [1.5, 0.4]


async def test_sync_call_from_a_worker_thread_reads_fresh_values(session):
    engine = FakeEngine()
    await _temperature(session)
    program = dspy.Predict("question -> answer")
    binding = ProgramBinding(session, program, {"temperature": "self.config.temperature"},
                             lm=engine.lm())
    session.set_cache_config(ttl=0)  # nothing cached: the worker must ask the server
    await session.set_variable("temperature", 0.8)
    with dspy.context(lm=engine.lm()):
        await asyncio.to_thread(binding, question="q")
    assert engine.last["temperature"] == 0.8


async def test_sync_call_on_the_loop_without_cached_values_is_a_clear_error(session):
    await _temperature(session)
    binding = ProgramBinding(session, dspy.Predict("q -> a"), {"temperature": "self.config.temperature"})
    session.set_cache_config(ttl=0)
    with pytest.raises(RuntimeError, match="not cached .* use the async form"):
        binding(q="x")


async def test_follow_applies_changes_from_another_client(session, server):
    from dspex_notebook.testing import session_for

    await _temperature(session)
    program = dspy.Predict("question -> answer")
    binding = ProgramBinding(session, program, {"temperature": "self.config.temperature"})
    await binding.follow()
    assert program.config["temperature"] == 0.3
    async with session_for(server, session.session_id) as other:
        await other.set_variable("temperature", 1.7)
    for _ in range(200):  # bounded: the watch delivers within a few ms
        if program.config.get("temperature") == 1.7:
            break
        await asyncio.sleep(0.01)
    assert program.config["temperature"] == 1.7
    await binding.aclose()


async def test_bad_targets_and_values_name_what_is_wrong(session):
    await _temperature(session)
    await session.register_variable("label", "string", "hot")
    program = dspy.ChainOfThought("question -> answer")
    with pytest.raises(ValueError, match=r"no predictor 'generate' \(it has: predict\)"):
        ProgramBinding(session, program, {"temperature": "generate.config.temperature"})
    with pytest.raises(ValueError, match="'warmth' is not a request kwarg"):
        ProgramBinding(session, program, {"temperature": "lm.warmth"})
    with pytest.raises(ValueError, match="is not one of"):
        ProgramBinding(session, program, {"temperature": "predict.temperature"})
    binding = ProgramBinding(session, program, {"label": "predict.config.temperature"})
    with pytest.raises(TypeError, match="'label' drives DSPy 'temperature' but holds 'hot'"):
        await binding.refresh()
    lmless = ProgramBinding(session, program, {"temperature": "lm.temperature"})
    lmless.apply({"temperature": 0.1})
    with dspy.context(lm=None), pytest.raises(ValueError, match="there is no LM"):
        lmless.call_lm()
