"""Every variable type and every constraint, through the public SessionContext API.

Values are registered by one client and read back both from that client (its cache) and from a
second client that has never seen the variable (so the value really crossed the wire twice).
"""

from __future__ import annotations

import math
import socket

import grpc
import numpy as np
import pytest

import dspex_notebook as dn
from dspex_notebook.testing import session_for

# ----------------------------------------------------------------------------------------------
# helpers


def assert_same(got, want):
    """Equal values; numpy arrays equal by dtype, shape and values."""
    if isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray), f"expected an ndarray, got {type(got).__name__}"
        assert got.dtype == want.dtype, (got.dtype, want.dtype)
        assert got.shape == want.shape, (got.shape, want.shape)
        assert np.array_equal(got, want, equal_nan=want.dtype.kind == "f")
    elif isinstance(want, float) and math.isnan(want):
        assert isinstance(got, float) and math.isnan(got)
    else:
        assert type(got) is type(want), (type(got), type(want))
        assert got == want


async def read_back(server, session, name):
    """The value as seen by ``session`` (cache), by ``session`` from the server, and by a fresh
    client of the same session."""
    cached = await session.get_variable(name)
    fetched = await session.get_variable(name, bypass_cache=True)
    async with session_for(server, session.session_id) as other:
        remote = await other.get_variable(name)
    return cached, fetched, remote


# ----------------------------------------------------------------------------------------------
# round trips

SCALARS = [
    ("float", 0.7, None, 0.7),
    ("float", -1e300, None, -1e300),
    ("float", 3, None, 3.0),  # an int is a valid float, stored as float
    ("float", np.float32(0.5), None, 0.5),
    ("integer", 42, None, 42),
    ("integer", -(2**62), None, -(2**62)),
    ("integer", 2**80, None, 2**80),  # JSON integers are arbitrary precision
    ("integer", np.int16(7), None, 7),
    ("string", "héllo ✓ \u2603 \"quoted\" \\", None, "héllo ✓ \u2603 \"quoted\" \\"),
    ("string", "", None, ""),
    ("boolean", True, None, True),
    ("boolean", False, None, False),
    ("boolean", np.bool_(True), None, True),
    ("choice", "gpt-4", {"choices": ["gpt-4", "claude-3"]}, "gpt-4"),
    ("module", "ChainOfThought", None, "ChainOfThought"),
    ("module", "Predict", {"choices": ["Predict", "ReAct"]}, "Predict"),
    ("list", [1, 2.5, "a", True, None, [1, [2]], {"k": "v"}], None,
     [1, 2.5, "a", True, None, [1, [2]], {"k": "v"}]),
    ("list", (1, 2), None, [1, 2]),  # tuples become lists
    ("list", [], None, []),
    ("dict", {"a": 1, "b": [1, 2], "c": {"d": None}}, None, {"a": 1, "b": [1, 2], "c": {"d": None}}),
    ("dict", {}, None, {}),
    # keys converted to strings (spec: ":map -> dict, keys converted to strings")
    ("dict", {1: "one", 2.5: "x", False: "f", "s": {3: "nested"}}, None,
     {"1": "one", "2.5": "x", "false": "f", "s": {"3": "nested"}}),
]


@pytest.mark.parametrize(("type_name", "value", "constraints", "want"), SCALARS,
                         ids=[f"{t}-{i}" for i, (t, *_rest) in enumerate(SCALARS)])
async def test_scalar_round_trip(server, session, type_name, value, constraints, want):
    vid = await session.register_variable("v", type_name, value, constraints=constraints)
    assert isinstance(vid, str) and vid
    for got in await read_back(server, session, "v"):
        assert_same(got, want)
    info = await session.get_variable_info("v")
    assert info.type == type_name
    assert info.id == vid and info.name == "v"


