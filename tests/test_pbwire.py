"""The hand-assembled reply bytes parse exactly as the generated code's own serialization."""

from __future__ import annotations

import pytest

from dspex_notebook._proto import snakepit_bridge_pb2 as pb
from dspex_notebook._wire import pbwire


@pytest.mark.parametrize("n", [0, 1, 127, 128, 300, 2**31, 2**63 - 1])
def test_varint_matches_protobuf(n):
    assert pbwire.field_varint(3, n) == pb.GetVariableResponse(revision=n).SerializeToString()


def test_negative_int64_is_twos_complement():
    assert pbwire.field_varint(3, -5) == pb.GetVariableResponse(revision=-5).SerializeToString()


def test_map_reply_parses_like_the_generated_message():
    a = pb.Variable(id="var_a_1", name="a", type="float", version=3)
    b = pb.Variable(id="var_b_2", name="b" * 300, type="string", binary_value=b"\0" * 1000)
    data = b"".join([
        pbwire.map_entry(1, b"a", a.SerializeToString()),
        pbwire.map_entry(1, "ünï".encode(), b.SerializeToString()),
        pbwire.field_bytes(2, b"missing-1"),
        pbwire.field_bytes(2, b"missing-2"),
        pbwire.field_varint(3, 42),
    ])
    reply = pb.BatchGetVariablesResponse.FromString(data)
    assert reply.variables["a"] == a and reply.variables["ünï"] == b
    assert list(reply.missing_variables) == ["missing-1", "missing-2"] and reply.revision == 42
