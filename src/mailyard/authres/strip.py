"""Removing the Authentication-Results fields that claim our authserv-id (RFC 8601 5).

A message arriving from outside cannot carry results we made: we add ours after the
checks, at ingest.  A field with our id is therefore forged (or leaked from an earlier
pass through us) and must not reach the recipient, who would trust it.  Fields from
other authserv-ids stay, untouched; so does everything else in the header section,
byte for byte.
"""

from __future__ import annotations

from collections.abc import Collection

from mailyard.authres.parse import claims_authserv_id

__all__ = ["strip_claimed"]

_NAME = b"authentication-results"


def _fields(block: bytes) -> list[bytes]:
    """The header section split into fields, each with its continuation lines."""
    fields: list[bytes] = []
    for line in block.splitlines(keepends=True):
        if fields and line[:1] in (b" ", b"\t"):
            fields[-1] += line
        else:
            fields.append(line)
    return fields


def strip_claimed(block: bytes, ours: Collection[str]) -> tuple[bytes, int]:
    """The header section without the Authentication-Results fields claiming one of
    ``ours``, and how many were removed."""
    if _NAME not in block.lower():
        return block, 0
    kept: list[bytes] = []
    removed = 0
    for field in _fields(block):
        name, colon, value = field.partition(b":")
        if colon and name.rstrip(b" \t").lower() == _NAME and claims_authserv_id(
                value.decode("utf-8", "replace"), ours):
            removed += 1
            continue
        kept.append(field)
    return b"".join(kept), removed
