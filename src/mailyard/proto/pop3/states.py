"""The POP3 dialogue as a table (RFC 1939 3-7, RFC 2449 5, RFC 2595 4, RFC 5034 4).

Each command maps the states where it is legal to the state the session is in once
the command succeeds (:data:`SAME`: it stays).  A state missing from a command's row
gets ``-ERR`` (:data:`~mailyard.proto.pop3.responses.RESP_BAD_STATE`).  The core
(:mod:`mailyard.proto.pop3.server`) looks up every command here first, so this one
table is the whole list of legal command sequences.

Commands that are not in the table (APOP, XTND...) are answered ``-ERR`` by the core.
"""

from __future__ import annotations

import enum


class State(enum.Enum):
    """Where the session is between commands (RFC 1939 3)."""

    AUTHORIZATION = "authorization"  # greeted, no user named yet
    USER_GIVEN = "user-given"  # AUTHORIZATION after an accepted USER (RFC 1939 7)
    TRANSACTION = "transaction"  # maildrop open and locked
    UPDATE = "update"  # QUIT received in TRANSACTION: deletions being applied


class Mode(enum.Enum):
    """What the next input bytes are, and whether the core reads them."""

    COMMAND = "command"  # CRLF-terminated command lines
    SASL = "sasl"  # one base64 SASL response line (RFC 5034 4)
    CONTENT = "content"  # a RETR/TOP response is being streamed; input waits
    TLS_PENDING = "tls-pending"  # STLS accepted: input is discarded until TLS is up
    CLOSED = "closed"


SAME = "same"  # the command keeps the current state

_AUTH = State.AUTHORIZATION
_USER = State.USER_GIVEN
_TRANS = State.TRANSACTION

Outcome = State | str

# verb -> {state where legal: next state}
SEQUENCE: dict[str, dict[State, Outcome]] = {
    # RFC 2449 5: CAPA in AUTHORIZATION and TRANSACTION.
    "CAPA": {_AUTH: SAME, _USER: SAME, _TRANS: SAME},
    # RFC 2595 4: STLS only in AUTHORIZATION (and never after TLS, checked by the core).
    "STLS": {_AUTH: _AUTH},
    # RFC 1939 7: USER starts (or restarts) USER/PASS; PASS must follow USER.
    "USER": {_AUTH: _USER, _USER: _USER},
    "PASS": {_USER: _TRANS},
    # RFC 5034 4: AUTH in AUTHORIZATION only.
    "AUTH": {_AUTH: _TRANS, _USER: _TRANS},
    # RFC 1939 4 and 6: QUIT in AUTHORIZATION just closes; in TRANSACTION it updates.
    "QUIT": {_AUTH: SAME, _USER: SAME, _TRANS: State.UPDATE},
    # RFC 1939 5 and 7: the TRANSACTION commands.
    "STAT": {_TRANS: SAME},
    "LIST": {_TRANS: SAME},
    "UIDL": {_TRANS: SAME},
    "RETR": {_TRANS: SAME},
    "TOP": {_TRANS: SAME},
    "DELE": {_TRANS: SAME},
    "NOOP": {_TRANS: SAME},
    "RSET": {_TRANS: SAME},
}

# Commands with no argument (RFC 1939 9 summary); the others are checked by their handler.
NO_ARGUMENT = frozenset({"CAPA", "STLS", "QUIT", "STAT", "NOOP", "RSET"})

# RFC 2449 4: a command line is at most 255 octets including CRLF.  RFC 5034 4: the
# client's responses during AUTH are not bound by it; they get the 12288 octets RFC
# 4954 4 asks SMTP servers to accept.
MAX_COMMAND_LINE = 255
MAX_SASL_LINE = 12288


def in_authorization(state: State) -> bool:
    return state is _AUTH or state is _USER
