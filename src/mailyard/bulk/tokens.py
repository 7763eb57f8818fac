"""Signed, expiring tokens for links in mail (double opt-in confirmation now;
unsubscribe and tracking later).

A token is ``<fields>.<expiry>.<mac>``: the fields (decimal ids) and the expiry (unix
seconds) in clear, and an HMAC-SHA256 over the purpose and both, keyed with a key
derived from the server secret for that purpose, in URL-safe base64.  Nothing is
stored; a forged or altered token fails the MAC check (compared in constant time)
and is treated as unknown, an expired one is told apart so the page can say so.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

_TOKEN = re.compile(r"((?:\d{1,18}\.){1,4})(\d{1,12})\.([A-Za-z0-9_-]{43})")


class InvalidToken(Exception):
    """Not a token of ours for this purpose."""


class ExpiredToken(InvalidToken):
    """A genuine token whose time has passed."""


def _mac(key: bytes, purpose: str, payload: str) -> str:
    digest = hmac.new(key, f"{purpose}|{payload}".encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def sign(key: bytes, purpose: str, fields: tuple[int, ...], expires: int) -> str:
    payload = "".join(f"{f}." for f in fields) + str(expires)
    return f"{payload}.{_mac(key, purpose, payload)}"


def verify(key: bytes, purpose: str, token: str, now: float) -> tuple[int, ...]:
    """The fields of a genuine, unexpired token; raises InvalidToken/ExpiredToken."""
    m = _TOKEN.fullmatch(token)
    if m is None:
        raise InvalidToken(purpose)
    payload = m.group(1) + m.group(2)
    if not hmac.compare_digest(_mac(key, purpose, payload), m.group(3)):
        raise InvalidToken(purpose)
    if int(m.group(2)) < now:
        raise ExpiredToken(purpose)
    return tuple(int(f) for f in m.group(1).rstrip(".").split("."))
