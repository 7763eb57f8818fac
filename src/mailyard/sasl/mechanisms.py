"""PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login), server side, and the
registry of the mechanisms Mailyard offers.

Every mechanism has ``name``, ``start(initial)`` (``initial`` is the decoded initial
response, or None when the client sent none) and ``respond(data)``; SCRAM-SHA-256
(:mod:`mailyard.sasl.scram`) adds ``set_credentials``.
"""

from __future__ import annotations

from mailyard.sasl.scram import DECOY_ITERATIONS, ScramSha256Mechanism
from mailyard.sasl.steps import Challenge, Credentials, Failure, FailureReason, Step

__all__ = ["LoginMechanism", "MECHANISMS", "Mechanism", "PlainMechanism", "new_mechanism"]


def _text(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


class PlainMechanism:
    """RFC 4616 2: ``[authzid] NUL authcid NUL passwd``; an authzid other than the
    authcid (acting for another user) is refused."""

    name = "PLAIN"

    def start(self, initial: bytes | None) -> Step:
        return Challenge(b"") if initial is None else self.respond(initial)

    def respond(self, data: bytes) -> Step:
        parts = data.split(b"\x00")
        if len(parts) != 3:
            return Failure(FailureReason.MALFORMED)
        authzid, authcid, passwd = (_text(p) for p in parts)
        if authzid is None or authcid is None or passwd is None or not authcid:
            return Failure(FailureReason.MALFORMED)
        if authzid and authzid != authcid:
            return Failure(FailureReason.REJECTED, authcid)
        return Credentials(authcid, passwd)


class LoginMechanism:
    """LOGIN: ``Username:`` then ``Password:`` challenges; an initial response is
    the user name."""

    name = "LOGIN"

    def __init__(self) -> None:
        self._username: str | None = None

    def start(self, initial: bytes | None) -> Step:
        if initial is None:
            return Challenge(b"Username:")
        return self.respond(initial)

    def respond(self, data: bytes) -> Step:
        text = _text(data)
        if text is None:
            return Failure(FailureReason.MALFORMED)
        if self._username is None:
            self._username = text
            return Challenge(b"Password:")
        return Credentials(self._username, text)


Mechanism = PlainMechanism | LoginMechanism | ScramSha256Mechanism

#: The mechanisms by their IANA names (RFC 4422 3.1), strongest last.
MECHANISMS: dict[str, type[Mechanism]] = {
    "PLAIN": PlainMechanism, "LOGIN": LoginMechanism, "SCRAM-SHA-256": ScramSha256Mechanism,
}


def new_mechanism(name: str, *, scram_decoy_key: bytes = b"",
                  scram_decoy_iterations: int = DECOY_ITERATIONS) -> Mechanism | None:
    """A fresh exchange for the mechanism ``name`` (case-insensitive), None if unknown.
    ``scram_decoy_*``: see :class:`~mailyard.sasl.scram.ScramSha256Mechanism`."""
    kind = MECHANISMS.get(name.upper())
    if kind is ScramSha256Mechanism:
        return ScramSha256Mechanism(decoy_key=scram_decoy_key,
                                    decoy_iterations=scram_decoy_iterations)
    return kind() if kind is not None else None
