"""Modified UTF-7 for mailbox names (RFC 3501 5.1.3; RFC 9051 5.1 keeps it for
IMAP4rev1 clients that have not enabled UTF8=ACCEPT or IMAP4rev2)."""

from __future__ import annotations

import base64
import binascii

__all__ = ["MUtf7Error", "decode", "encode"]


class MUtf7Error(ValueError):
    """Not valid modified UTF-7."""


def encode(name: str) -> bytes:
    """``name`` in modified UTF-7: printable ASCII as is (``&`` as ``&-``), the rest
    as ``&``, modified base64 of UTF-16BE, ``-``."""
    out: list[bytes] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append(b"&" + base64.b64encode(raw).rstrip(b"=").replace(b"/", b",") + b"-")
            pending.clear()

    for ch in name:
        if "\x20" <= ch <= "\x7e":
            flush()
            out.append(b"&-" if ch == "&" else ch.encode("ascii"))
        else:
            pending.append(ch)
    flush()
    return b"".join(out)


def decode(data: bytes) -> str:
    """Decode a modified UTF-7 name strictly: 8-bit or control octets, an unterminated
    or malformed shift, and shifted printable ASCII are errors."""
    out: list[str] = []
    i, n = 0, len(data)
    while i < n:
        c = data[i]
        if c < 0x20 or c > 0x7E:
            raise MUtf7Error("8-bit or control octet in a mailbox name (use modified UTF-7)")
        if c != 0x26:  # "&"
            out.append(chr(c))
            i += 1
            continue
        end = data.find(b"-", i + 1)
        if end < 0:
            raise MUtf7Error("unterminated modified UTF-7 shift")
        chunk = data[i + 1 : end]
        i = end + 1
        if not chunk:
            out.append("&")
            continue
        if b"/" in chunk or b"=" in chunk:
            raise MUtf7Error("bad modified base64")
        padded = chunk.replace(b",", b"/") + b"=" * (-len(chunk) % 4)
        try:
            raw = base64.b64decode(padded, validate=True)
            text = raw.decode("utf-16-be")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise MUtf7Error("bad modified base64") from exc
        if len(raw) % 2 or any("\x20" <= ch <= "\x7e" for ch in text):
            raise MUtf7Error("modified UTF-7 shift encodes printable ASCII")
        out.append(text)
    return "".join(out)