@pytest.mark.parametrize("type_name", list(dn.VariableType))
async def test_type_enum_members_are_accepted(session, type_name):
    samples = {
        "float": 1.0, "integer": 1, "string": "s", "boolean": True, "choice": "a",
        "module": "M", "embedding": np.ones(2), "tensor": np.ones((1, 2)), "list": [1],
        "dict": {"a": 1},
    }
    cons = {"choices": ["a"]} if type_name == "choice" else None
    await session.register_variable("v", type_name, samples[type_name.value], constraints=cons)
    assert (await session.get_variable_info("v")).type == type_name.value


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
async def test_embedding_round_trip_keeps_dtype(server, session, dtype):
    value = np.linspace(-1.5, 2.25, 7).astype(dtype)
    await session.register_variable("emb", "embedding", value)
    for got in await read_back(server, session, "emb"):
        assert_same(got, value)


async def test_embedding_from_list_becomes_float64(server, session):
    await session.register_variable("emb", "embedding", [1, 2, 3])
    for got in await read_back(server, session, "emb"):
        assert_same(got, np.array([1.0, 2.0, 3.0]))


async def test_large_embedding_round_trip(server, session):
    value = np.random.default_rng(1).standard_normal(1536).astype(np.float32)
    await session.register_variable("emb", "embedding", value)
    for got in await read_back(server, session, "emb"):
        assert_same(got, value)


TENSOR_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                 "float16", "float32", "float64", "bool"]


def _tensor_sample(dtype, shape):
    n = int(np.prod(shape))
    if dtype == "bool":
        return (np.arange(n) % 3 == 0).reshape(shape)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else np.finfo(dtype)
    base = np.arange(n, dtype=np.float64).reshape(shape)
    arr = base.astype(dtype)
    if n >= 2:  # the extremes survive the trip
        arr.flat[0] = info.min
        arr.flat[-1] = info.max
    return arr


@pytest.mark.parametrize("dtype", TENSOR_DTYPES)
@pytest.mark.parametrize("shape", [(), (3,), (2, 3, 4)], ids=["0d", "1d", "3d"])
async def test_tensor_round_trip(server, session, dtype, shape):
    value = _tensor_sample(dtype, shape)
    await session.register_variable("t", "tensor", value)
    for got in await read_back(server, session, "t"):
        assert_same(got, value)


async def test_tensor_memory_layout_and_byte_order_do_not_matter(server, session):
    base = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    await session.register_variable("fortran", "tensor", np.asfortranarray(base))
    await session.register_variable("bigendian", "tensor", base.astype(">f8"))
    await session.register_variable("strided", "tensor", base[:, ::2, 1:])
    for got in await read_back(server, session, "fortran"):
        assert np.array_equal(got, base)
    for got in (await read_back(server, session, "bigendian"))[1:]:
        assert_same(got, base)  # native float64 after the trip
    for got in await read_back(server, session, "strided"):
        assert np.array_equal(got, base[:, ::2, 1:])


async def test_set_array_then_mutate_it_does_not_change_the_variable(server, session):
    """The client cache must not alias the caller's array (it would return a value the server
    never had)."""
    await session.register_variable("emb", "embedding", np.zeros(3))
    mine = np.zeros(3)
    mine[0] = 1.0
    await session.set_variable("emb", mine)
    mine[1] = 99.0  # the caller keeps using their array
    cached = await session.get_variable("emb")
    assert_same(cached, np.array([1.0, 0.0, 0.0]))
    assert_same(await session.get_variable("emb", bypass_cache=True), np.array([1.0, 0.0, 0.0]))


async def test_set_keeps_type_across_values(server, session):
    await session.register_variable("f", "float", 1.0)
    await session.set_variable("f", 2)
    for got in await read_back(server, session, "f"):
        assert_same(got, 2.0)
    await session.register_variable("i", "integer", 1)
    await session.set_variable("i", 4.0)  # an integral float is an integer
    for got in await read_back(server, session, "i"):
        assert_same(got, 4)


async def test_special_floats_round_trip_when_allowed(server, session):
    cons = {"allow_nonfinite": True}
    for name, value in (("nan", math.nan), ("inf", math.inf), ("ninf", -math.inf)):
        await session.register_variable(name, "float", value, constraints=cons)
        for got in await read_back(server, session, name):
            assert_same(got, value)
    arr = np.array([np.nan, np.inf, -np.inf, 1.0])
    await session.register_variable("arr", "tensor", arr, constraints=cons)
    for got in await read_back(server, session, "arr"):
        assert_same(got, arr)


# ----------------------------------------------------------------------------------------------
# constraints: valid and invalid values

