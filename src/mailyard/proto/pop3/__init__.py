"""POP3 (RFC 1939 and extensions), sans-IO: see :mod:`mailyard.proto.pop3.server`."""

from mailyard.proto.pop3.events import (
    CLOSED,
    NEED_DATA,
    PAUSED,
    AuthFailed,
    AuthStart,
    Decision,
    Event,
    LoggedIn,
    Login,
    Retrieve,
    Sentinel,
    Update,
)
from mailyard.proto.pop3.exchange import (
    SaslChallenge,
    SaslExchange,
    SaslFailure,
    SaslStep,
    SaslSuccess,
)
from mailyard.proto.pop3.responses import Pop3Error, Response
from mailyard.proto.pop3.server import LocalProtocolError, Pop3Connection
from mailyard.proto.pop3.session import Maildrop, MessageInfo, Pop3Settings

__all__ = [
    "CLOSED", "NEED_DATA", "PAUSED", "AuthFailed", "AuthStart", "Decision", "Event",
    "LocalProtocolError", "LoggedIn", "Login", "Maildrop", "MessageInfo", "Pop3Connection",
    "Pop3Error", "Pop3Settings", "Response", "Retrieve", "SaslChallenge", "SaslExchange",
    "SaslFailure", "SaslStep", "SaslSuccess", "Sentinel", "Update",
]
