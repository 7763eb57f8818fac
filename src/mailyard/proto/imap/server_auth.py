"""The commands of the not-authenticated state (RFC 9051 6.2): STARTTLS, LOGIN and
AUTHENTICATE, and how the connection ends up authenticated or not.

:class:`AuthCommands` is mixed into :class:`~mailyard.proto.imap.server.ServerConnection`:
LOGIN and AUTHENTICATE are refused without TLS unless plaintext is allowed
(``PRIVACYREQUIRED``), AUTHENTICATE's SASL exchange is relayed to the adapter
(:class:`AuthenticateStep`, answered with :meth:`AuthCommands.sasl_step`), and
failures are counted (``BYE`` at ``max_auth_failures``).  Separate from the
connection because authentication is the one part of IMAP with its own small
exchange and its own security rules.
"""

from __future__ import annotations

import base64

from mailyard.proto.imap import responses as resp
from mailyard.proto.imap.commands import Authenticate, Command, Login
from mailyard.proto.imap.events import (
    AuthenticateStep,
    AuthResult,
    LoginRequested,
    SaslChallenge,
    SaslFailure,
    SaslOutcome,
    SaslSuccess,
    StartTlsRequested,
)
from mailyard.proto.imap.server_framing import Framing, LocalProtocolError
from mailyard.proto.imap.states import Mode, State


class AuthCommands(Framing):
    """STARTTLS, LOGIN and AUTHENTICATE."""

    def sasl_step(self, outcome: SaslOutcome) -> None:
        """Answer :class:`AuthenticateStep` with what the SASL exchange said."""
        event = self._take_pending()
        if not isinstance(event, AuthenticateStep):
            self._pending = event
            raise LocalProtocolError("sasl_step() answers AuthenticateStep only")
        if isinstance(outcome, SaslChallenge):
            self._sasl_tag, self._sasl_mechanism = event.tag, event.mechanism
            self._send(resp.continuation(base64.b64encode(outcome.data)))
            self.mode = Mode.SASL
        elif isinstance(outcome, SaslSuccess):
            self._auth_done(event.tag, event.mechanism, outcome.username, "OK", "", "")
        else:
            assert isinstance(outcome, SaslFailure)
            self._auth_done(event.tag, event.mechanism, "", "NO", outcome.text, outcome.code)

    def _starttls(self, tag: str, command: Command) -> None:
        if not self.settings.starttls:
            self._bad(tag, "STARTTLS is not available")
        elif self.session.tls:
            self._bad(tag, "TLS is already active")
        else:
            self._ask(StartTlsRequested(tag))

    def _login(self, tag: str, command: Command) -> None:
        assert isinstance(command, Login)
        if not (self.settings.login and self._auth_allowed()):
            self._tagged(tag, "NO", "LOGIN is disabled; use STARTTLS first", "PRIVACYREQUIRED")
        else:
            self._ask(LoginRequested(tag, command.username, command.password))

    def _authenticate(self, tag: str, command: Command) -> None:
        assert isinstance(command, Authenticate)
        if not self._auth_allowed():
            self._tagged(tag, "NO", "Authentication needs TLS", "PRIVACYREQUIRED")
        elif command.mechanism not in self.settings.sasl_mechanisms:
            self._tagged(tag, "NO", "Unsupported authentication mechanism", "CANNOT")
        else:
            self._ask(AuthenticateStep(tag, command.mechanism, command.initial, first=True))

    def _auth_done(self, tag: str, mechanism: str, username: str, status: str, text: str,
                   code: str) -> None:
        ok = status == "OK"
        self._events.append(AuthResult(mechanism, username, ok))
        if ok:
            self.state = State.AUTHENTICATED
            self.session.user = username
            self.session.mechanism = mechanism
            self._ctx = self._context()
            self._tagged(tag, "OK", text or "Logged in", code or self._capability_code())
            return
        self._tagged(tag, status, text or "Authentication failed",
                     code or ("AUTHENTICATIONFAILED" if status == "NO" else ""))
        self.session.auth_failures += 1
        if self.session.auth_failures >= self.settings.max_auth_failures \
                and self.mode is not Mode.CLOSED:
            self.close("Too many authentication failures")