VALID = [
    ("float", {"min": 0.0, "max": 2.0}, [0.0, 1.0, 2.0]),
    ("float", {"min": 0.0, "max": 1.0, "step": 0.25}, [0.0, 0.25, 0.75, 1.0]),
    ("float", {"min": 1e-5, "max": 1.0, "log": True}, [1e-5, 0.01, 1.0]),
    ("float", {"allow_nonfinite": True}, [math.inf, -math.inf]),
    ("integer", {"min": -3, "max": 3}, [-3, 0, 3]),
    ("integer", {"min": 1, "step": 2}, [1, 3, 101]),
    ("string", {"min_length": 2, "max_length": 4}, ["ab", "abcd"]),
    ("string", {"pattern": r"^[a-z]+\d$"}, ["abc1"]),
    ("string", {"enum": ["x", "y"]}, ["x", "y"]),
    ("string", {"choices": ["x", "y"]}, ["y"]),
    ("choice", {"choices": ["a", "b"]}, ["a", "b"]),
    ("module", {"choices": ["Predict", "ReAct"]}, ["ReAct"]),
    ("module", {"allowed_modules": ["Predict", "ReAct"]}, ["Predict"]),
    ("embedding", {"dimensions": 3}, [np.ones(3)]),
    ("embedding", {"dtype": "float32"}, [np.ones(2, dtype=np.float32)]),
    ("tensor", {"shape": [2, None]}, [np.ones((2, 1)), np.ones((2, 5))]),
    ("tensor", {"shape": [None, None, 1]}, [np.ones((3, 4, 1))]),
    ("tensor", {"dtype": "int32"}, [np.ones(3, dtype=np.int32)]),
    ("list", {"min_length": 1, "max_length": 2}, [[1], [1, 2]]),
    ("list", {"item_type": "string"}, [["a", "b"], []]),
    ("list", {"item_type": "float"}, [[1.5, 2]]),
    ("dict", {"required_keys": ["a"], "max_length": 2}, [{"a": 1}, {"a": 1, "b": 2}]),
]


@pytest.mark.parametrize(("type_name", "constraints", "values"), VALID,
                         ids=[f"{t}-{'-'.join(c)}" for t, c, _ in VALID])
async def test_valid_values_pass_constraints(session, type_name, constraints, values):
    await session.register_variable("v", type_name, values[0], constraints=constraints)
    for value in values:
        version = await session.set_variable("v", value)
        got = await session.get_variable("v", bypass_cache=True)
        if isinstance(value, np.ndarray):
            assert np.array_equal(got, value)
        else:
            assert got == value
        assert version >= 1


