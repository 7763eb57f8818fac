"""SMTP replies (RFC 5321 4.2) with enhanced status codes (RFC 3463, RFC 2034).

Every reply Mailyard sends is named here, so tests assert on names and a reader sees
every refusal in one table.  :class:`SmtpError` carries a reply out of protocol and
policy code to the adapter that writes it.
"""

# ruff: noqa: E501  (one reply per line: the table reads down the page)
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    code: int
    status: str  # enhanced status code "x.y.z", or "" where none applies (220, 221 greeting...)
    text: str

    @property
    def is_positive(self) -> bool:
        return self.code < 400

    @property
    def is_transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        return self.code >= 500

    def with_text(self, text: str) -> Reply:
        return Reply(self.code, self.status, text)

    def fill(self, **values: object) -> Reply:
        """The template's text with its ``{name}`` fields filled in."""
        return Reply(self.code, self.status, self.text.format(**values))

    def lines(self, enhanced: bool = True) -> list[str]:
        """The text lines, each prefixed with the enhanced code when it applies."""
        out = []
        for line in self.text.split("\n") or [""]:
            if enhanced and self.status:
                out.append(f"{self.status} {line}" if line else self.status)
            else:
                out.append(line)
        return out

    def encode(self, enhanced: bool = True) -> bytes:
        lines = self.lines(enhanced)
        parts = []
        for i, line in enumerate(lines):
            sep = " " if i == len(lines) - 1 else "-"
            parts.append(f"{self.code}{sep}{line}\r\n")
        return "".join(parts).encode("utf-8", "replace")

    def __str__(self) -> str:
        return f"{self.code} {self.status} {self.text}".replace("  ", " ").strip()


