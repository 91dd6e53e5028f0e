"""Offline LMs for tests, tutorials and CI: real ``dspy.LM`` objects over a local engine.

:class:`FakeEngine` implements DSPy 3.4's engine interface (``complete(Request) -> Response``)
and ``FakeEngine.lm(...)`` wraps it in a real ``dspy.LM`` (a ``dspy.BaseLM`` subclass), so
every DSPy mechanism — ``Predict.config``, ``LM.kwargs``, ``lm.copy``, ``dspy.context`` — runs
exactly as with a hosted model. (Subclassing ``BaseLM.forward`` would work too, but DSPy 3.4.1
deprecates it and 3.5 removes it.) The engine records what each request carried (model,
temperature, max_tokens, top_p, inputs), so tests assert on what the LM *received*.

Answers are produced in the ChatAdapter format for whatever output fields the request asks
for; ``answer(inputs, request) -> str`` decides the main field's text.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

from ._load import load_dspy

_FIELD = re.compile(r"\[\[ ## (\w+) ## \]\]\n(.*?)(?=\n\n\[\[ ## |\n\nRespond with|\Z)", re.S)
_OUTPUTS = re.compile(r"Your output fields are:\n((?:\d+\. `\w+`.*\n?)+)")
_OUTPUT_NAME = re.compile(r"\d+\. `(\w+)`")

Answer = Callable[[dict[str, str], Any], str]


class FakeEngine:
    """A deterministic offline engine that records every request.

    Parameters:
        answer: ``answer(inputs, request) -> str`` for the request's main output field (the
            last one, e.g. ``answer``), or a mapping from an input value (e.g. the question)
            to the answer; default ``"42"``.
    """

    def __init__(self, answer: Answer | Mapping[str, str] | None = None) -> None:
        if answer is None:
            self._answer: Answer = lambda inputs, request: "42"
        elif callable(answer):
            self._answer = answer
        else:
            table = dict(answer)
            self._answer = lambda inputs, request: next(
                (table[v] for v in inputs.values() if v in table), "unknown")
        self.requests: list[dict[str, Any]] = []  #: what each request carried, in order
        self._lock = threading.Lock()

    def lm(self, model: str = "openai/fake", **kwargs: Any) -> Any:
        """A real ``dspy.LM`` served by this engine (no cache, so every call reaches it)."""
        dspy = load_dspy()
        return dspy.LM(model, engine=self, cache=False, **kwargs)

    def complete(self, request: Any) -> Any:
        from dspy.lm15 import Message, Response, TextPart, Usage

        system = request.system if isinstance(request.system, str) else "".join(
            getattr(p, "text", "") for p in (request.system or ()))
        user = [m for m in request.messages if m.role == "user"]
        inputs = {k: v.strip() for k, v in _FIELD.findall(user[-1].text or "")} if user else {}
        config = request.config
        record = {"model": request.model, "temperature": config.temperature,
                  "max_tokens": config.max_tokens, "top_p": config.top_p, "inputs": inputs}
        with self._lock:
            self.requests.append(record)
        found = _OUTPUTS.search(system)
        outputs = _OUTPUT_NAME.findall(found.group(1)) if found else ["answer"]
        main = self._answer(inputs, request)
        values = {name: _FILLERS.get(name, "ok") for name in outputs}
        answered = [name for name in outputs if name not in _FILLERS]
        if answered:  # the last output that is not a ReAct/CoT bookkeeping field
            values[answered[-1]] = main
        text = "".join(f"[[ ## {k} ## ]]\n{v}\n\n" for k, v in values.items()) + "[[ ## completed ## ]]"
        return Response(id=None, model=request.model, message=Message.assistant([TextPart(text)]),
                        finish_reason="stop", usage=Usage(input_tokens=0, output_tokens=0,
                                                          total_tokens=0))

    def stream(self, request: Any) -> Any:
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))

    def close(self) -> None:
        pass

    @property
    def last(self) -> dict[str, Any]:
        """The most recent request's record."""
        return self.requests[-1]


_FILLERS = {"next_tool_name": "finish", "next_tool_args": "{}", "reasoning": "Let me think.",
            "next_thought": "I can answer now."}


class TemperatureTask:
    """A QA task whose accuracy under :class:`FakeEngine` peaks at a known temperature.

    Question ``i`` (of ``n``) is answered correctly iff ``|temperature - peak| < (i + 1) *
    step``, so accuracy falls off linearly on both sides of ``peak`` (1.0 within ``step``).

    Attributes:
        examples: ``dspy.Example(question=..., answer=...)`` with inputs set.
        engine: the engine; ``task.engine.lm()`` is the LM to use.
    """

    def __init__(self, n: int = 20, peak: float = 0.7, step: float = 0.05) -> None:
        dspy = load_dspy()
        self.n, self.peak, self.step = n, peak, step
        self.examples = [dspy.Example(question=f"question {i}", answer=f"answer {i}")
                         .with_inputs("question") for i in range(n)]
        self.engine = FakeEngine(self._answer)

    def _answer(self, inputs: dict[str, str], request: Any) -> str:
        match = re.fullmatch(r"question (\d+)", inputs.get("question", ""))
        if match is None:
            return "unknown"
        i = int(match.group(1))
        temperature = request.config.temperature or 0.0
        return f"answer {i}" if abs(temperature - self.peak) < (i + 1) * self.step else "wrong"

    def accuracy(self, temperature: float) -> float:
        """The exact accuracy at ``temperature`` (what the engine will produce)."""
        right = sum(abs(temperature - self.peak) < (i + 1) * self.step for i in range(self.n))
        return right / self.n

    @staticmethod
    def metric(example: Any, prediction: Any, trace: Any = None) -> bool:
        """Exact match of ``answer``."""
        return bool(example.answer == getattr(prediction, "answer", None))