# (type, constraints, valid initial value, invalid value, rule named in the message, value text)
INVALID = [
    ("float", {"min": 0.0, "max": 2.0}, 1.0, 2.5, "max", "2.5"),
    ("float", {"min": 0.0, "max": 2.0}, 1.0, -0.1, "min", "-0.1"),
    ("float", {"min": 0.0, "step": 0.25}, 0.5, 0.3, "step", "0.3"),
    ("float", {}, 1.0, math.nan, "allow_nonfinite", "nan"),
    ("float", {}, 1.0, math.inf, "allow_nonfinite", "inf"),
    ("float", {"min": 1e-3, "max": 1.0, "log": True}, 0.5, 2.0, "max", "2.0"),
    ("integer", {"min": 0, "max": 10}, 5, 11, "max", "11"),
    ("integer", {"min": 0, "max": 10}, 5, -1, "min", "-1"),
    ("integer", {"min": 0, "step": 5}, 5, 7, "step", "7"),
    ("string", {"min_length": 2}, "abc", "a", "min_length", "1"),
    ("string", {"max_length": 3}, "abc", "abcd", "max_length", "4"),
    ("string", {"pattern": r"^\d+$"}, "12", "12a", "pattern", "12a"),
    ("string", {"enum": ["x", "y"]}, "x", "z", "enum", "z"),
    ("string", {"choices": ["x", "y"]}, "x", "w", "choices", "w"),
    ("choice", {"choices": ["a", "b"]}, "a", "c", "choices", "c"),
    ("module", {"choices": ["Predict"]}, "Predict", "ReAct", "choices", "ReAct"),
    ("module", {"allowed_modules": ["Predict"]}, "Predict", "ReAct", "choices", "ReAct"),
    ("embedding", {"dimensions": 3}, [1.0, 0.0, 0.0], [1.0, 0.0], "dimensions", "2"),
    ("embedding", {}, [1.0], np.array([math.nan]), "allow_nonfinite", "NaN"),
    ("tensor", {"shape": [2, None]}, np.ones((2, 2)), np.ones((3, 2)), "shape", "(3, 2)"),
    ("tensor", {"shape": [2]}, np.ones(2), np.ones((2, 1)), "shape", "(2, 1)"),
    ("tensor", {"dtype": "int8"}, np.ones(2, dtype=np.int8), np.ones(2), "dtype", "float64"),
    ("tensor", {"dtype": "int8"}, np.ones(2, dtype=np.int8), np.array([1000]), "dtype", "int8"),
    ("list", {"min_length": 2}, [1, 2], [1], "min_length", "1"),
    ("list", {"max_length": 2}, [1, 2], [1, 2, 3], "max_length", "3"),
    ("list", {"item_type": "integer"}, [1], [1, "x"], "item_type", "'x'"),
    ("list", {}, [1], [math.inf], "", "inf"),
    ("dict", {"required_keys": ["a", "b"]}, {"a": 1, "b": 2}, {"a": 1}, "required_keys", "'b'"),
    ("dict", {"max_length": 1}, {"a": 1}, {"a": 1, "b": 2}, "max_length", "2"),
]


@pytest.mark.parametrize(("type_name", "constraints", "good", "bad", "rule", "shown"), INVALID,
                         ids=[f"{c[0]}-{c[4] or 'finite'}-{i}" for i, c in enumerate(INVALID)])
async def test_invalid_values_are_refused(server, session, type_name, constraints, good, bad,
                                          rule, shown):
    # refused on register (checked by the client before any round trip) ...
    with pytest.raises(dn.ConstraintViolation) as info:
        await session.register_variable("var_x", type_name, bad, constraints=constraints)
    _assert_message(info.value, "var_x", rule, shown)
    # ... and on set, by the server too (a client that never saw the variable cannot check)
    await session.register_variable("var_x", type_name, good, constraints=constraints)
    revision = (await session.ping())["revision"]
    for ctx in (session, None):
        if ctx is None:
            async with session_for(server, session.session_id) as other:
                with pytest.raises(dn.ConstraintViolation) as info:
                    await other.set_variable("var_x", bad)
        else:
            with pytest.raises(dn.ConstraintViolation) as info:
                await ctx.set_variable("var_x", bad)
        _assert_message(info.value, "var_x", rule, shown)
        assert isinstance(info.value, ValueError)
    assert (await session.ping())["revision"] == revision  # nothing was written
    info_after = await session.get_variable_info("var_x")
    assert info_after.version == 0


def _assert_message(exc, name, rule, shown):
    text = str(exc)
    assert repr(name) in text, text
    if rule:
        assert repr(rule) in text, text
    assert shown in text, text


TYPE_MISMATCH = [
    ("float", "0.5"), ("float", True), ("float", None), ("float", [1.0]),
    ("integer", 1.5), ("integer", "3"), ("integer", False),
    ("string", 5), ("string", b"bytes"), ("boolean", 1), ("boolean", "true"),
    ("choice", 1), ("module", object()), ("embedding", "x"),
    ("embedding", np.ones((2, 2))), ("embedding", ["a"]), ("tensor", [[1], [1, 2]]),
    ("tensor", np.array(["a"])), ("tensor", np.ones(2, dtype=np.complex64)),
    ("list", {"a": 1}), ("list", "abc"), ("list", [object()]), ("dict", [1]),
    ("dict", {(1, 2): "tuple key"}), ("dict", {None: 1}),
]


@pytest.mark.parametrize(("type_name", "value"), TYPE_MISMATCH,
                         ids=[f"{t}-{i}" for i, (t, _) in enumerate(TYPE_MISMATCH)])
