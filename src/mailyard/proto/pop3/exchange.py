"""The seam between the POP3 core and a SASL mechanism (RFC 5034 4, RFC 4422 3).

The mechanisms themselves (PLAIN, LOGIN, SCRAM-SHA-256) are protocol-neutral and live
outside this package; the I/O adapter creates one :class:`SaslExchange` per AUTH
command and hands it to the core (:meth:`Pop3Connection.accept_auth`).  The core does
the POP3 framing around it: base64, ``+ `` continuations, the ``*`` cancel, the
initial response of SASL-IR, and the failure count.

``step`` is synchronous and must not block.  A mechanism that needs a slow check (a
password hash) returns :class:`SaslSuccess` with the ``password`` to verify: the core
then asks the adapter in its :class:`~mailyard.proto.pop3.events.Login` decision, which
may be answered asynchronously.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class SaslChallenge:
    """Send this challenge (raw bytes; the core base64-encodes it) and wait."""

    data: bytes


@dataclass(frozen=True, slots=True)
class SaslSuccess:
    """The exchange is over and names ``username``.  ``data``: final server data
    (SCRAM's server-final message); POP3 has no room for it in ``+OK``, so the core
    sends it as one more challenge and expects an empty response (RFC 5034 4).
    ``password``: not yet verified, the adapter checks it in the Login decision."""

    username: str
    data: bytes | None = None
    password: str | None = None


@dataclass(frozen=True, slots=True)
class SaslFailure:
    """The exchange failed (bad credentials, malformed message)."""

    reason: str = ""


SaslStep = SaslChallenge | SaslSuccess | SaslFailure


class SaslExchange(Protocol):
    """One SASL authentication exchange, server side."""

    @property
    def mechanism(self) -> str:
        """The mechanism's name, upper case (``PLAIN``)."""
        ...

    def step(self, client_data: bytes | None) -> SaslStep:
        """Take the client's next message (decoded from base64; ``None`` when AUTH
        came without an initial response) and say what happens next."""
        ...