class SmtpError(Exception):
    """A refusal that maps to one SMTP reply."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        super().__init__(str(reply))


# --- positive -------------------------------------------------------------------
REPLY_OK = Reply(250, "2.0.0", "OK")
REPLY_SENDER_OK = Reply(250, "2.1.0", "Sender OK")
REPLY_RCPT_OK = Reply(250, "2.1.5", "Recipient OK")
REPLY_QUEUED = Reply(250, "2.0.0", "Queued as {qid}")
REPLY_DELIVERED_NOW = Reply(250, "2.0.0", "Delivered as {qid}")  # direct local delivery
REPLY_RESET = Reply(250, "2.0.0", "Reset state")
REPLY_NOOP = Reply(250, "2.0.0", "OK")
REPLY_BYE = Reply(221, "2.0.0", "Bye")
REPLY_START_DATA = Reply(354, "", "End data with <CR><LF>.<CR><LF>")
REPLY_READY_TLS = Reply(220, "2.0.0", "Ready to start TLS")
REPLY_AUTH_OK = Reply(235, "2.7.0", "Authentication successful")
REPLY_VRFY_CANNOT = Reply(252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery")
REPLY_HELP = Reply(214, "2.0.0", "See RFC 5321; commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY STARTTLS AUTH")
REPLY_BDAT_OK = Reply(250, "2.0.0", "{size} octets received")
REPLY_MAILBOX_DELIVERED = Reply(250, "2.0.0", "Delivered to maildir")

# --- transient (4xx) ------------------------------------------------------------
REPLY_SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down, closing connection")
REPLY_TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "Too many connections from your address, try again later")
REPLY_SERVER_BUSY = Reply(421, "4.3.2", "Too many connections, try again later")
REPLY_TIMEOUT = Reply(421, "4.4.2", "Timeout exceeded, closing connection")
REPLY_TOO_SLOW = Reply(421, "4.4.2", "Data rate too low, closing connection")
REPLY_SESSION_TOO_LONG = Reply(421, "4.4.2", "Session time limit exceeded, closing connection")
REPLY_TOO_MANY_ERRORS = Reply(421, "4.7.0", "Too many errors, closing connection")
REPLY_TOO_MANY_AUTH_FAILURES = Reply(421, "4.7.0", "Too many authentication failures, closing connection")
REPLY_TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")
REPLY_DISK_FULL = Reply(452, "4.3.1", "Insufficient system storage, try again later")
REPLY_STORAGE_ERROR = Reply(451, "4.3.0", "Local error in processing, message not accepted, try again later")
REPLY_TEMP_LOOKUP = Reply(451, "4.4.3", "Temporary lookup failure, try again later")
REPLY_TLS_UNAVAILABLE = Reply(454, "4.7.0", "TLS not available")
REPLY_AUTH_TEMP = Reply(454, "4.7.0", "Temporary authentication failure")
# RFC 4954 6: 454 4.7.0 is the temporary AUTH failure; the busy variant is sent without
# hashing when every password verification slot of the worker is taken.
REPLY_AUTH_BUSY = Reply(454, "4.7.0", "Temporary authentication failure, server busy, try again later")
REPLY_AUTH_LOCKED_OUT = Reply(421, "4.7.0", "Too many authentication failures, try later")
REPLY_MAILBOX_FULL = Reply(452, "4.2.2", "Mailbox full")
REPLY_OVER_QUOTA = Reply(552, "5.2.2", "Mailbox full: quota exceeded")  # RFC 3463 3.3, RFC 9208
REPLY_LOCAL_DELIVERY_ERROR = Reply(451, "4.3.0", "Local delivery failed: {error}")
# Outbound routing and queue lifetime (delivery); "{domain}"/"{host}" are filled in.
REPLY_DNS_TEMP_FAILURE = Reply(451, "4.4.3", "Temporary DNS failure looking up {domain}: {reason}")
REPLY_NO_MX_ADDRESS = Reply(451, "4.4.4", "No address found for any mail exchanger of {domain}")
REPLY_NO_SECURE_MX = Reply(451, "4.7.5", "No MX host of {domain} is inside that domain, as TLS level secure requires")
REPLY_TLS_POLICY_NO_HOP = Reply(451, "4.7.5", "No MX host of {domain} can be used under its {policy} policy: {reason}")
REPLY_NEXTHOP_UNRESOLVED = Reply(451, "4.4.4", "Cannot resolve next hop {host} for {domain}")
REPLY_DESTINATION_BUSY = Reply(451, "4.4.5", "More than {share} messages for {domain} in progress; waiting for a turn")
REPLY_POOL_RATE = Reply(451, "4.4.5", "Delivery pool {pool}: rate to {domain} is {rate}, message waits")
REPLY_MESSAGE_EXPIRED = Reply(451, "4.4.7", "Message expired: not delivered within {lifetime}; last error: {last}")

# --- permanent (5xx) ------------------------------------------------------------
REPLY_UNKNOWN_COMMAND = Reply(500, "5.5.1", "Command unrecognized")
REPLY_LINE_TOO_LONG = Reply(500, "5.5.6", "Line too long")
REPLY_SYNTAX = Reply(501, "5.5.4", "Syntax error in parameters or arguments")
REPLY_BAD_CHARS = Reply(501, "5.5.2", "Invalid character (CR, LF or NUL) in command")
REPLY_BAD_ADDRESS = Reply(501, "5.1.3", "Bad address syntax")
REPLY_BAD_SENDER_ADDRESS = Reply(501, "5.1.7", "Bad sender address syntax")
REPLY_NOT_IMPLEMENTED = Reply(502, "5.5.1", "Command not implemented")
REPLY_PARAM_NOT_IMPLEMENTED = Reply(555, "5.5.4", "Parameter not recognized or not implemented")
REPLY_BAD_SEQUENCE = Reply(503, "5.5.1", "Bad sequence of commands")
REPLY_NEED_HELO = Reply(503, "5.5.1", "Send EHLO/HELO first")
REPLY_NEED_MAIL = Reply(503, "5.5.1", "Need MAIL command first")
REPLY_NEED_RCPT = Reply(503, "5.5.1", "Need RCPT command first")
REPLY_NESTED_MAIL = Reply(503, "5.5.1", "Sender already specified")
REPLY_ALREADY_AUTH = Reply(503, "5.5.1", "Already authenticated")
REPLY_ALREADY_TLS = Reply(503, "5.5.1", "TLS already active")
REPLY_BDAT_MIXED = Reply(503, "5.5.1", "DATA not allowed after BDAT")
REPLY_AUTH_MECH = Reply(504, "5.5.4", "Unrecognized authentication mechanism")
REPLY_AUTH_CANCELLED = Reply(501, "5.7.0", "Authentication cancelled")
REPLY_AUTH_BAD_BASE64 = Reply(501, "5.5.2", "Cannot decode base64 response")
REPLY_AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
REPLY_MUST_STARTTLS = Reply(530, "5.7.0", "Must issue a STARTTLS command first")
REPLY_AUTH_NEEDS_TLS = Reply(538, "5.7.11", "Encryption required for requested authentication mechanism")
REPLY_AUTH_FAILED = Reply(535, "5.7.8", "Authentication credentials invalid")
REPLY_AUTH_MALFORMED = Reply(501, "5.5.4", "Malformed authentication response")
REPLY_UNKNOWN_USER = Reply(550, "5.1.1", "Recipient address rejected: user unknown")
REPLY_RELAY_DENIED = Reply(554, "5.7.1", "Relay access denied")
REPLY_SENDER_NOT_OWNED = Reply(553, "5.7.1", "Sender address not owned by authenticated user")
REPLY_NEEDS_SMTPUTF8 = Reply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")
REPLY_MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed limit")
REPLY_LOOP = Reply(554, "5.4.6", "Too many Received headers: mail loop detected")
REPLY_DELIVERED_TO_LOOP = Reply(554, "5.4.6", "Message already delivered to a recipient (Delivered-To): mail loop detected")
REPLY_HEADER_FROM_NOT_OWNED = Reply(550, "5.7.1", "Header From address not owned by authenticated user")
REPLY_ADDRESS_LITERAL_DENIED = Reply(550, "5.7.1", "Address literal recipients are not accepted here")
# SPF at MAIL FROM (RFC 7208 8, enhanced codes of RFC 7372 3.2).
REPLY_SPF_FAIL = Reply(550, "5.7.23", "SPF validation failed: {comment}")
REPLY_SPF_FAIL_TEMP = Reply(451, "4.7.23", "SPF validation failed, try again later: {comment}")
REPLY_SPF_PERMERROR = Reply(550, "5.7.24", "SPF validation error: {comment}")
REPLY_SPF_TEMPERROR = Reply(451, "4.7.24", "SPF validation error, try again later: {comment}")
REPLY_BARE_LINE_ENDING = Reply(
    554, "5.6.11", "Bare CR or LF in message data is not allowed (RFC 5321 2.3.8)"
)
REPLY_BAD_BDAT = Reply(501, "5.5.4", "Invalid BDAT chunk size")
REPLY_NO_VALID_RECIPIENTS = Reply(554, "5.5.1", "No valid recipients")
REPLY_TRANSACTION_FAILED = Reply(554, "5.0.0", "Transaction failed")
REPLY_NOT_ACCEPTING = Reply(554, "5.3.2", "Not accepting mail")
REPLY_BAD_MAILBOX_NAME = Reply(550, "5.1.3", "Mailbox name not usable: {address}")
REPLY_FORWARDING_LOOP = Reply(554, "5.4.6", "Mail forwarding loop for {address}")
# Outbound routing (delivery); "{domain}" is filled in.
REPLY_NULL_MX = Reply(556, "5.1.10", "Recipient domain {domain} does not accept mail (null MX, RFC 7505)")
REPLY_DOMAIN_NOT_FOUND = Reply(550, "5.1.2", "Recipient domain {domain} not found")
REPLY_BAD_DESTINATION = Reply(550, "5.1.2", "Bad destination domain {domain}: {reason}")
REPLY_NO_ROUTE = Reply(550, "5.4.4", "No MX or address records for {domain}")
REPLY_MAIL_LOOPS = Reply(554, "5.4.6", "Mail for {domain} loops back to myself")
# Outbound SMTP client: recorded for the queue and DSNs when the remote server gave no
# reply of its own (connection trouble, local checks against its EHLO capabilities).
REPLY_REMOTE_UNREACHABLE = Reply(451, "4.4.1", "Cannot connect to the remote server")
REPLY_REMOTE_TIMEOUT = Reply(451, "4.4.2", "Timed out talking to the remote server")
REPLY_REMOTE_LOST = Reply(451, "4.4.2", "Lost connection with the remote server")
REPLY_REMOTE_PROTOCOL = Reply(451, "4.5.0", "Remote server violated the SMTP protocol")
REPLY_REMOTE_TLS_FAILED = Reply(451, "4.7.5", "TLS handshake with the remote server failed")
REPLY_REMOTE_NO_TLS = Reply(451, "4.7.4", "TLS is required but the remote server does not offer STARTTLS")
REPLY_REMOTE_AUTH_NO_TLS = Reply(451, "4.7.0", "Not sending credentials over an unencrypted connection")
REPLY_REMOTE_AUTH_UNVERIFIED = Reply(451, "4.7.0", "Not sending credentials to a server whose certificate was not verified")
REPLY_REMOTE_CERT_UNVERIFIED = Reply(451, "4.7.5", "Remote server certificate not verified")
REPLY_REMOTE_AUTH_MECH = Reply(451, "4.7.0", "Remote server offers no supported AUTH mechanism (PLAIN, LOGIN)")
REPLY_REMOTE_NO_SMTPUTF8 = Reply(553, "5.6.7", "Non-ASCII address, and the remote server does not support SMTPUTF8")
REPLY_REMOTE_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds the remote server's fixed limit")
REPLY_REMOTE_NO_BINARYMIME = Reply(554, "5.6.3", "Binary content, and the remote server does not support BINARYMIME")
REPLY_REMOTE_BAD_ADDRESS = Reply(553, "5.1.3", "Address contains characters not allowed in an SMTP command")
REPLY_REMOTE_NO_HOPS = Reply(451, "4.4.0", "No next hop to deliver to")

# --- SMTP server (smtpd) --------------------------------------------------------
REPLY_INTERNAL_ERROR = Reply(421, "4.3.0", "Internal error, closing connection")
REPLY_NOT_SMTP = Reply(421, "4.7.0", "This is an SMTP server, closing connection")

# --- sender authentication (RFC 7489 DMARC) --------------------------------------
REPLY_DMARC_REJECT = Reply(550, "5.7.1", "Message rejected: the DMARC policy of {domain} asks to reject mail that fails authentication")
