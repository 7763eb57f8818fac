"""Unsigned LEB128 varints, shortest form only, for the ids inside signed tokens
(tracking links, VERP addresses).  A dozen lines: no library is worth a dependency
for it, and the tokens need the strict reading (one value, one encoding) that
general-purpose decoders do not enforce."""

from __future__ import annotations

MAX_VALUE = (1 << 63) - 1  # at most 9 bytes
_ONE_BYTE = [bytes((i,)) for i in range(0x80)]


def encode(value: int) -> bytes:
    """Raises ValueError outside 0..MAX_VALUE."""
    if 0 <= value < 0x80:
        return _ONE_BYTE[value]
    if not 0 <= value <= MAX_VALUE:
        raise ValueError(f"id {value} out of range 0..{MAX_VALUE}")
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def decode(data: bytes, pos: int) -> tuple[int, int] | None:
    """(value, next position), or None if truncated, over 9 bytes or not the
    shortest form."""
    value = shift = 0
    start = pos
    while pos < len(data) and pos - start < 9:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            if byte == 0 and pos - start > 1:
                return None
            return value, pos
    return None
