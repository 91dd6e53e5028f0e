"""Protobuf fuzzing of every RPC, plus property tests of the pure decoding/validation code.

Every call must end with a deliberate status: bad input is INVALID_ARGUMENT (or the precise code),
never UNKNOWN (an exception escaping a handler) and never our catch-all INTERNAL
``"internal error in <rpc>"`` (an unexpected exception: a bug). The server must keep serving.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import math
import random

import grpc
import numpy as np
import pytest
from google.protobuf import any_pb2, timestamp_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dspex_notebook as dn
from dspex_notebook import _codec
from dspex_notebook._constraints import check_constraints, validate
from dspex_notebook._proto import snakepit_bridge_pb2 as pb
from dspex_notebook._types import TYPE_NAMES
from dspex_notebook.testing import running_server, session_for

SERVICE = pb.DESCRIPTOR.services_by_name["BridgeService"]
METHODS = list(SERVICE.methods)
CALLS_PER_METHOD = 1000
IN_FLIGHT = 50
SESSION = "fz"
URL = "type.googleapis.com/snakepit."

# ----------------------------------------------------------------------------------------------
# pools of interesting field values

VAR_SPECS = [
    ("f", "float", 0.5, {"min": 0.0, "max": 1.0, "step": 0.25}),
    ("fl", "float", 1.0, {"min": 1e-3, "max": 1e3, "log": True}),
    ("fn", "float", 1.0, {"allow_nonfinite": True}),
    ("i", "integer", 3, {"min": -9, "max": 10**20, "step": 3}),
    ("s", "string", "abc", {"pattern": "^[a-z]*$", "max_length": 10}),
    ("b", "boolean", True, None),
    ("c", "choice", "x", {"choices": ["x", "y"]}),
    ("m", "module", "Predict", {"choices": ["Predict", "ReAct"]}),
    ("e", "embedding", np.ones(3), {"dimensions": 3, "normalize": True}),
    ("e16", "embedding", np.ones(2, dtype=np.float16), {"dtype": "float16"}),
    ("t", "tensor", np.zeros((2, 2), dtype=np.int8), {"dtype": "int8", "shape": [2, None]}),
    ("tf", "tensor", np.zeros(2), None),
    ("l", "list", [1, 2], {"item_type": "float", "max_length": 5}),
    ("d", "dict", {"k": 1}, {"required_keys": ["k"]}),
]
NAMES = [spec[0] for spec in VAR_SPECS] + ["missing", "", "var_f_1", "x" * 300, "a b", "☃"]
SESSIONS = [SESSION] * 6 + ["", "other-fz", "x" * 300, "tab\tid", "☃", "fz2"]
TYPES = list(TYPE_NAMES) + ["", "map", "int", "Float", "unknown", "float.binary", "x" * 100]
PATTERNS = ["", "*", "f*", "?", "[", "(", "[a-z]*", ".*", "*" * 50 + "x", "\\"]
CONSTRAINTS = [
    "", "{}", "[]", "null", "1", '"s"', "{not json", '{"min": 0}', '{"max": -1e308}',
    '{"min": 1, "max": 0}', '{"min": ' + "9" * 400 + "}", '{"step": 0}', '{"step": 1e-320}',
    '{"choices": []}', '{"choices": ["a", "a"]}', '{"choices": [1, 2]}', '{"choices": ["a"]}',
    '{"pattern": "("}', '{"pattern": "a{1,99999}"}', '{"shape": [-1, null, 3]}',
    '{"shape": [99999999999999999999]}', '{"dtype": "float16"}', '{"dtype": "int8"}',
    '{"dtype": ["x"]}', '{"dimensions": 0}', '{"dimensions": 3, "normalize": true}',
    '{"item_type": "float"}', '{"item_type": {}}', '{"required_keys": ["k"]}',
    '{"max_length": -1}', '{"log": true, "min": 0}', '{"allowed_modules": ["A"]}',
    '{"unknown_key": 1}', '{"min": NaN}', '{"min": Infinity}', '{"allow_nonfinite": true}',
    "[" * 3000, '{"a":' * 400 + "1" + "}" * 400,
]
JSON_VALUES = [
    b"0.5", b"0.7", b"-0", b"1e309", b"-1e309", b"1e-400", b"3", b"-7", b"1" + b"0" * 400,
    b"9" * 5000, b"1e5", b"1.5", b"true", b"false", b"null", b'"NaN"', b'"Infinity"',
    b'"-Infinity"', b'"nan"', b"nan", b"inf", b'"x"', b'"y"', b'"Predict"', b'"abc"',
    b'"\\ud800"', b'["\\udfff"]', b'"' + b"a" * 2000 + b'"', b"[1,2,3]", b"[1,2]", b"[0.5,0.5]",
    b"[]", b"[[1,2],[3]]", b"[[1,2],[3,4]]", b'[1,"a"]', b"[1e309]", b"[" + b"9" * 400 + b"]",
    b'{"shape":[2],"data":[1,2]}', b'{"shape":[2,2],"dtype":"int8","data":[[1000,2],[3,4]]}',
    b'{"shape":[2],"dtype":"uint8","data":[-1,2]}', b'{"shape":[2],"dtype":"float16","data":[1e10,2]}',
    b'{"shape":[2],"dtype":"bool","data":[2.5,0]}', b'{"data":7}', b'{"data":{"a":1}}',
    b'{"shape":[99999999999999999999],"data":[1]}', b'{"shape":"x","data":[1]}',
    b'{"shape":[2],"dtype":"float32","binary_format":"raw"}',
    b'{"shape":[100000000000000000000,0],"dtype":"float32","binary_format":"raw"}',
    b'{"shape":[' + b"1," * 40 + b'1],"dtype":"int8","binary_format":"raw"}',
    b'{"binary_format":"pickle"}', b'{"binary_format":{}}', b'{"dtype":"complex64"}',
    b'{"k":1}', b'{"k":[1,{"2":null}]}', b'{"1":1,"k":2}', b"[" * 600 + b"]" * 600,
    b"[" * 5000, b'{"a":' * 300 + b"1" + b"}" * 300, b"\xff\xfe", b"", b"{", b"]",
]
URLS = ([URL + t for t in TYPE_NAMES] * 3
        + [URL + "embedding.binary", URL + "tensor.binary"] * 4
        + ["", URL + "float.binary", URL + "map", URL + "nope", "snakepit.float", "float",
           "type.googleapis.com/google.protobuf.StringValue", "a/b/c/snakepit.integer", "/"])
STRINGS = ["", "x", "hello", "☃ unicode", "a" * 5000, "\x00", "pong", "*", "var_f_1", "-1"]


def _binary(rng: random.Random) -> bytes:
    choice = rng.random()
    if choice < 0.3:
        return rng.randbytes(rng.choice([0, 1, 3, 4, 7, 8, 16, 24, 64]))
    if choice < 0.6:
        return np.zeros(rng.choice([0, 1, 2, 3, 4]), dtype=rng.choice(
            ["float32", "float64", "int8", "uint64", "float16", "bool"])).tobytes()
    return b""


def _any(rng: random.Random) -> any_pb2.Any:
    return any_pb2.Any(type_url=rng.choice(URLS), value=rng.choice(JSON_VALUES))


def _string(rng: random.Random, field_name: str) -> str:
    if field_name == "session_id":
        return rng.choice(SESSIONS)
    if field_name in ("variable_identifier", "name", "from_variable", "to_variable"):
        return rng.choice(NAMES)
    if field_name == "type":
        return rng.choice(TYPES)
    if field_name == "constraints_json":
        return rng.choice(CONSTRAINTS)
    if field_name == "pattern":
        return rng.choice(PATTERNS)
    if field_name == "permission":
        return rng.choice(["read", "write", "observe", "optimize", "admin", ""])
    if field_name == "as_session":
        return rng.choice(SESSIONS + [""])
    if field_name == "rules_json":
        return rng.choice(RULES)
    return rng.choice(STRINGS + NAMES)


#: access rules for SetVariablePermissions (valid, invalid, hostile)
RULES = [
    "[]", '[{"session_pattern": "any", "permissions": ["read"]}]',
    '[{"session_pattern": "s*", "permissions": ["read", "write"], "conditions": '
    '{"principal": "*"}}]', '{"session_pattern": "any", "permissions": "observe"}',
    '[{"session_pattern": "any", "permissions": ["fly"]}]', '[{"session_pattern": 5}]',
    '[{"session_pattern": "[", "permissions": ["read"]}]', "[{", '"read"', "[" * 5000,
    '[{"session_pattern": "any", "permissions": ["read"], "conditions": {"x": "y"}}]',
    '[{"session_pattern": "any", "permissions": ["read"], "conditions": '
    '{"not_after": "yesterday"}}]',
]


_INTS = [0, 1, -1, 2, 5, 2**31 - 1, -(2**31), 2**63 - 1, -(2**63)]


def _scalar(rng: random.Random, field, field_name: str):
    t = field.type
    F = field
    if t == F.TYPE_STRING:
        return _string(rng, field_name)
    if t == F.TYPE_BYTES:
        return _binary(rng)
    if t == F.TYPE_BOOL:
        return rng.random() < 0.5
    if t in (F.TYPE_INT32, F.TYPE_SINT32, F.TYPE_SFIXED32, F.TYPE_ENUM):
        return rng.choice([v for v in _INTS if -(2**31) <= v < 2**31])
    if t in (F.TYPE_INT64, F.TYPE_SINT64, F.TYPE_SFIXED64):
        return rng.choice(_INTS)
    if t in (F.TYPE_UINT32, F.TYPE_FIXED32):
        return rng.choice([0, 1, 2**32 - 1])
    if t in (F.TYPE_UINT64, F.TYPE_FIXED64):
        return rng.choice([0, 1, 2**64 - 1])
    if t in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return rng.choice([0.0, -1.5, math.inf, math.nan, 1e308])
    raise AssertionError(f"unhandled field type {t}")


def _fill(msg, rng: random.Random, depth: int = 0) -> None:
    """Set a random subset of ``msg``'s fields to random (often hostile) values."""
    for field in msg.DESCRIPTOR.fields:
        if rng.random() < 0.2 and field.name != "session_id":
            continue
        name = field.name
        repeated = field.is_repeated
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            target = getattr(msg, name)
            key_field = field.message_type.fields_by_name["key"]
            value_field = field.message_type.fields_by_name["value"]
            for _ in range(rng.choice([0, 1, 2, 3, 5])):
                key = (rng.choice(NAMES) if name in ("updates", "binary_updates", "variables")
                       else _scalar(rng, key_field, "key"))
                if value_field.message_type is not None:
                    _fill_message(target[key], rng, depth + 1)
                else:
                    target[key] = _scalar(rng, value_field, name)
            if name == "metadata" and rng.random() < 0.02:
                for i in range(100):  # over the entry limit
                    target[f"k{i}"] = "v"
        elif field.message_type is not None:
            if depth > 3:
                continue
            if repeated:
                for _ in range(rng.choice([0, 1, 2, 4])):
                    _fill_message(getattr(msg, name).add(), rng, depth + 1)
            else:
                _fill_message(getattr(msg, name), rng, depth + 1)
        elif repeated:
            getattr(msg, name).extend(_scalar(rng, field, name)
                                      for _ in range(rng.choice([0, 1, 2, 3])))
        else:
            setattr(msg, name, _scalar(rng, field, name))


