"""Just enough of the protobuf wire format to assemble replies from cached serialized parts.

A message is the concatenation of its fields, so a reply can be built by joining bytes that
were serialized once and cached (see ``BridgeServicer.GetVariables``) instead of copying each
sub-message into a new object and serializing it again. Tested against the generated parser.
"""

from __future__ import annotations

_LEN = 2  # wire type: length-delimited
_VARINT = 0


def varint(n: int) -> bytes:
    """Base-128 varint of a non-negative int (negative int64 as two's complement)."""
    if 0 <= n < 0x80:
        return _ONE_BYTE[n]
    if n < 0:
        n += 1 << 64
    if n < 0x4000:
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_ONE_BYTE = [bytes((n,)) for n in range(0x80)]


def field_bytes(number: int, data: bytes) -> bytes:
    """A length-delimited field (string, bytes or embedded message)."""
    size = len(data)
    if number < 16:  # the tag is one byte: build tag + length in one bytes object
        tag = number << 3 | _LEN
        if size < 0x80:
            return bytes((tag, size)) + data
        if size < 0x4000:
            return bytes((tag, (size & 0x7F) | 0x80, size >> 7)) + data
    return varint(number << 3 | _LEN) + varint(size) + data


def field_varint(number: int, value: int) -> bytes:
    """A varint field; proto3 omits zero."""
    return varint(number << 3 | _VARINT) + varint(value) if value else b""


def map_entry(number: int, key: bytes, value: bytes) -> bytes:
    """One entry of a ``map<string, Message>`` field: ``{1: key, 2: value}``."""
    return field_bytes(number, field_bytes(1, key) + field_bytes(2, value))
