"""Events the IMAP server core hands to its I/O adapter.

*Decision* events pause the core: nothing further is read until the adapter answers.
Every decision carries the command's ``tag``; the adapter writes zero or more untagged
responses with :meth:`ServerConnection.respond` (built with
:mod:`mailyard.proto.imap.responses`) and finishes with
:meth:`ServerConnection.complete` (``OK``/``NO``/``BAD``, text, response code).  A few
decisions are answered otherwise:

* :class:`AuthenticateStep` -- :meth:`ServerConnection.sasl_step` with a
  :data:`SaslOutcome` (the adapter runs a :class:`SaslExchange`);
* :class:`StartTlsRequested`, :class:`AppendRequested`, :class:`IdleRequested` --
  :meth:`ServerConnection.accept` (go ahead) or ``complete("NO", ...)``.

Pausing keeps the answers in command order however far the client pipelines, while the
answers may come asynchronously (the store, a password hash in a thread).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from mailyard.proto.imap.commands import (
    Append,
    Command,
    CopyMove,
    Expunge,
    Fetch,
    ListMailboxes,
    Search,
    Select,
    Sort,
    Status,
    Store,
    Thread,
)
from mailyard.proto.sentinels import CLOSED as CLOSED
from mailyard.proto.sentinels import NEED_DATA as NEED_DATA
from mailyard.proto.sentinels import PAUSED as PAUSED
from mailyard.proto.sentinels import Sentinel as Sentinel


class Event:
    __slots__ = ()
    needs_decision = False


class Decision(Event):
    __slots__ = ()
    needs_decision = True
    tag: str


# --- SASL ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SaslChallenge:
    """Send ``data`` (the core base64-encodes it in a ``+`` line) and wait."""

    data: bytes


@dataclass(frozen=True, slots=True)
class SaslSuccess:
    username: str


@dataclass(frozen=True, slots=True)
class SaslFailure:
    text: str = "Authentication failed"
    code: str = "AUTHENTICATIONFAILED"  # RFC 5530 3


SaslOutcome = SaslChallenge | SaslSuccess | SaslFailure


class SaslExchange(Protocol):
    """One SASL exchange as the adapter runs it (RFC 4422 3): fed the client's
    decoded responses (``None``: no initial response), it answers with the next
    step.  The adapter builds one from :mod:`mailyard.sasl` (verifying credentials
    with the directory, possibly in a thread) and hands each outcome to
    :meth:`ServerConnection.sasl_step`."""

    def step(self, response: bytes | None) -> SaslOutcome: ...


# --- decisions -------------------------------------------------------------------------

@dataclass(slots=True)
class LoginRequested(Decision):
    """LOGIN (RFC 9051 6.2.3).  OK: authenticated; NO: a failure (counted)."""

    tag: str
    username: str
    password: str


@dataclass(slots=True)
class AuthenticateStep(Decision):
    """AUTHENTICATE (RFC 9051 6.2.2): ``first`` with the initial response (SASL-IR,
    RFC 4959; None when absent), then each decoded client response."""

    tag: str
    mechanism: str
    response: bytes | None
    first: bool


@dataclass(slots=True)
class StartTlsRequested(Decision):
    """STARTTLS (RFC 9051 6.2.1).  accept(): tagged OK, every byte the client already
    sent is discarded, and the core waits for :meth:`tls_established`."""

    tag: str


@dataclass(slots=True)
class SelectRequested(Decision):
    """SELECT/EXAMINE: send FLAGS, EXISTS, LIST, OK [UIDVALIDITY] ..., then
    complete("OK", code="READ-WRITE"); NO leaves no mailbox selected."""

    tag: str
    command: Select


@dataclass(slots=True)
class ListRequested(Decision):
    tag: str
    command: ListMailboxes


@dataclass(slots=True)
class StatusRequested(Decision):
    tag: str
    command: Status


@dataclass(slots=True)
class AppendRequested(Decision):
    """APPEND's head, before its message.  accept(): the message follows as
    :class:`AppendData` events, then :class:`AppendComplete`.  complete("NO",
    code="TRYCREATE") refuses it without reading it (its literal is discarded if the
    client already sends it, RFC 7888)."""

    tag: str
    command: Append


@dataclass(slots=True)
class AppendComplete(Decision):
    """The whole message arrived: store it, complete("OK", code="APPENDUID v u")."""

    tag: str
    size: int


@dataclass(slots=True)
class FetchRequested(Decision):
    tag: str
    command: Fetch


@dataclass(slots=True)
class StoreRequested(Decision):
    tag: str
    command: Store


@dataclass(slots=True)
class SearchRequested(Decision):
    """SEARCH, SORT or THREAD (``command`` says which)."""

    tag: str
    command: Search | Sort | Thread


@dataclass(slots=True)
class CopyRequested(Decision):
    """COPY or MOVE (``command.name``)."""

    tag: str
    command: CopyMove


@dataclass(slots=True)
class ExpungeRequested(Decision):
    tag: str
    command: Expunge


@dataclass(slots=True)
class IdleRequested(Decision):
    """IDLE (RFC 9051 6.3.13).  accept(): the core sends ``+ idling``; until
    :class:`IdleDone` the adapter pushes updates with respond()."""

    tag: str


@dataclass(slots=True)
class CommandRequested(Decision):
    """Any other command the store answers: CREATE, DELETE, RENAME, SUBSCRIBE,
    UNSUBSCRIBE, NOOP and CHECK (selected state), CLOSE, UNSELECT, GETQUOTA,
    GETQUOTAROOT."""

    tag: str
    command: Command


# --- information ------------------------------------------------------------------------

@dataclass(slots=True)
class AppendData(Event):
    """A piece of the APPEND message, in order."""

    data: bytes


@dataclass(slots=True)
class AppendAborted(Event):
    """An accepted APPEND ends without a message: discard what was stored."""

    reason: str


@dataclass(slots=True)
class IdleDone(Event):
    """IDLE ended (``ok``: by DONE; else by a bad line); the tagged reply is sent."""

    tag: str
    ok: bool


@dataclass(slots=True)
class AuthResult(Event):
    """How LOGIN or AUTHENTICATE ended, for logs and rate limits."""

    mechanism: str
    username: str
    success: bool


@dataclass(slots=True)
class Enabled(Event):
    """ENABLE turned these on (RFC 5161)."""

    capabilities: tuple[str, ...]


@dataclass(slots=True)
class ClientId(Event):
    """The client's ID parameters (RFC 2971), for the log."""

    parameters: tuple[tuple[str, str | None], ...] | None


@dataclass(slots=True)
class LogoutRequested(Event):
    """LOGOUT: BYE and OK are queued; the connection closes once they are written."""

    tag: str