def _fill_message(msg, rng: random.Random, depth: int) -> None:
    if isinstance(msg, any_pb2.Any):
        msg.CopyFrom(_any(rng))
    elif isinstance(msg, timestamp_pb2.Timestamp):
        msg.seconds = rng.choice([0, 1, -1, 1_700_000_000, 2**40])
        msg.nanos = rng.choice([0, 999_999_999])
    else:
        _fill(msg, rng, depth)


SAMPLES = {n: (t, v) for n, t, v, _c in VAR_SPECS}


def _encode_into(any_msg, type_name: str, value, rng: random.Random) -> bytes:
    url, data, binary = _codec.encode(type_name, value, binary=rng.random() < 0.5)
    any_msg.type_url, any_msg.value = url, data
    return binary


def _plausible(msg, rng: random.Random) -> None:
    """Make variable requests mostly well-formed, so the fuzzer also reaches the success paths
    (and the code behind them) instead of stopping at the first refusal."""
    kind = msg.DESCRIPTOR.name
    if hasattr(msg, "session_id"):
        msg.session_id = SESSION
    if kind == "RegisterVariableRequest":
        name = rng.choice(list(SAMPLES))
        type_name, value = SAMPLES[name]
        msg.name, msg.type = f"n{rng.randrange(10**6)}", type_name
        msg.constraints_json = '{"choices": ["x", "y"]}' if type_name == "choice" else ""
        msg.initial_binary_value = _encode_into(msg.initial_value, type_name, value, rng)
    elif kind == "SetVariableRequest":
        name = rng.choice(list(SAMPLES))
        msg.variable_identifier = name
        msg.ClearField("expected_version")
        msg.binary_value = _encode_into(msg.value, *SAMPLES[name], rng)
    elif kind == "BatchRegisterVariablesRequest":
        del msg.variables[:]
        for _ in range(rng.randint(1, 3)):
            _plausible(msg.variables.add(), rng)
        msg.updates.clear()
        msg.binary_updates.clear()
    elif kind == "BatchSetVariablesRequest":
        msg.updates.clear()
        msg.binary_updates.clear()
        for name in rng.sample(list(SAMPLES), 3):
            binary = _encode_into(msg.updates[name], *SAMPLES[name], rng)
            if binary:
                msg.binary_updates[name] = binary
    if hasattr(msg, "metadata") and len(msg.metadata) > 10:
        msg.metadata.clear()


