"""Large requests worked on off the event loop (issue 9, "Liveness"): same answers as inline.

A request body over ``OFFLOAD_BYTES`` is parsed, admitted and has its values checked and
encoded in a worker thread (``server/prepared.py``); staging on the loop re-resolves the
variable and uses the prepared value only if it was prepared against that very variable.
These tests pin the semantics that must not change: what is stored, which error wins, what a
variable changed in between does, and that a body larger than any admissible request of its
type is refused unparsed while every admissible one still gets through.
"""

from __future__ import annotations

import json
from contextlib import contextmanager

import pytest
from hostile_cases import S, any_value, call, channel, register, serve, set_value
from hypothesis import given, settings
from hypothesis import strategies as st

from dspex_notebook import _codec
from dspex_notebook._errors import ConstraintViolation, OptimizationConflict
from dspex_notebook._proto import snakepit_bridge_pb2 as pb
from dspex_notebook._values import VariableSpec
from dspex_notebook._wire.admission import request_bound
from dspex_notebook._wire.servicer.base import OFFLOAD_BYTES
from dspex_notebook.server import Limits
from dspex_notebook.server.backends.memory import MemoryBackend
from dspex_notebook.server.prepared import prepare_spec, prepare_value
from dspex_notebook.server.store import Store


def _ints(n: int) -> bytes:
    return b"[" + b",".join(b"%d" % (i % 7) for i in range(n)) + b"]"


# ----------------------------------------------------------------------------------------------
# the store: a prepared value is used only for the variable it was prepared against


def _store_with(name: str, type_name: str, value, constraints=None) -> Store:
    store = Store(MemoryBackend())
    store.init_session("p", "s", {})
    store.register("p", "s", VariableSpec.checked(name, type_name, value, constraints or {}))
    return store


def test_a_value_prepared_before_a_re_registration_is_checked_again():
    store = _store_with("x", "list", [1], {"max_length": 10})
    old = store.resolve("p", "s", "x")
    ready = prepare_value(old, [0] * 8)  # fits the old rule
    assert ready.error is None
    store.register("p", "s", VariableSpec.checked("x", "list", [1], {"max_length": 5}, replace=True))
    with pytest.raises(ConstraintViolation, match="'x'"):
        store.set("p", "s", "x", ready, {})  # the new variable's rule applies
    assert store.get("p", "s", "x").value == [1]


def test_a_refusal_prepared_before_a_re_registration_is_not_kept():
    store = _store_with("x", "list", [1], {"max_length": 5})
    refused = prepare_value(store.resolve("p", "s", "x"), [0] * 8)
    assert isinstance(refused.error, ConstraintViolation)
    store.register("p", "s", VariableSpec.checked("x", "list", [1], {"max_length": 10}, replace=True))
    assert store.set("p", "s", "x", refused, {}).value == [0] * 8


def test_a_prepared_value_survives_new_versions_of_its_variable():
    store = _store_with("x", "list", [1], {"max_length": 10})
    ready = prepare_value(store.resolve("p", "s", "x"), [2, 3])
    store.set("p", "s", "x", [4], {})  # version 1: same variable, same rules
    new = store.set("p", "s", "x", ready, {})
    assert (new.version, new.value, new.data) == (2, [2, 3], b"[2,3]")


def test_a_prepared_refusal_keeps_the_error_order():
    """Locked first, then the value: as for a value checked on the loop."""
    store = _store_with("x", "list", [1], {"max_length": 1})
    var = store.resolve("p", "s", "x")
    store.view.locks[var.id] = "run-1"  # as a running optimization holds it
    with pytest.raises(OptimizationConflict, match="run-1"):
        store.set("p", "s", "x", prepare_value(var, [0, 0]), {})


def test_a_prepared_registration_reports_its_error_in_batch_order():
    store = Store(MemoryBackend())
    store.init_session("p", "s", {})
    good = prepare_spec(VariableSpec("a", "integer", 1))
    bad = prepare_spec(VariableSpec("b", "integer", "not a number"))
    assert bad.error is not None
    with pytest.raises(type(bad.error)):
        store.register_many("p", "s", [good, bad])
    assert store.list("p", "s") == []  # all or nothing


# ----------------------------------------------------------------------------------------------
# the wire: large requests answer exactly as small ones


async def _init(ch, srv) -> None:
    code, details, _ = await call(ch, srv, "InitializeSession",
                                  pb.InitializeSessionRequest(session_id="s").SerializeToString())
    assert code is S.OK, details


