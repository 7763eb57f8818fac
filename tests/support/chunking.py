"""How a byte stream is cut before it is fed to a sans-IO core: whole, byte by byte,
or at random points (h11's ``tests/test_io.py`` idea).  Shared by the SMTP server and
client harnesses, and by the IMAP and POP3 ones to come."""

from __future__ import annotations

import random
from collections.abc import Callable

Chunker = Callable[[bytes], list[bytes]]


def whole(data: bytes) -> list[bytes]:
    return [data]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i:i + 1] for i in range(len(data))]


def random_pieces(data: bytes, rng: random.Random, longest: int) -> list[bytes]:
    """``data`` in pieces of 1 to ``longest`` octets, lengths drawn from ``rng``."""
    out, i = [], 0
    while i < len(data):
        n = rng.randint(1, longest)
        out.append(data[i:i + n])
        i += n
    return out


def random_chunker(seed: int, longest: int = 17) -> Chunker:
    """A chunker whose cuts continue one random sequence from call to call."""
    rng = random.Random(seed)

    def cut(data: bytes) -> list[bytes]:
        return random_pieces(data, rng, longest)
    return cut