def _request_class(method):
    return getattr(pb, method.input_type.name)


def make_bodies(method, n: int) -> list[bytes]:
    """``n`` request bodies: random bytes, truncated valid requests, valid hostile requests."""
    rng = random.Random(f"fuzz-{method.name}")
    cls = _request_class(method)
    bodies = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            bodies.append(rng.randbytes(rng.randint(0, 512)))
            continue
        msg = cls()
        _fill(msg, rng)
        if rng.random() < 0.5:
            _plausible(msg, rng)
        data = msg.SerializeToString()
        if kind == 1 and data:
            data = data[: rng.randrange(len(data))]
        bodies.append(data)
    return bodies


# ----------------------------------------------------------------------------------------------
# the RPC fuzzer


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def _prepare_session(server) -> None:
    async with session_for(server, SESSION) as ctx:
        for name, *_ in VAR_SPECS:  # a fuzzed StartOptimization may hold a variable
            with contextlib.suppress(dn.DspexError):
                await ctx.stop_optimization(name)
        await ctx.register_variables([
            {"name": n, "type": t, "initial_value": v, "constraints": c, "replace": True}
            for n, t, v, c in VAR_SPECS
        ])


async def _call(channel, method, body: bytes, metadata) -> tuple[grpc.StatusCode, str]:
    path = f"/{SERVICE.full_name}/{method.name}"
    try:
        if method.server_streaming:
            # a watch stays open: its first message shows the request was served; hang up then
            call = channel.unary_stream(path)(body, metadata=metadata, timeout=30)
            try:
                async with asyncio.timeout(0.1):
                    async for _ in call:
                        break
            except TimeoutError:
                pass  # a v0.4.x WatchVariables without initial values sends nothing until a write
            call.cancel()
            return grpc.StatusCode.OK, ""
        await channel.unary_unary(path)(body, metadata=metadata, timeout=30)
        return grpc.StatusCode.OK, ""
    except grpc.aio.AioRpcError as err:
        return err.code(), err.details() or ""


