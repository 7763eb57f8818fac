"""What a SASL mechanism answers to each client response (RFC 4422 3)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Challenge", "Credentials", "Failure", "FailureReason", "NeedScramCredentials",
           "Step", "Success"]


@dataclass(frozen=True, slots=True)
class Challenge:
    """Send ``data`` to the client (the protocol encodes it) and wait for its response."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user name and password for the caller to verify (PLAIN, LOGIN)."""

    username: str
    password: str


@dataclass(frozen=True, slots=True)
class NeedScramCredentials:
    """Look up ``username``'s stored SCRAM credentials and hand them to
    :meth:`~mailyard.sasl.scram.ScramSha256Mechanism.set_credentials` (None if unknown)."""

    username: str


@dataclass(frozen=True, slots=True)
class Success:
    username: str


class FailureReason(enum.Enum):
    """Why an exchange failed; each protocol maps it to its own reply."""

    MALFORMED = "malformed"  # the response does not follow the mechanism's syntax
    REJECTED = "rejected"  # well-formed, but the credentials (or authzid) are refused


@dataclass(frozen=True, slots=True)
class Failure:
    reason: FailureReason
    username: str = ""  # as far as the exchange got, for the log


Step = Challenge | Credentials | NeedScramCredentials | Success | Failure
