"""The IMAP connection states as tables (RFC 9051 3, figure in 3.5).

:data:`VALID_IN` lists, for every command, the states in which it may be issued
(RFC 9051 6.1-6.4: any state; not authenticated; authenticated, which the selected
state includes; selected).  A command outside its states is answered BAD.
:data:`ON_OK` and :data:`ON_NO` are the transitions a command's completion makes.
"""

from __future__ import annotations

import enum


class State(enum.Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


class Mode(enum.Enum):
    """What the next input octets are."""

    COMMAND = "command"  # a command line (or the line that continues one after a literal)
    LITERAL = "literal"  # n octets of a literal inside a command (buffered)
    APPEND = "append"  # n octets of an APPEND message (streamed to the adapter)
    DISCARD = "discard"  # n octets of a refused non-synchronising APPEND literal
    SASL = "sasl"  # one base64 AUTHENTICATE response line (RFC 9051 6.2.2)
    IDLE = "idle"  # waiting for DONE (RFC 9051 6.3.13)
    TLS_PENDING = "tls-pending"  # STARTTLS accepted: input ignored until TLS is up
    CLOSED = "closed"


_ANY = frozenset({State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED})
_NOT_AUTH = frozenset({State.NOT_AUTHENTICATED})
_AUTH = frozenset({State.AUTHENTICATED, State.SELECTED})
_SELECTED = frozenset({State.SELECTED})

VALID_IN: dict[str, frozenset[State]] = {
    # RFC 9051 6.1 (and RFC 2971 ID): any state
    "CAPABILITY": _ANY, "NOOP": _ANY, "LOGOUT": _ANY, "ID": _ANY,
    # 6.2: not authenticated
    "STARTTLS": _NOT_AUTH, "AUTHENTICATE": _NOT_AUTH, "LOGIN": _NOT_AUTH,
    # 6.3: authenticated (and selected); RFC 5161 3.1: ENABLE before SELECT only
    "ENABLE": frozenset({State.AUTHENTICATED}),
    "SELECT": _AUTH, "EXAMINE": _AUTH, "CREATE": _AUTH, "DELETE": _AUTH, "RENAME": _AUTH,
    "SUBSCRIBE": _AUTH, "UNSUBSCRIBE": _AUTH, "LIST": _AUTH, "LSUB": _AUTH,
    "NAMESPACE": _AUTH, "STATUS": _AUTH, "APPEND": _AUTH, "IDLE": _AUTH,
    "GETQUOTA": _AUTH, "GETQUOTAROOT": _AUTH,
    # 6.4: selected (CHECK is RFC 3501 6.4.1 only)
    "CLOSE": _SELECTED, "UNSELECT": _SELECTED, "EXPUNGE": _SELECTED, "SEARCH": _SELECTED,
    "FETCH": _SELECTED, "STORE": _SELECTED, "COPY": _SELECTED, "MOVE": _SELECTED,
    "UID": _SELECTED, "CHECK": _SELECTED, "SORT": _SELECTED, "THREAD": _SELECTED,
}

ON_OK: dict[str, State] = {
    "LOGIN": State.AUTHENTICATED, "AUTHENTICATE": State.AUTHENTICATED,
    "SELECT": State.SELECTED, "EXAMINE": State.SELECTED,
    "CLOSE": State.AUTHENTICATED, "UNSELECT": State.AUTHENTICATED,
}

# RFC 9051 6.3.2: a SELECT that fails leaves no mailbox selected.
ON_NO: dict[str, State] = {"SELECT": State.AUTHENTICATED, "EXAMINE": State.AUTHENTICATED}

# Commands refused in a mailbox opened with EXAMINE (RFC 9051 6.3.3).
READ_WRITE = frozenset({"STORE", "EXPUNGE", "MOVE"})

ENABLEABLE = frozenset({"CONDSTORE", "QRESYNC", "UTF8=ACCEPT", "IMAP4REV2"})