async def _ping(channel, metadata) -> None:
    path = f"/{SERVICE.full_name}/Ping"
    reply = pb.PingResponse.FromString(await channel.unary_unary(path)(
        pb.PingRequest(message="still there?").SerializeToString(), metadata=metadata,
        timeout=30))
    assert reply.message == "pong: still there?"


def _is_bug(code: grpc.StatusCode, details: str) -> bool:
    if code is grpc.StatusCode.UNKNOWN:
        return True  # an exception escaped a handler
    return code is grpc.StatusCode.INTERNAL and details.startswith("internal error in")


@pytest.mark.slow
async def test_fuzz_every_rpc():
    handler = _Records()
    logger = logging.getLogger("dspex_notebook.server")
    logger.addHandler(handler)
    bugs: dict[str, list[tuple[str, str, bytes]]] = collections.defaultdict(list)
    seen_codes: dict[str, collections.Counter] = {}
    try:
        with running_server() as server:
            metadata = (("authorization", f"Bearer {server.token}"), ("dspex-codec", "raw"))
            channel = grpc.aio.insecure_channel(server.address)
            try:
                for method in METHODS:
                    await _prepare_session(server)
                    bodies = make_bodies(method, CALLS_PER_METHOD)
                    results = []
                    for start in range(0, len(bodies), IN_FLIGHT):
                        chunk = bodies[start: start + IN_FLIGHT]
                        results += await asyncio.gather(
                            *(_call(channel, method, body, metadata) for body in chunk))
                    assert len(results) == CALLS_PER_METHOD
                    seen_codes[method.name] = collections.Counter(code.name for code, _ in results)
                    for body, (code, details) in zip(bodies, results, strict=True):
                        if _is_bug(code, details):
                            bugs[method.name].append((code.name, details[:200], body[:80]))
                    await _ping(channel, metadata)  # still serving
                await _ping(channel, metadata)
            finally:
                await channel.close()
    finally:
        logger.removeHandler(handler)
    report = {m: (len(b), b[:3]) for m, b in bugs.items()}
    assert not bugs, f"unexpected server errors: {report}"
    assert not handler.records, [r.getMessage() for r in handler.records[:5]]
    assert set(seen_codes) == {m.name for m in METHODS}
    for name, codes in seen_codes.items():
        assert len(codes) >= 2, (name, codes)  # the fuzzer reached past the decoder
    for name in ("RegisterVariable", "SetVariable", "SetVariables", "GetVariables"):
        assert codes_ok(seen_codes[name]), (name, seen_codes[name])


