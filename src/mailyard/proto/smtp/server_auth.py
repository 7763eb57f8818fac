"""The AUTH command and its SASL exchange, server side (RFC 4954), as part of the
sans-IO server core.

:class:`AuthCommands` is mixed into :class:`~mailyard.proto.smtp.server.ServerConnection`:
it starts a protocol-neutral exchange from :mod:`mailyard.sasl`, does the SMTP framing
(base64 lines, ``=`` for an empty initial response, ``*`` to cancel), relays the
mechanism's challenges as 334 replies, asks the adapter to verify credentials
(:class:`AuthCredentials`, :class:`ScramLookup`), maps the exchange's outcome to a reply
(235; :data:`FAILURE_REPLIES`: 501 5.5.4 for a malformed response, 535 5.7.8 for refused
credentials), and counts failures (421 4.7.0 at ``max_auth_failures``; a 421 from the
adapter closes too).  AUTH is refused outside
TLS (538 5.7.11, RFC 4954 4 and RFC 8314), on listeners without AUTH (502) and after
a success (503).
"""

from __future__ import annotations

import base64
import binascii
from collections import deque
from typing import TYPE_CHECKING

from mailyard.proto.smtp.events import AuthCredentials, AuthResult, Decision, Event, ScramLookup
from mailyard.proto.smtp.replies import (
    REPLY_ALREADY_AUTH,
    REPLY_AUTH_BAD_BASE64,
    REPLY_AUTH_CANCELLED,
    REPLY_AUTH_FAILED,
    REPLY_AUTH_MALFORMED,
    REPLY_AUTH_MECH,
    REPLY_AUTH_NEEDS_TLS,
    REPLY_AUTH_OK,
    REPLY_NOT_IMPLEMENTED,
    REPLY_TOO_MANY_AUTH_FAILURES,
    Reply,
)
from mailyard.proto.smtp.session import ServerSettings, Session
from mailyard.proto.smtp.states import Mode
from mailyard.sasl.mechanisms import Mechanism, new_mechanism
from mailyard.sasl.scram import ScramSha256Mechanism
from mailyard.sasl.steps import (
    Challenge,
    Credentials,
    Failure,
    FailureReason,
    NeedScramCredentials,
    Step,
    Success,
)

AUTH_MECHANISMS = "PLAIN LOGIN SCRAM-SHA-256"


def offered_mechanisms(settings: ServerSettings) -> str:
    """The EHLO AUTH keyword's mechanisms (SCRAM-SHA-256 only when keys are stored)."""
    return AUTH_MECHANISMS if settings.scram else "PLAIN LOGIN"


#: How an exchange's failure is answered in SMTP (RFC 4954 4, 6).
FAILURE_REPLIES: dict[FailureReason, Reply] = {
    FailureReason.MALFORMED: REPLY_AUTH_MALFORMED,
    FailureReason.REJECTED: REPLY_AUTH_FAILED,
}


class AuthCommands:
    """AUTH handling; relies on the connection's state and reply helpers below."""

    settings: ServerSettings
    session: Session
    mode: Mode
    _sasl: Mechanism | None
    _events: deque[Event]
    _out: list[bytes]

    if TYPE_CHECKING:
        def _refuse(self, reply: Reply) -> None: ...
        def _send(self, reply: Reply) -> None: ...
        def _ask(self, event: Decision) -> None: ...
        def close(self, reply: Reply | None = None) -> None: ...

    def _auth(self, arg: str, outcome: object) -> None:
        if not self.settings.auth:
            self._refuse(REPLY_NOT_IMPLEMENTED)
            return
        if not self.session.tls:
            self._refuse(REPLY_AUTH_NEEDS_TLS)
            return
        if self.session.auth_user:
            self._refuse(REPLY_ALREADY_AUTH)
            return
        if isinstance(outcome, Reply):
            self._refuse(outcome)
            return
        name, _, initial_text = arg.strip().partition(" ")
        mechanism = new_mechanism(name, scram_decoy_key=self.settings.scram_decoy_key,
                                  scram_decoy_iterations=self.settings.scram_decoy_iterations)
        if mechanism is None or (isinstance(mechanism, ScramSha256Mechanism)
                                 and not self.settings.scram):
            self._refuse(REPLY_AUTH_MECH)
            return
        initial: bytes | None = None
        if initial_text:
            initial = self._b64decode(initial_text.strip().encode("ascii", "replace"))
            if initial is None:
                return
        self._sasl = mechanism
        self._sasl_step(mechanism.start(initial))

    def _b64decode(self, data: bytes) -> bytes | None:
        if data == b"=":
            return b""
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            self.mode = Mode.COMMAND
            self._sasl = None
            self._refuse(REPLY_AUTH_BAD_BASE64)
            return None

    def _sasl_line(self, line: bytes) -> None:
        if line == b"*":
            self.mode = Mode.COMMAND
            self._sasl = None
            self._refuse(REPLY_AUTH_CANCELLED)
            return
        data = self._b64decode(line) if line else b""
        if data is not None and self._sasl is not None:
            self._sasl_step(self._sasl.respond(data))

    def _sasl_step(self, step: Step) -> None:
        mechanism = self._sasl.name if self._sasl is not None else ""
        self.mode = Mode.COMMAND
        match step:
            case Challenge(data):
                self.mode = Mode.SASL
                self._out.append(b"334 " + base64.b64encode(data) + b"\r\n")
            case Credentials(username, password):
                self._ask(AuthCredentials(mechanism, username, password))
            case NeedScramCredentials(username):
                self._ask(ScramLookup(username))
            case Success(username):
                self._auth_succeeded(mechanism, username)
            case Failure(reason, username):
                self._auth_failed(FAILURE_REPLIES[reason], mechanism, username)

    def _auth_succeeded(self, mechanism: str, username: str) -> None:
        self._sasl = None
        self.session.auth_user = username
        self.session.auth_mechanism = mechanism
        self._events.append(AuthResult(mechanism, username, True))
        self._send(REPLY_AUTH_OK)

    def _auth_failed(self, reply: Reply, mechanism: str, username: str) -> None:
        self._sasl = None
        self.mode = Mode.COMMAND
        self._events.append(AuthResult(mechanism, username, False, reply))
        if reply.code == 421:  # RFC 5321 3.8: 421 closes the connection
            self.close(reply)
            return
        if reply.code != 535:
            self._refuse(reply)
            return
        self._send(reply)
        self.session.auth_failures += 1
        if self.session.auth_failures >= self.settings.max_auth_failures:
            self.close(REPLY_TOO_MANY_AUTH_FAILURES)