async def test_wrong_type_is_type_error_and_value_error(session, type_name, value):
    cons = {"choices": ["a"]} if type_name == "choice" else None
    with pytest.raises(dn.VariableTypeError) as info:
        await session.register_variable("var_y", type_name, value, constraints=cons)
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)
    assert "'var_y'" in str(info.value)
    with pytest.raises(KeyError):
        await session.get_variable("var_y", bypass_cache=True)


async def test_wrong_type_on_set_from_an_unaware_client(server, session):
    await session.register_variable("n", "integer", 1)
    async with session_for(server, session.session_id) as other:
        with pytest.raises(dn.VariableTypeError) as info:
            await other.set_variable("n", "not a number")
    assert "'n'" in str(info.value) and "integer" in str(info.value)


async def test_embedding_normalize_and_dtype(server, session):
    await session.register_variable("e", "embedding", [3.0, 4.0], constraints={"normalize": True})
    for got in await read_back(server, session, "e"):
        assert_same(got, np.array([0.6, 0.8]))
    await session.set_variable("e", np.array([0.0, 2.0]))
    assert_same(await session.get_variable("e", bypass_cache=True), np.array([0.0, 1.0]))
    await session.set_variable("e", np.zeros(2))  # the zero vector has no direction: kept
    assert_same(await session.get_variable("e", bypass_cache=True), np.zeros(2))
    await session.register_variable("e32", "embedding", [1, 2], constraints={"dtype": "float32"})
    for got in await read_back(server, session, "e32"):
        assert_same(got, np.array([1.0, 2.0], dtype=np.float32))
    with pytest.raises(dn.ConstraintViolation, match="allow_nonfinite"):
        # 1e10 overflows float16: refused, not stored as inf
        await session.register_variable("e16", "embedding", [1e10],
                                        constraints={"dtype": "float16"})


async def test_tensor_dtype_constraint_casts_safely(server, session):
    await session.register_variable("t", "tensor", np.array([1, 2], dtype=np.int8),
                                    constraints={"dtype": "int32"})
    for got in await read_back(server, session, "t"):
        assert_same(got, np.array([1, 2], dtype=np.int32))
    for bad in (np.array([2**40]), np.array([-200]), np.array([300])):
        with pytest.raises(dn.ConstraintViolation, match="dtype"):  # would wrap around in int8
            await session.register_variable("i8", "tensor", bad, constraints={"dtype": "int8"})
    with pytest.raises(dn.ConstraintViolation, match="dtype"):  # a negative int is no uint8
        await session.register_variable("u8", "tensor", np.array([-1]),
                                        constraints={"dtype": "uint8"})


async def test_integer_step_and_float_step_with_extreme_values(session):
    await session.register_variable("i", "integer", 0, constraints={"step": 3})
    await session.set_variable("i", 3 * 10**30)
    assert await session.get_variable("i", bypass_cache=True) == 3 * 10**30
    with pytest.raises(dn.ConstraintViolation, match="step"):
        await session.set_variable("i", 3 * 10**30 + 1)
    await session.register_variable("f", "float", 0.0, constraints={"min": -1e308, "step": 1.0})
    with pytest.raises(dn.ConstraintViolation, match="step"):
        await session.set_variable("f", 1e308)


async def test_float_too_large_is_refused_cleanly(session):
    await session.register_variable("f", "float", 0.0)
    with pytest.raises(dn.DspexError) as info:
        await session.set_variable("f", 10**400)
    assert isinstance(info.value, ValueError) and "'f'" in str(info.value)
    with pytest.raises(dn.DspexError):
        await session.register_variable("l", "list", [10**400], constraints={"item_type": "float"})


async def test_deeply_nested_values_are_refused_not_crashed(session):
    deep: list = []
    for _ in range(2000):
        deep = [deep]
    with pytest.raises(dn.InvalidArgument, match="nest"):
        await session.register_variable("deep", "list", deep)
    ok: list = [1]
    for _ in range(20):
        ok = [ok]
    await session.register_variable("nested", "list", ok)
    assert await session.get_variable("nested", bypass_cache=True) == ok


# ----------------------------------------------------------------------------------------------
# constraint specifications