def codes_ok(codes: collections.Counter) -> bool:
    return codes["OK"] > 0 and codes["INVALID_ARGUMENT"] > 0


async def test_undecodable_request_is_invalid_argument(server):
    """A body that is not a valid message gets INVALID_ARGUMENT, and the next call is served."""
    metadata = (("authorization", f"Bearer {server.token}"),)
    channel = grpc.aio.insecure_channel(server.address)
    try:
        for method in METHODS:
            code, details = await _call(channel, method, b"\xff\xff\xff\xff", metadata)
            assert code is grpc.StatusCode.INVALID_ARGUMENT, (method.name, code, details)
            assert method.input_type.name in details
        code, _ = await _call(channel, METHODS[0], b"\xff", ())  # authentication comes first
        assert code is grpc.StatusCode.UNAUTHENTICATED
        await _ping(channel, metadata)
    finally:
        await channel.close()


async def test_hostile_values_on_a_live_session(session):
    """Targeted versions of what the fuzzer looks for, through the public API."""
    await session.register_variable("l", "list", [1])
    deep: list = []
    for _ in range(3000):
        deep = [deep]
    with pytest.raises(dn.InvalidArgument):
        await session.set_variable("l", deep)
    with pytest.raises(dn.DspexError):
        await session.register_variable("big", "string", "x" * (17 * 1024 * 1024))
    await session.register_variable("ok", "string", "x" * 1000)
    assert len(await session.get_variable("ok", bypass_cache=True)) == 1000


# ----------------------------------------------------------------------------------------------
# property tests of the pure layers: only DspexError may come out

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=5),
                               st.dictionaries(st.text(max_size=5), children, max_size=5)),
    max_leaves=30,
)
CONSTRAINT_KEYS = ["min", "max", "step", "log", "allow_nonfinite", "min_length", "max_length",
                   "pattern", "enum", "choices", "allowed_modules", "dimensions", "normalize",
                   "dtype", "shape", "item_type", "required_keys", "other"]
PROPS = settings(max_examples=300, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@PROPS
@given(type_name=st.sampled_from(TYPE_NAMES), value=json_values,
       constraints=st.dictionaries(st.sampled_from(CONSTRAINT_KEYS), json_values, max_size=3))
def test_validate_raises_only_dspex_errors(type_name, value, constraints):
    try:
        cons = check_constraints(type_name, constraints, "p")
    except dn.InvalidArgument:
        cons = {}
    try:
        out = validate(type_name, value, cons, "p")
    except dn.DspexError:
        return
    # whatever was accepted can be encoded, decoded and accepted again
    url, data, binary = _codec.encode(type_name, out)
    _, raw = _codec.decode(url, data, binary)
    validate(type_name, raw, cons, "p")


@PROPS
@given(url=st.sampled_from(URLS), data=st.one_of(st.binary(max_size=200),
                                                   st.sampled_from(JSON_VALUES)),
       binary=st.binary(max_size=64), type_name=st.sampled_from(TYPE_NAMES))
def test_decode_raises_only_dspex_errors(url, data, binary, type_name):
    try:
        _, raw = _codec.decode(url, data, binary)
        validate(type_name, raw, {}, "p")
    except dn.DspexError:
        pass


@PROPS
@given(text=st.one_of(st.sampled_from(CONSTRAINTS), st.text(max_size=60)),
       type_name=st.sampled_from(TYPE_NAMES))
def test_constraint_json_raises_only_invalid_argument(text, type_name):
    try:
        spec = json.loads(text)
    except (ValueError, RecursionError):
        return
    try:
        check_constraints(type_name, spec, "p")
    except dn.InvalidArgument:
        pass
