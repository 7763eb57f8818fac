"""Events the POP3 server core hands to its I/O adapter.

Events marked *decision* pause the core: nothing further is read until the adapter
answers (see each event for how).  That keeps responses in command order under
PIPELINING (RFC 2449 6.6) while the answers may come asynchronously: a password
hash in a thread, a maildrop lock, reading a message from the store.

Three sentinels end a round of ``next_event()`` calls: :data:`NEED_DATA` (feed more
bytes), :data:`PAUSED` (a decision is outstanding, message content is being streamed,
or STLS waits for the handshake) and :data:`CLOSED` (the connection is over once the
output is flushed).
"""

from __future__ import annotations

from dataclasses import dataclass

from mailyard.proto.pop3.responses import Response
from mailyard.proto.pop3.session import MessageInfo
from mailyard.proto.sentinels import CLOSED as CLOSED
from mailyard.proto.sentinels import NEED_DATA as NEED_DATA
from mailyard.proto.sentinels import PAUSED as PAUSED
from mailyard.proto.sentinels import Sentinel as Sentinel


class Event:
    """Base class; ``needs_decision`` tells the adapter it must answer."""

    __slots__ = ()
    needs_decision = False


class Decision(Event):
    __slots__ = ()
    needs_decision = True


# --- decisions ------------------------------------------------------------------

@dataclass(slots=True)
class AuthStart(Decision):
    """AUTH <mechanism> (RFC 5034 4), for a mechanism the settings offer.  Answer with
    :meth:`~Pop3Connection.accept_auth` and a fresh exchange, or ``reject``."""

    mechanism: str


@dataclass(slots=True)
class Login(Decision):
    """A client names its user: after USER/PASS (``mechanism == "USER"``) or a SASL
    exchange.  ``password`` is set when the adapter still has to verify it.  Answer
    with :meth:`~Pop3Connection.accept_login` and the maildrop snapshot (locked for
    this session), or ``reject`` with ``[AUTH]`` (bad credentials: counts as a
    failure), ``[IN-USE]``, ``[LOGIN-DELAY]`` or ``[SYS/TEMP]`` (RFC 3206)."""

    username: str
    mechanism: str
    password: str | None = None


@dataclass(slots=True)
class AuthFailed(Decision):
    """An authentication attempt failed (``failures`` so far on this connection).
    ``accept()`` once the adapter's delay is over: the core then sends ``response``,
    or closes after ``Pop3Settings.max_auth_failures``."""

    username: str
    mechanism: str
    failures: int
    response: Response


@dataclass(slots=True)
class Retrieve(Decision):
    """RETR (``body_lines is None``) or TOP n m (RFC 1939 5, 7).  ``accept()``
    queues ``+OK``; then feed the stored message with
    :meth:`~Pop3Connection.send_content` chunk by chunk and finish with
    :meth:`~Pop3Connection.end_content` (the core stuffs dots, converts LF to CRLF,
    cuts TOP and writes the final ``.``).  ``reject`` if the message cannot be read.
    A failure after ``accept()`` can only ``close()`` the connection."""

    number: int
    message: MessageInfo
    body_lines: int | None = None


@dataclass(slots=True)
class Update(Decision):
    """QUIT in the TRANSACTION state (RFC 1939 6): remove ``deleted`` and release the
    maildrop.  ``accept()`` sends ``+OK``; ``reject()`` sends the refusal (usually
    ``RESP_UPDATE_FAILED``); the connection closes either way.  A connection that ends
    without QUIT produces no Update: nothing is deleted."""

    deleted: tuple[MessageInfo, ...]


# --- information ------------------------------------------------------------------

@dataclass(slots=True)
class LoggedIn(Event):
    """The maildrop is open: the session is in the TRANSACTION state."""

    username: str
    mechanism: str