BAD_SPECS = [
    ("float", {"minimum": 0}, "minimum"),
    ("float", {"min": "0"}, "min"),
    ("float", {"min": math.nan}, "min"),
    ("float", {"min": 10**400}, "min"),
    ("float", {"min": 2.0, "max": 1.0}, "min"),
    ("float", {"step": 0}, "step"),
    ("float", {"log": True, "min": 0.0}, "log"),
    ("float", {"log": "yes"}, "log"),
    ("integer", {"min": 0.5}, "min"),
    ("integer", {"allow_nonfinite": True}, "allow_nonfinite"),
    ("string", {"pattern": "("}, "pattern"),
    ("string", {"min_length": -1}, "min_length"),
    ("string", {"enum": []}, "enum"),
    ("string", {"enum": ["a", "a"]}, "enum"),
    ("boolean", {"min": 0}, "min"),
    ("choice", {"choices": "ab"}, "choices"),
    ("choice", {"choices": [1, 2]}, "choices"),
    ("module", {"modules": ["x"]}, "modules"),
    ("embedding", {"dimensions": 0}, "dimensions"),
    ("embedding", {"dtype": "int8"}, "dtype"),
    ("embedding", {"shape": [3]}, "shape"),
    ("tensor", {"shape": [-2]}, "shape"),
    ("tensor", {"shape": "2x2"}, "shape"),
    ("tensor", {"dtype": "complex64"}, "dtype"),
    ("tensor", {"dimensions": 3}, "dimensions"),
    ("list", {"item_type": "dict"}, "item_type"),
    ("list", {"min_length": 3, "max_length": 1}, "min_length"),
    ("dict", {"required_keys": "a"}, "required_keys"),
    ("dict", {"keys": ["a"]}, "keys"),
]

SAMPLE = {"float": 1.0, "integer": 1, "string": "a", "boolean": True, "choice": "a",
          "module": "x", "embedding": [1.0, 0.0, 0.0], "tensor": [1.0], "list": [1, 2],
          "dict": {"a": 1}}


@pytest.mark.parametrize(("type_name", "constraints", "key"), BAD_SPECS,
                         ids=[f"{t}-{k}-{i}" for i, (t, _, k) in enumerate(BAD_SPECS)])
async def test_bad_constraint_specs_are_invalid_argument(session, type_name, constraints, key):
    with pytest.raises(dn.InvalidArgument) as info:
        await session.register_variable("var_z", type_name, SAMPLE[type_name],
                                        constraints=constraints)
    assert isinstance(info.value, ValueError)
    text = str(info.value)
    assert key in text and "'var_z'" in text, text


async def test_unknown_constraint_key_names_key_and_valid_ones(session):
    with pytest.raises(dn.InvalidArgument) as info:
        await session.register_variable("x", "float", 1.0, constraints={"maximum": 2})
    text = str(info.value)
    assert "'maximum'" in text and "float" in text and "max" in text


async def test_choice_requires_choices(session):
    for cons in (None, {}):
        with pytest.raises(dn.InvalidArgument, match="choices"):
            await session.register_variable("c", "choice", "a", constraints=cons)


@pytest.mark.parametrize("type_name", ["", "map2", "Float", "double", "array", None, 3])
async def test_unknown_type_is_invalid_argument(session, type_name):
    with pytest.raises(dn.InvalidArgument) as info:
        await session.register_variable("x", type_name, 1)
    if isinstance(type_name, str) and type_name:
        assert repr(type_name) in str(info.value)


@pytest.mark.parametrize(("alias", "canonical", "value"),
                         [("map", "dict", {"a": 1}), ("int", "integer", 3), ("bool", "boolean", True),
                          ("str", "string", "s")])
async def test_type_aliases(session, alias, canonical, value):
    await session.register_variable("x", alias, value)
    assert (await session.get_variable_info("x")).type == canonical


async def test_constraints_are_stored_normalized(session):
    await session.register_variable("m", "module", "A", constraints={"allowed_modules": ["A", "B"]})
    assert (await session.get_variable_info("m")).constraints == {"choices": ["A", "B"]}
    await session.register_variable("t", "tensor", np.ones((1, 2)), constraints={"shape": [-1, 2]})
    assert (await session.get_variable_info("t")).constraints == {"shape": [None, 2]}


