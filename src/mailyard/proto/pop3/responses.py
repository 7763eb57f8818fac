"""POP3 status lines (RFC 1939 3) with response codes (RFC 2449 8, RFC 3206, RFC 5034 6).

Every status line Mailyard's POP3 server sends is named here, so tests assert on
names and a reader sees every refusal in one table.  :class:`Pop3Error` carries a
response out of command parsing to the core that writes it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Response:
    """``+OK text`` or ``-ERR [CODE] text`` (RFC 2449 8: the code is in brackets
    right after the status indicator)."""

    ok: bool
    text: str
    code: str = ""  # "AUTH", "IN-USE", "LOGIN-DELAY", "SYS/TEMP", "SYS/PERM" or ""

    def with_text(self, text: str) -> Response:
        return Response(self.ok, text, self.code)

    def encode(self) -> bytes:
        status = "+OK" if self.ok else "-ERR"
        parts = [status]
        if self.code:
            parts.append(f"[{self.code}]")
        if self.text:
            parts.append(self.text)
        # A status line is one line: never let a newline from a caller's text through.
        line = " ".join(parts).replace("\r", " ").replace("\n", " ")
        return line.encode("utf-8", "replace") + b"\r\n"

    def __str__(self) -> str:
        return self.encode().decode("utf-8").rstrip("\r\n")


class Pop3Error(Exception):
    """A refusal that maps to one ``-ERR`` status line."""

    def __init__(self, response: Response) -> None:
        super().__init__(str(response))
        self.response = response


def ok(text: str = "") -> Response:
    return Response(True, text)


# RFC 3206 and RFC 5034 6 response codes.
CODE_AUTH = "AUTH"
CODE_IN_USE = "IN-USE"
CODE_LOGIN_DELAY = "LOGIN-DELAY"
CODE_SYS_TEMP = "SYS/TEMP"
CODE_SYS_PERM = "SYS/PERM"

# --- positive ----------------------------------------------------------------------
RESP_OK = Response(True, "")
RESP_CAPA = Response(True, "Capability list follows")
RESP_USER_OK = Response(True, "Send PASS")  # the same whether or not the user exists
RESP_STLS = Response(True, "Begin TLS negotiation")  # RFC 2595 4
RESP_BYE = Response(True, "Bye")
RESP_DELETED = Response(True, "Message deleted")
RESP_TOP = Response(True, "Top of message follows")

# --- negative: sequence and syntax ---------------------------------------------------
RESP_UNKNOWN_COMMAND = Response(False, "Unknown command")
RESP_BAD_STATE = Response(False, "Command not valid in this state")
RESP_SYNTAX = Response(False, "Syntax error")
RESP_LINE_TOO_LONG = Response(False, "Line too long")  # RFC 2449 4
RESP_BAD_CHARS = Response(False, "Control characters not allowed in commands")
RESP_NOT_UTF8 = Response(False, "Command is not valid UTF-8")
RESP_TOO_MANY_ERRORS = Response(False, "Too many bad commands, closing connection")
RESP_NO_SUCH_MESSAGE = Response(False, "No such message")
RESP_ALREADY_DELETED = Response(False, "Message already deleted")
RESP_APOP_NOT_OFFERED = Response(False, "APOP not supported")

# --- negative: TLS and authentication ----------------------------------------------
RESP_STLS_UNAVAILABLE = Response(False, "STLS not available")
RESP_ALREADY_TLS = Response(False, "TLS already active")  # RFC 2595 4: no STLS twice
RESP_PLAINTEXT_DISALLOWED = Response(
    False, "Plaintext authentication disallowed on non-secure connection, use STLS", CODE_AUTH)
RESP_PASS_WITHOUT_USER = Response(False, "USER first")
RESP_AUTH_FAILED = Response(False, "Authentication failed", CODE_AUTH)
RESP_AUTH_MECHANISM = Response(False, "Unsupported authentication mechanism")
RESP_AUTH_CANCELLED = Response(False, "Authentication cancelled")  # RFC 5034 4: "*"
RESP_AUTH_BAD_BASE64 = Response(False, "Invalid base64 in SASL response")
RESP_TOO_MANY_AUTH_FAILURES = Response(
    False, "Too many authentication failures, closing connection", CODE_AUTH)
RESP_IN_USE = Response(False, "Maildrop already locked by another session", CODE_IN_USE)
RESP_TEMP_FAILURE = Response(False, "Temporary server failure, try again later", CODE_SYS_TEMP)
RESP_UPDATE_FAILED = Response(
    False, "Some deleted messages were not removed", CODE_SYS_TEMP)  # RFC 1939 6
