"""MAIL and RCPT commands as one grammar for both roles (RFC 5321 4.1.1.2, 4.1.1.3,
4.1.2; ESMTP parameters of RFC 1870, RFC 6152, RFC 3030, RFC 6531, RFC 3461).

The server core parses a command line's argument with :meth:`MailCommand.parse` /
:meth:`RcptCommand.parse`; the delivery client builds the same objects and sends
:meth:`~MailCommand.encode`.  Both go through :mod:`~mailyard.proto.smtp.address` (paths,
xtext) and :mod:`~mailyard.proto.smtp.params` (parameter values), so what our client
sends is, by construction, what our server reads back
(``tests/unit/smtp_client/test_wire_loopback.py`` checks it with random envelopes).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from mailyard.envelope import DsnRecipient
from mailyard.proto.smtp.address import (
    AddressError,
    Mailbox,
    format_path,
    parse_forward_path,
    parse_params,
    parse_reverse_path,
    xtext_encode,
)
from mailyard.proto.smtp.params import MailParameters, mail_parameters, rcpt_parameters
from mailyard.proto.smtp.replies import REPLY_SYNTAX, SmtpError

__all__ = ["MailCommand", "RcptCommand", "forward_path_ok", "reverse_path_ok"]

_PARAMS_NEED_EHLO = REPLY_SYNTAX.with_text("Parameters need EHLO")
_MAIL_SYNTAX = REPLY_SYNTAX.with_text("Syntax: MAIL FROM:<address>")
_RCPT_SYNTAX = REPLY_SYNTAX.with_text("Syntax: RCPT TO:<address>")


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~0.5 µs per command
class MailCommand:
    """``MAIL FROM:<sender> [parameters]``; ``sender`` "" is the null reverse-path."""

    sender: str
    params: MailParameters = MailParameters()
    mailbox: Mailbox | None = None  # the parsed path (server side); None for <>

    @classmethod
    def parse(cls, arg: str, *, extended: bool = True) -> MailCommand:
        """Parse what follows ``MAIL ``.  Raises SmtpError with the reply to send:
        501 5.5.4 for the command syntax, 501 5.1.7 for the path, 501/555 5.5.4 for
        parameters (parameters need EHLO, RFC 5321 4.1.1.11)."""
        if arg[:5].upper() != "FROM:":
            raise SmtpError(_MAIL_SYNTAX)
        mailbox, rest = parse_reverse_path(arg[5:])
        params = parse_params(rest) if rest else {}
        if params and not extended:
            raise SmtpError(_PARAMS_NEED_EHLO)
        sender = mailbox.address if mailbox is not None else ""
        return cls(sender, mail_parameters(params), mailbox)

    def encode(self) -> str:
        """The command line without CRLF.  Parameters at their defaults are left out
        (no SIZE, BODY=7BIT, no RET or ENVID)."""
        p = self.params
        parts = [f"MAIL FROM:{format_path(self.sender)}"]
        if p.size is not None:
            parts.append(f"SIZE={p.size}")
        if p.body != "7BIT":
            parts.append(f"BODY={p.body}")
        if p.smtputf8:
            parts.append("SMTPUTF8")
        if p.ret:
            parts.append(f"RET={p.ret}")
        if p.envid:
            parts.append(f"ENVID={xtext_encode(p.envid)}")
        return " ".join(parts)


@dataclass(slots=True)
class RcptCommand:
    """``RCPT TO:<address> [NOTIFY=...] [ORCPT=...]``."""

    address: str
    dsn: DsnRecipient = DsnRecipient()
    mailbox: Mailbox | None = None  # the parsed path (server side)

    @classmethod
    def parse(cls, arg: str, *, extended: bool = True) -> RcptCommand:
        """Parse what follows ``RCPT ``.  Raises SmtpError with the reply to send
        (501 5.1.3 for the path)."""
        if arg[:3].upper() != "TO:":
            raise SmtpError(_RCPT_SYNTAX)
        mailbox, rest = parse_forward_path(arg[3:])
        params = parse_params(rest) if rest else {}
        if params and not extended:
            raise SmtpError(_PARAMS_NEED_EHLO)
        return cls(mailbox.address, rcpt_parameters(params), mailbox)

    def encode(self) -> str:
        """The command line without CRLF; ORCPT only when it is ``addr-type;address``
        with both parts (RFC 3461 4.2)."""
        parts = [f"RCPT TO:{format_path(self.address)}"]
        dsn = self.dsn
        if dsn.notify:
            parts.append("NOTIFY=" + ",".join(dsn.notify))
        addr_type, sep, original = dsn.orcpt.partition(";")
        if sep and addr_type and original:
            parts.append(f"ORCPT={addr_type};{xtext_encode(original)}")
        return " ".join(parts)


@lru_cache(maxsize=4096)  # the client asks for every message; most senders recur
def reverse_path_ok(address: str) -> bool:
    """True when the server's grammar takes ``<address>`` as a MAIL FROM path
    ("" is the null path)."""
    try:
        _, rest = parse_reverse_path(format_path(address))
    except AddressError:
        return False
    return not rest


@lru_cache(maxsize=4096)
def forward_path_ok(address: str) -> bool:
    """True when the server's grammar takes ``<address>`` as a RCPT TO path."""
    try:
        _, rest = parse_forward_path(format_path(address))
    except AddressError:
        return False
    return not rest