@pytest.mark.parametrize("name", ["", "1abc", "has space", "a" * 300, "semi;colon", "ünï"])
async def test_bad_variable_names(session, name):
    with pytest.raises(dn.InvalidArgument):
        await session.register_variable(name, "integer", 1)


# ----------------------------------------------------------------------------------------------
# the exception tree promised by the spec


def test_exception_builtins():
    assert issubclass(dn.VariableTypeError, TypeError) and issubclass(dn.VariableTypeError, ValueError)
    assert issubclass(dn.ConstraintViolation, ValueError)
    assert issubclass(dn.InvalidArgument, ValueError)
    assert issubclass(dn.VariableExistsError, ValueError)
    assert issubclass(dn.VersionConflict, ValueError)
    assert issubclass(dn.OptimizationConflict, ValueError)
    assert issubclass(dn.VariableNotFoundError, KeyError)
    assert issubclass(dn.SessionNotFoundError, KeyError)
    assert issubclass(dn.AccessDenied, PermissionError)
    assert issubclass(dn.AuthenticationError, dn.AccessDenied)
    assert issubclass(dn.Unsupported, NotImplementedError)
    assert issubclass(dn.BridgeUnavailable, grpc.RpcError)
    assert issubclass(dn.BridgeUnavailable, ConnectionError)
    for cls in (dn.VariableTypeError, dn.ConstraintViolation, dn.VariableNotFoundError,
                dn.AccessDenied, dn.BridgeUnavailable, dn.InvalidArgument):
        assert issubclass(cls, dn.DspexError)
    exc = dn.BridgeUnavailable("gone", grpc.StatusCode.DEADLINE_EXCEEDED)
    assert exc.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert exc.details() == "gone"
    assert str(dn.VariableNotFoundError("Variable not found: x")) == "Variable not found: x"


async def test_not_found_is_key_error_with_readable_message(session):
    with pytest.raises(KeyError) as info:
        await session.get_variable("nope")
    assert isinstance(info.value, dn.VariableNotFoundError)
    assert str(info.value) == f"Variable not found: 'nope' in session {session.session_id!r}"


async def test_unreachable_server_is_rpc_error_with_code():
    with socket.socket() as sock:  # a port nobody listens on (once the socket is closed)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    ctx = dn.SessionContext("s", channel, token="t", timeout=5)
    try:
        with pytest.raises(grpc.RpcError) as info:
            await ctx.initialize()
    finally:
        await channel.close()
    assert isinstance(info.value, dn.BridgeUnavailable)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE


# --- lossless dtype conversion and key collisions -------------------------------------------


async def test_integer_tensor_converts_to_any_integer_dtype_it_fits(session):
    await session.register_variable("t", "tensor", np.array([0, 7, 255]), constraints={"dtype": "uint8"})
    got = await session.get_variable("t", bypass_cache=True)
    assert got.dtype == np.uint8 and got.tolist() == [0, 7, 255]


@pytest.mark.parametrize(
    ("value", "dtype", "reason"),
    [
        (np.array([256]), "uint8", "do not fit in uint8"),
        (np.array([-1]), "uint8", "do not fit in uint8"),
        (np.array([2.5]), "int8", "without truncating"),
        (np.array([1]), "bool", "cannot be stored as bool"),
    ],
)
async def test_tensor_dtype_conversion_never_loses_information(session, value, dtype, reason):
    with pytest.raises(dn.ConstraintViolation, match=reason):
        await session.register_variable("t", "tensor", value, constraints={"dtype": dtype})


def test_json_tensor_with_dtype_is_not_truncated():
    from dspex_notebook._codec import decode

    url = "type.googleapis.com/snakepit.tensor"
    with pytest.raises(dn.InvalidArgument, match="without truncating"):
        decode(url, b'{"shape": [1], "dtype": "int8", "data": [2.5]}')
    _, arr = decode(url, b'{"shape": [2], "dtype": "int16", "data": [1, -2]}')
    assert arr.dtype == np.int16 and arr.tolist() == [1, -2]


async def test_dict_keys_that_collide_as_strings_are_refused(session):
    with pytest.raises(dn.VariableTypeError, match="collides"):
        await session.register_variable("d", "dict", {1: "a", "1": "b"})