async def test_large_writes_store_and_refuse_as_small_ones(tmp_path):
    with serve(tmp_path, "--memory") as srv:
        ch = channel(srv)
        try:
            await _init(ch, srv)
            cons = json.dumps({"max_length": 40_000})
            for name in ("small", "large"):
                code, details, _ = await call(ch, srv, "RegisterVariable",
                                              register("s", name, "list", b"[]", cons))
                assert code is S.OK, details
            for name, n in (("small", 10), ("large", 30_000)):
                body = set_value("s", name, "list", _ints(n))
                assert (len(body) > OFFLOAD_BYTES) == (name == "large")
                code, details, _ = await call(ch, srv, "SetVariable", body)
                assert code is S.OK, details
            code, details, reply = await call(ch, srv, "GetVariable", pb.GetVariableRequest(
                session_id="s", variable_identifier="large").SerializeToString())
            got = pb.GetVariableResponse.FromString(reply)
            assert json.loads(got.variable.value.value) == json.loads(_ints(30_000))
            assert got.variable.version == 1
            # too long for the constraint: the same refusal, inline and off the loop
            code, details, _ = await call(ch, srv, "RegisterVariable", register(
                "s", "tiny", "list", b"[]", json.dumps({"max_length": 3})))
            assert code is S.OK, details
            answers = []
            for n in (10, 30_000):
                code, details, _ = await call(ch, srv, "SetVariable",
                                              set_value("s", "tiny", "list", _ints(n)))
                answers.append((code, details.replace(str(n), "N")))
            assert answers[0] == answers[1], answers
            assert answers[0][0] is S.INVALID_ARGUMENT
            assert "'tiny'" in answers[0][1] and "'max_length'" in answers[0][1]
            # a large batch registration: one bad spec refuses all, as inline
            req = pb.BatchRegisterVariablesRequest(session_id="s")
            for i in range(40):
                v = req.variables.add(name=f"r{i}", type="list")
                any_value(v.initial_value, "list", _ints(300))
            bad = req.variables.add(name="r_bad", type="integer")
            any_value(bad.initial_value, "integer", b'"seven"')
            assert req.ByteSize() > OFFLOAD_BYTES
            code, details, _ = await call(ch, srv, "RegisterVariables", req.SerializeToString())
            assert code is S.INVALID_ARGUMENT and "'r_bad'" in details, details
            code, _, reply = await call(ch, srv, "ListVariables", pb.ListVariablesRequest(
                session_id="s", pattern="r*").SerializeToString())
            assert code is S.OK and not pb.ListVariablesResponse.FromString(reply).variables
            del req.variables[-1]
            code, details, reply = await call(ch, srv, "RegisterVariables", req.SerializeToString())
            assert code is S.OK, details
            assert len(pb.BatchRegisterVariablesResponse.FromString(reply).variables) == 40
        finally:
            await ch.close()


async def test_oversize_bodies_are_refused_unparsed_and_maximal_ones_admitted(tmp_path):
    limits = Limits()
    wide = "\U0001f600" * limits.max_name_length  # 4 bytes of UTF-8 per character
    maximal = pb.BatchGetVariablesRequest(session_id=wide,
                                          variable_identifiers=[wide] * limits.max_batch)
    bound, rules = request_bound(pb.BatchGetVariablesRequest.DESCRIPTOR, limits)
    assert OFFLOAD_BYTES < maximal.ByteSize() <= bound
    with serve(tmp_path, "--memory") as srv:
        ch = channel(srv)
        try:
            # admitted (parsed off the loop): the answer is about the session, not the size
            code, details, _ = await call(ch, srv, "GetVariables", maximal.SerializeToString())
            assert code is S.NOT_FOUND, details
            over = pb.BatchGetVariablesRequest(session_id="s",
                                               variable_identifiers=["v"] * (bound // 3 + 1))
            code, details, _ = await call(ch, srv, "GetVariables", over.SerializeToString())
            assert code is S.INVALID_ARGUMENT
            assert f"at most {bound} bytes" in details and "≤ 500 identifiers" in details
            assert rules in details
        finally:
            await ch.close()


def test_every_value_free_request_type_has_a_bound():
    """Only the requests that carry values (or tools, or documents) go unbounded."""
    limits = Limits()
    unbounded = {m.input_type.name for m in pb.DESCRIPTOR.services_by_name["BridgeService"].methods
                 if request_bound(m.input_type, limits) is None}
    assert unbounded == {
        "ExecuteToolRequest", "RegisterToolsRequest", "ExecuteElixirToolRequest",
        "SetVariableRequest", "BatchSetVariablesRequest", "RegisterVariableRequest",
        "BatchRegisterVariablesRequest", "ImportVariablesRequest",
    }


# ----------------------------------------------------------------------------------------------
# the codec's piecewise JSON: the same bytes and values as one json call (pieces made tiny
# here, so that small inputs span many of them)

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.text(max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=4)


@contextmanager
def _tiny_pieces():
    saved = _codec._PIECE_ITEMS, _codec._PIECE_BYTES
    _codec._PIECE_ITEMS, _codec._PIECE_BYTES = 3, 8
    try:
        yield
    finally:
        _codec._PIECE_ITEMS, _codec._PIECE_BYTES = saved


@settings(max_examples=200, deadline=None)
@given(st.lists(_json, max_size=40))
def test_piecewise_dumps_is_json_dumps(items):
    as_dict = {f"k{i}": v for i, v in enumerate(items)}
    with _tiny_pieces():
        for value in (items, as_dict):
            assert _codec.dumps(value) == json.dumps(value, allow_nan=False,
                                                     separators=(",", ":")).encode()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-10**30, 10**30) | st.floats(allow_nan=False, allow_infinity=False),
                max_size=40),
       st.sampled_from([b",", b", ", b" , ", b",\n"]),
       st.sampled_from(["", "trailing comma", "double comma", "bad number", "leading comma",
                        "spaces"]))
def test_piecewise_loads_accepts_and_refuses_as_json_loads(numbers, sep, damage):
    text = b"[" + sep.join(json.dumps(n).encode() for n in numbers) + b"]"
    if damage == "trailing comma":
        text = text[:-1] + b", ]"
    elif damage == "double comma" and b"," in text:
        middle = text.index(b",", len(text) // 2) if b"," in text[len(text) // 2:] else text.index(b",")
        text = text[:middle] + b",," + text[middle + 1:]
    elif damage == "bad number":
        text = text[:-1] + b",1e]"
    elif damage == "leading comma":
        text = b"[," + text[1:]
    elif damage == "spaces":
        text = b"  " + text.replace(b"[", b"[   ") + b"\n"
    with _tiny_pieces():
        try:
            expected = json.loads(text)
        except ValueError:
            with pytest.raises(ValueError):
                _codec.loads(text)
        else:
            assert _codec.loads(text) == expected
