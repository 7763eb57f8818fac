"""Wire codecs for the SMTP client: reply parsing, EHLO capabilities, message content.

* :class:`ReplyParser` turns server bytes into :class:`~mailyard.proto.smtp.replies.Reply`
  objects (RFC 5321 4.2, multi-line replies 4.2.1, enhanced status codes RFC 2034).  It is
  hand-written because smtplib's parser is tied to a blocking socket and trusts the
  server: this one bounds line length, line count and reply size, so a hostile server
  cannot make us buffer without limit.
* :class:`Extensions` is what an EHLO reply offered.
* :class:`DataEncoder` turns message content into wire form chunk by chunk (CRLF line
  endings, dot-stuffing for DATA) without holding the message in memory.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

from mailyard.proto.smtp.replies import Reply

__all__ = ["DataEncoder", "Extensions", "RawEncoder", "RemoteProtocolError", "ReplyParser",
           "describe"]

# --- replies --------------------------------------------------------------------------
MAX_REPLY_LINE = 4096  # RFC 5321 4.5.3.1.5 says 512; real servers send longer text
MAX_REPLY_LINES = 128
MAX_REPLY_BYTES = 65536

_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?: +|$)")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class RemoteProtocolError(Exception):
    """The server sent something that is not a well-formed SMTP reply."""


def describe(reply: Reply) -> str:
    """One-line form for logs, the queue and DSN Diagnostic-Code: '550 5.1.1 text'."""
    text = " ".join(line.strip() for line in reply.text.split("\n") if line.strip())
    return " ".join(part for part in (str(reply.code), reply.status, text) if part)


class ReplyParser:
    """Bytes in, :class:`Reply` objects out (RFC 5321 4.2, 4.2.1 multi-line replies)."""

    def __init__(self, max_line: int = MAX_REPLY_LINE, max_lines: int = MAX_REPLY_LINES,
                 max_bytes: int = MAX_REPLY_BYTES) -> None:
        self.max_line, self.max_lines, self.max_bytes = max_line, max_lines, max_bytes
        self.replies: deque[Reply] = deque()
        self._buf = bytearray()
        self._lines: list[str] = []
        self._code = 0
        self._size = 0

    @property
    def buffered(self) -> bool:
        return bool(self._buf or self._lines or self.replies)

    def reset(self) -> None:
        """Forget everything received so far (RFC 3207 4.2: nothing sent before the
        TLS handshake may be used after it)."""
        self.replies.clear()
        self._buf.clear()
        self._lines, self._code, self._size = [], 0, 0

    def feed(self, data: bytes) -> None:
        self._buf += data
        start = 0
        while (end := self._buf.find(b"\n", start)) >= 0:
            self._line(bytes(self._buf[start:end]))
            start = end + 1
        del self._buf[:start]
        if len(self._buf) > self.max_line:
            raise RemoteProtocolError(f"reply line longer than {self.max_line} octets")

    def _line(self, raw: bytes) -> None:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if len(raw) > self.max_line:
            raise RemoteProtocolError(f"reply line longer than {self.max_line} octets")
        if len(raw) < 3 or not raw[:3].isdigit() or raw[3:4] not in (b"", b" ", b"-"):
            raise RemoteProtocolError(f"malformed reply line {raw[:40]!r}")
        code = int(raw[:3])
        if not 200 <= code <= 599:
            raise RemoteProtocolError(f"reply code {code} out of range")
        if self._lines and code != self._code:
            raise RemoteProtocolError(f"reply code changed from {self._code} to {code}")
        self._code = code
        self._size += len(raw)
        text = raw[4:].decode("utf-8", "replace")
        if not (text.isascii() and text.isprintable()):  # the rare case: look closer
            text = _CONTROL.sub("?", text)
        self._lines.append(text)
        if len(self._lines) > self.max_lines or self._size > self.max_bytes:
            raise RemoteProtocolError("reply too long")
        if raw[3:4] != b"-":
            self.replies.append(_make_reply(code, self._lines))
            self._lines, self._code, self._size = [], 0, 0


def _make_reply(code: int, lines: list[str]) -> Reply:
    """Take the enhanced status code (RFC 2034 3) from the first line when its class
    matches the reply code, and strip it from every line that repeats it."""
    m = _ENHANCED.match(lines[0])
    if m is None or int(m.group(1)) != code // 100:
        return Reply(code, "", "\n".join(lines))
    status = f"{m.group(1)}.{int(m.group(2))}.{int(m.group(3))}"
    if len(lines) == 1:  # most replies: no other line to compare
        return Reply(code, status, lines[0][m.end():])
    out = []
    for line in lines:
        lm = _ENHANCED.match(line)
        out.append(line[lm.end():] if lm and lm.group(0).strip() == m.group(0).strip() else line)
    return Reply(code, status, "\n".join(out))


# --- EHLO capabilities ------------------------------------------------------------------
@dataclass(frozen=True)
class Extensions:
    """What the server offered in its EHLO reply (RFC 5321 4.1.1.1)."""

    keywords: dict[str, str] = field(default_factory=dict)  # KEYWORD -> parameters

    @classmethod
    def from_ehlo(cls, reply: Reply) -> Extensions:
        keywords: dict[str, str] = {}
        for line in reply.text.split("\n")[1:]:
            word, _, params = line.strip().partition(" ")
            if word.upper().startswith("AUTH="):  # pre-standard "AUTH=PLAIN LOGIN"
                word, params = "AUTH", f"{word[5:]} {params}"
            if word:
                old = keywords.get(word.upper(), "")
                keywords[word.upper()] = f"{old} {params}".strip()
        return cls(keywords)

    def __contains__(self, keyword: str) -> bool:
        return keyword.upper() in self.keywords

    @property
    def size_limit(self) -> int | None:
        """None: SIZE not offered; 0: offered without a fixed limit (RFC 1870 4)."""
        if "SIZE" not in self.keywords:
            return None
        value = self.keywords["SIZE"].split(" ")[0]
        return int(value) if value.isdigit() else 0

    @property
    def auth_mechanisms(self) -> frozenset[str]:
        return frozenset(self.keywords.get("AUTH", "").upper().split())



# --- content ----------------------------------------------------------------------------
_ANY_EOL = re.compile(rb"\r\n|\r|\n")


class DataEncoder:
    """Message content to wire form, chunk by chunk: every line ending becomes CRLF (a
    bare CR or LF is never sent, RFC 5321 2.3.8) and, for DATA, a "." at the start of a
    line is doubled (RFC 5321 4.5.2).  A CR at the end of a chunk is held back until the
    next chunk shows whether an LF follows."""

    def __init__(self, dot_stuff: bool) -> None:
        self.dot_stuff = dot_stuff
        self._held_cr = False
        self._line_start = True
        self._empty = True

    def encode(self, chunk: bytes) -> bytes:
        if self._held_cr:
            chunk = b"\r" + chunk
        self._held_cr = chunk.endswith(b"\r")
        if self._held_cr:
            chunk = chunk[:-1]
        if not chunk:
            return b""
        crlf = chunk.count(b"\r\n")
        if chunk.count(b"\n") != crlf or chunk.count(b"\r") != crlf:
            chunk = _ANY_EOL.sub(b"\r\n", chunk)
        if self.dot_stuff:
            chunk = chunk.replace(b"\r\n.", b"\r\n..")
            if self._line_start and chunk.startswith(b"."):
                chunk = b"." + chunk
        self._line_start = chunk.endswith(b"\n")
        self._empty = False
        return chunk

    def finish(self) -> bytes:
        """What completes the last line (CRLF if the content did not end with one)."""
        if self._held_cr or not (self._empty or self._line_start):
            self._held_cr, self._line_start = False, True
            return b"\r\n"
        return b""




class RawEncoder(DataEncoder):
    """BINARYMIME content goes out untouched (RFC 3030 3)."""

    def __init__(self) -> None:
        super().__init__(dot_stuff=False)

    def encode(self, chunk: bytes) -> bytes:
        return chunk

    def finish(self) -> bytes:
        return b""
