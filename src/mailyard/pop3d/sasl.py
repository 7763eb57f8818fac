"""The protocol-neutral SASL mechanisms (:mod:`mailyard.sasl`) as the POP3 core's
:class:`~mailyard.proto.pop3.exchange.SaslExchange`.

PLAIN ends with the credentials, which the core hands back in its ``Login`` decision
for the session to verify within the AUTH guard.  SCRAM-SHA-256 needs the user's
stored keys halfway through: ``lookup`` (the directory's ``scram_credentials``, a
quick indexed read) answers that in the exchange itself.  SCRAM's server-final
message goes out as a last challenge; the client's empty answer ends the exchange
(RFC 5034 4).
"""

from __future__ import annotations

from collections.abc import Callable

from mailyard.directory.api import DirectoryError
from mailyard.proto.pop3.exchange import SaslChallenge, SaslFailure, SaslStep, SaslSuccess
from mailyard.sasl.mechanisms import Mechanism
from mailyard.sasl.scram import ScramCredentials, ScramSha256Mechanism
from mailyard.sasl.steps import (
    Challenge,
    Credentials,
    Failure,
    FailureReason,
    NeedScramCredentials,
    Step,
    Success,
)

__all__ = ["MechanismExchange", "ScramLookup"]

#: Stored SCRAM credentials of a user, None when unknown.  May raise DirectoryError:
#: the exchange then fails (``lookup_failed``).
ScramLookup = Callable[[str], ScramCredentials | None]


class MechanismExchange:
    """One AUTH exchange driving one :mod:`mailyard.sasl` mechanism."""

    def __init__(self, mechanism: Mechanism, lookup: ScramLookup) -> None:
        self._mechanism = mechanism
        self._lookup = lookup
        self._started = False
        #: The user a well-formed exchange named before it was refused (for the AUTH
        #: guard's counters); "" when it failed on syntax.
        self.rejected_user = ""
        self.lookup_failed = False

    @property
    def mechanism(self) -> str:
        return self._mechanism.name

    def step(self, client_data: bytes | None) -> SaslStep:
        if not self._started:
            self._started = True
            return self._translate(self._mechanism.start(client_data))
        return self._translate(self._mechanism.respond(client_data or b""))

    def _translate(self, step: Step) -> SaslStep:
        if isinstance(step, NeedScramCredentials):
            mechanism = self._mechanism
            assert isinstance(mechanism, ScramSha256Mechanism)
            try:
                credentials = self._lookup(step.username)
            except DirectoryError:
                self.lookup_failed = True
                return SaslFailure("credentials lookup failed")
            step = mechanism.set_credentials(credentials)
        if isinstance(step, Challenge):
            return SaslChallenge(step.data)
        if isinstance(step, Credentials):
            return SaslSuccess(step.username, password=step.password)
        if isinstance(step, Success):
            return SaslSuccess(step.username)
        assert isinstance(step, Failure)
        if step.reason is FailureReason.REJECTED:
            self.rejected_user = step.username
        return SaslFailure(step.reason.value)
