"""The SMTP server dialogue as a table (RFC 5321 4.1.4, 3.3; RFC 3030 2; RFC 4954 4).

Each command verb maps every dialogue state either to the state the server is in once
the command succeeds, or to the reply that refuses it as out of sequence.  The
server core (:mod:`mailyard.proto.smtp.server`) looks up every command here first and
moves only to the state found here, so this one table is the whole list of legal
command sequences.  ``tests/unit/smtp_server/test_smtp_server_states.py`` walks every
(verb, state) pair through the core and compares.

When a success takes effect: EHLO/HELO, MAIL, RCPT and the first BDAT once the
adapter accepts them; STARTTLS once TLS is up (RFC 3207 4.2); DATA and BDAT LAST once
the content has been answered (the transaction is over, as after RSET).

Commands that do not appear (EXPN, TURN, SEND...) are answered 502/500 by the core.
"""

from __future__ import annotations

import enum

from mailyard.proto.smtp.replies import (
    REPLY_BAD_SEQUENCE,
    REPLY_BDAT_MIXED,
    REPLY_NEED_HELO,
    REPLY_NEED_MAIL,
    REPLY_NEED_RCPT,
    REPLY_NESTED_MAIL,
    Reply,
)


class State(enum.Enum):
    """Where the dialogue is between commands."""

    START = "start"  # greeted, no EHLO/HELO yet (also after STARTTLS, RFC 3207 4.2)
    READY = "ready"  # EHLO/HELO done, no transaction
    MAIL = "mail"  # reverse-path accepted, no recipient yet
    RCPT = "rcpt"  # at least one recipient accepted
    CHUNKING = "chunking"  # BDAT chunks received, LAST not yet (RFC 3030 2)


class Mode(enum.Enum):
    """What the next input bytes are."""

    COMMAND = "command"  # CRLF-terminated command lines
    DATA = "data"  # message text up to CRLF.CRLF (RFC 5321 4.1.1.4)
    CHUNK = "chunk"  # exactly n octets of a BDAT chunk (RFC 3030 2)
    SASL = "sasl"  # one base64 SASL response line (RFC 4954 4)
    TLS_PENDING = "tls-pending"  # STARTTLS accepted; input is discarded until TLS is up
    CLOSED = "closed"


# Sentinel: the command keeps the current state.
SAME = "same"

_TRANSACTION = (State.MAIL, State.RCPT, State.CHUNKING)

Outcome = State | Reply | str

# verb -> {state: next state on success, or the refusal}
SEQUENCE: dict[str, dict[State, Outcome]] = {
    "EHLO": {s: State.READY for s in State},
    "HELO": {s: State.READY for s in State},
    "MAIL": {
        State.START: REPLY_NEED_HELO,
        State.READY: State.MAIL,
        State.MAIL: REPLY_NESTED_MAIL,
        State.RCPT: REPLY_NESTED_MAIL,
        State.CHUNKING: REPLY_NESTED_MAIL,
    },
    "RCPT": {
        State.START: REPLY_NEED_MAIL,
        State.READY: REPLY_NEED_MAIL,
        State.MAIL: State.RCPT,
        State.RCPT: State.RCPT,
        State.CHUNKING: REPLY_BAD_SEQUENCE,  # RFC 3030 2: no RCPT between chunks
    },
    "DATA": {
        State.START: REPLY_NEED_MAIL,
        State.READY: REPLY_NEED_MAIL,
        State.MAIL: REPLY_NEED_RCPT,
        State.RCPT: State.READY,  # once the content is answered
        State.CHUNKING: REPLY_BDAT_MIXED,  # RFC 3030 2: DATA may not follow BDAT
    },
    # A refused BDAT still has its chunk read and discarded (RFC 3030 2).
    "BDAT": {
        State.START: REPLY_NEED_MAIL,
        State.READY: REPLY_NEED_MAIL,
        State.MAIL: REPLY_NEED_RCPT,
        State.RCPT: State.CHUNKING,
        State.CHUNKING: State.CHUNKING,
    },
    "RSET": {
        State.START: State.START,
        State.READY: State.READY,
        **{s: State.READY for s in _TRANSACTION},
    },
    # RFC 4954 4: AUTH needs EHLO and is not allowed during a mail transaction.
    "AUTH": {
        State.START: REPLY_NEED_HELO,
        State.READY: SAME,
        **{s: REPLY_BAD_SEQUENCE for s in _TRANSACTION},
    },
    # RFC 3207 4: STARTTLS follows EHLO; it resets to START once TLS is up (4.2).
    "STARTTLS": {
        State.START: REPLY_NEED_HELO,
        State.READY: State.START,
        **{s: REPLY_BAD_SEQUENCE for s in _TRANSACTION},
    },
    "NOOP": {s: SAME for s in State},
    "HELP": {s: SAME for s in State},
    "VRFY": {s: SAME for s in State},
    # QUIT aborts an open transaction before the connection closes (RFC 5321 4.1.1.10).
    "QUIT": {
        State.START: State.START,
        State.READY: State.READY,
        **{s: State.READY for s in _TRANSACTION},
    },
}

# Commands that may take no argument at all (RFC 5321 4.1.1).
NO_ARGUMENT = frozenset({"DATA", "RSET", "QUIT", "STARTTLS"})

# Longest command line accepted, CRLF included.  RFC 5321 4.5.3.1.4 sets 512 and lets
# extensions raise it: MAIL and RCPT carry ESMTP parameters (RFC 3461 adds up to 500,
# RFC 4954 AUTH= 500 more), so they get 2048; AUTH lines carry SASL data and get the
# 12288 octets RFC 4954 4 asks servers to accept.
MAX_COMMAND_LINE = 512
MAX_PARAMETER_LINE = 2048
MAX_SASL_LINE = 12288
LINE_LIMITS: dict[str, int] = {"MAIL": MAX_PARAMETER_LINE, "RCPT": MAX_PARAMETER_LINE,
                               "AUTH": MAX_SASL_LINE}


def in_transaction(state: State) -> bool:
    return state in _TRANSACTION
