"""Search spaces derived from variable types and constraints."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dspex_notebook._errors import InvalidArgument
from dspex_notebook._optimize import SearchSpace, SearchSpaceError, space_for


def test_float_space_bounds_and_unit_mapping() -> None:
    sp = space_for("float", {"min": 0.0, "max": 2.0}, "temperature")
    assert (sp.kind, sp.low, sp.high, sp.log, sp.step) == ("float", 0.0, 2.0, False, None)
    assert not sp.is_discrete and sp.size is None
    assert sp.to_unit(0.5) == 0.25
    assert sp.from_unit(0.25) == 0.5
    assert sp.from_unit(-3) == 0.0 and sp.from_unit(7) == 2.0  # clipped


def test_log_float_space_maps_geometrically() -> None:
    sp = space_for("float", {"min": 1e-4, "max": 1e-1, "log": True}, "lr")
    assert sp.to_unit(1e-4) == 0.0
    assert sp.to_unit(1e-1) == pytest.approx(1.0)
    assert sp.from_unit(1 / 3) == pytest.approx(1e-3)


def test_integer_space_with_step_enumerates_the_grid() -> None:
    sp = space_for("integer", {"min": 1, "max": 10, "step": 3}, "k")
    assert sp.values() == (1, 4, 7, 10)
    assert sp.size == 4
    assert sp.validate(7.0) == 7 and isinstance(sp.validate(7.0), int)
    assert sp.from_unit(0.4) == 4
    with pytest.raises(SearchSpaceError, match="not on the grid"):
        sp.validate(5)


def test_float_step_makes_a_discrete_space_without_representation_noise() -> None:
    sp = space_for("float", {"min": 0.0, "max": 1.0, "step": 0.1}, "t")
    assert sp.is_discrete and sp.size == 11
    assert sp.values()[3] == 0.3  # not 0.30000000000000004


@pytest.mark.parametrize("vtype", ["choice", "module", "string"])
def test_choices_make_a_choice_space(vtype: str) -> None:
    sp = space_for(vtype, {"choices": ["a", "b", "c"]}, "m")
    assert sp.kind == "choice" and sp.var_type == vtype
    assert sp.values() == ("a", "b", "c")
    assert sp.validate("b") == "b"
    with pytest.raises(SearchSpaceError, match="not one of"):
        sp.validate("z")


def test_module_accepts_allowed_modules_and_boolean_has_two_values() -> None:
    assert space_for("module", {"allowed_modules": ["Predict", "ReAct"]}).choices == (
        "Predict",
        "ReAct",
    )
    sp = space_for("boolean", {})
    assert sp.values() == (False, True)
    assert sp.validate(np.bool_(True)) is True
    with pytest.raises(SearchSpaceError):
        sp.validate(1)  # 1 is not a boolean proposal


def test_aliases_and_enum_members_are_accepted() -> None:
    class VType:
        value = "integer"

    assert space_for("int", {"min": 0, "max": 3}).kind == "integer"
    assert space_for(VType(), {"min": 0, "max": 3}).kind == "integer"
    assert space_for(":float", {"min": 0, "max": 3}).kind == "float"


@pytest.mark.parametrize("vtype", ["string", "embedding", "tensor", "list", "dict", "map"])
def test_unsearchable_types_explain_why(vtype: str) -> None:
    with pytest.raises(SearchSpaceError) as err:
        space_for(vtype, {}, "ctx")
    msg = str(err.value)
    assert "'ctx'" in msg and "cannot be optimized" in msg and "choices" in msg
    assert isinstance(err.value, ValueError) and isinstance(err.value, InvalidArgument)


@pytest.mark.parametrize(
    ("vtype", "constraints", "needle"),
    [
        ("float", {"max": 1.0}, "'min'"),
        ("float", {"min": 0.0}, "'max'"),
        ("integer", {"min": 0}, "'max'"),
        ("float", {}, "'min'"),
        ("float", {"min": 1.0, "max": 0.0}, "greater than max"),
        ("float", {"min": 1.0, "max": 1.0}, "below max"),
        ("float", {"min": 0.0, "max": 1.0, "log": True}, "min > 0"),
        ("float", {"min": "0", "max": 1.0}, "finite number"),
        ("float", {"min": 0.0, "max": math.inf}, "finite number"),
        ("integer", {"min": 0.5, "max": 3}, "integer"),
        ("integer", {"min": 0, "max": 3, "step": 0}, "positive"),
        ("integer", {"min": 0, "max": 3, "step": 1.5}, "integer"),
        ("choice", {}, "choices"),
        ("module", {"choices": []}, "non-empty"),
        ("choice", {"choices": ["a", "a"]}, "more than once"),
        ("choice", {"choices": "abc"}, "non-empty list"),
        ("quaternion", {}, "unknown variable type"),
    ],
)
def test_bad_spaces_name_the_problem(vtype: str, constraints: dict, needle: str) -> None:
    with pytest.raises(SearchSpaceError, match=needle) as err:
        space_for(vtype, constraints, "v")
    assert "'v'" in str(err.value)


def test_integer_single_value_is_allowed() -> None:
    sp = space_for("integer", {"min": 5, "max": 5})
    assert sp.values() == (5,)
    assert sp.to_unit(5) == 0.0 and sp.from_unit(0.7) == 5


def test_validate_rejects_out_of_range_and_non_numbers() -> None:
    sp = space_for("float", {"min": 0.0, "max": 1.0}, "p")
    for bad in (1.5, -0.1, "0.5", True, math.nan, None):
        assert not sp.contains(bad)
    assert sp.contains(np.float32(0.5))


def test_huge_integer_range_is_not_enumerated() -> None:
    sp = space_for("integer", {"min": 0, "max": 10**9})
    assert sp.size == 10**9 + 1
    with pytest.raises(SearchSpaceError, match="too large"):
        sp.values()
    assert sp.from_unit(0.5) == 500_000_000


@settings(max_examples=60, deadline=None)
@given(
    low=st.floats(-1e6, 1e6),
    width=st.floats(1e-3, 1e6),
    u=st.floats(0.0, 1.0),
    log=st.booleans(),
)
def test_float_unit_roundtrip(low: float, width: float, u: float, log: bool) -> None:
    if log:
        low = abs(low) + 1e-3
    sp = space_for("float", {"min": low, "max": low + width, "log": log})
    x = sp.from_unit(u)
    assert sp.contains(x)
    assert sp.to_unit(x) == pytest.approx(u, abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(low=st.integers(-1000, 1000), n=st.integers(1, 300), step=st.integers(1, 7), u=st.floats(0, 1))
def test_integer_from_unit_is_always_on_the_grid(low: int, n: int, step: int, u: float) -> None:
    sp = space_for("integer", {"min": low, "max": low + n, "step": step})
    v = sp.from_unit(u)
    assert isinstance(v, int) and sp.contains(v)
    assert sp.from_unit(sp.to_unit(v)) == v


def test_space_is_a_frozen_value() -> None:
    sp = space_for("float", {"min": 0, "max": 1}, "x")
    assert sp == SearchSpace("float", "x", "float", 0.0, 1.0)
    with pytest.raises(AttributeError):
        sp.low = 3.0  # type: ignore[misc]
    assert str(sp) == "float[0.0, 1.0]"
