"""Message content as it streams in: DATA decoding, BDAT chunks, and content checks.

:class:`DataDecoder` finds the end of DATA (only ``CRLF.CRLF``, RFC 5321 4.1.1.4) and
removes dot-stuffing (4.5.2).  :class:`ChunkDecoder` passes BDAT octets through
(RFC 3030 2).  Both hand whole lines to one :class:`ContentCheck`, which counts the
size, refuses bare CR or LF (RFC 5321 2.3.8; a lone ``\\n.\\n`` is how SMTP smuggling,
CVE-2023-51764, hides a second message) or converts them to CRLF, enforces the
text-line limit (4.5.3.1.6) and counts Received fields in the header section for loop
detection (6.3).

Everything works on whole buffers with ``bytes.find``/``count``/``replace`` so that
the per-octet work happens in C; nothing here loops over octets in Python.  Once a
message is refused, its remaining content is only scanned for the terminator and
dropped, so a hostile or oversized message never accumulates in memory.
"""

from __future__ import annotations

import re

from mailyard.proto.smtp.replies import (
    REPLY_BARE_LINE_ENDING,
    REPLY_LINE_TOO_LONG,
    REPLY_LOOP,
    REPLY_MESSAGE_TOO_BIG,
    Reply,
)

__all__ = ["ChunkDecoder", "ContentCheck", "DataDecoder"]

_ANY_EOL = re.compile(rb"\r\n|\r|\n")
_TERMINATOR = b"\r\n.\r\n"


class ContentCheck:
    """Per-message checks over CRLF-aligned regions of content.

    ``refusal`` is the reply for the first problem found; from then on :meth:`scan`
    returns nothing and the caller discards the rest of the message.
    """

    __slots__ = ("max_size", "max_line", "max_received", "normalize", "binary",
                 "size", "received", "in_headers", "refusal")

    def __init__(self, max_size: int, max_line: int, max_received: int,
                 normalize: bool = False, binary: bool = False) -> None:
        self.max_size = max_size
        self.max_line = max_line  # octets per text line, CRLF included
        self.max_received = max_received
        self.normalize = normalize  # convert bare CR/LF to CRLF instead of refusing
        self.binary = binary  # BODY=BINARYMIME: no line rules (RFC 3030 3)
        self.size = 0
        self.received = 0
        self.in_headers = True
        self.refusal: Reply | None = None

    def refuse(self, reply: Reply) -> None:
        if self.refusal is None:
            self.refusal = reply

    def scan(self, region: bytes) -> bytes:
        """Check ``region`` (starting at a line start) and return what to store."""
        if self.refusal is not None:
            return b""
        if not self.binary:
            crlf = region.count(b"\r\n")
            if region.count(b"\r") != crlf or region.count(b"\n") != crlf:
                if not self.normalize:
                    self.refuse(REPLY_BARE_LINE_ENDING)
                    return b""
                region = _ANY_EOL.sub(b"\r\n", region)
            if len(region) > self.max_line and self._longest_line(region) > self.max_line - 2:
                self.refuse(REPLY_LINE_TOO_LONG)
                return b""
        self.size += len(region)
        if self.size > self.max_size:
            self.refuse(REPLY_MESSAGE_TOO_BIG)
            return b""
        if self.in_headers:
            self._count_received(region)
            if self.received > self.max_received:
                self.refuse(REPLY_LOOP)
                return b""
        return region

    def long_tail(self, length: int) -> bool:
        """A partial line of ``length`` octets with no LF yet: too long already?"""
        if self.binary or length < self.max_line:
            return False
        self.refuse(REPLY_LINE_TOO_LONG)
        return True

    @staticmethod
    def _longest_line(region: bytes) -> int:
        return max(map(len, region.split(b"\r\n")))

    def _count_received(self, region: bytes) -> None:
        """RFC 5321 6.3: count trace fields while in the header section."""
        if region.startswith(b"\r\n"):
            self.in_headers = False
            return
        end = region.find(b"\r\n\r\n")
        head = region if end < 0 else region[: end + 2]
        if end >= 0:
            self.in_headers = False
        lowered = head.lower()
        self.received += lowered.count(b"\r\nreceived:") + lowered.startswith(b"received:")


class DataDecoder:
    """DATA content up to ``CRLF.CRLF`` with dot-stuffing removed (RFC 5321 4.5.2).

    The DATA command's own CRLF counts as the line break before the first line, so a
    first line of just ``.`` ends an empty message.
    """

    __slots__ = ("check", "at_line_start")

    def __init__(self, check: ContentCheck) -> None:
        self.check = check
        self.at_line_start = True  # the previous octets were CRLF

    def decode(self, buf: bytes, pos: int) -> tuple[bytes, int, bool]:
        """Consume what can be consumed of ``buf[pos:]``.

        Returns (content to store, new position, end of data seen).  Content is cut
        after an LF only, so the unconsumed rest is at most one partial line."""
        if self.at_line_start and buf.startswith(b".\r\n", pos):
            return b"", pos + 3, True
        end = buf.find(_TERMINATOR, pos)
        if end >= 0:
            return self._region(buf, pos, end + 2), end + 5, True
        cut = buf.rfind(b"\n", pos)
        if cut < 0:
            return b"", self._partial_line(buf, pos), False
        content = self._region(buf, pos, cut + 1)
        self.at_line_start = cut > pos and buf[cut - 1] == 13
        return content, cut + 1, False

    def _region(self, buf: bytes, pos: int, end: int) -> bytes:
        if self.check.refusal is not None:
            self.at_line_start = True
            return b""
        region = buf[pos:end]
        if self.at_line_start and region[:1] == b".":
            region = region[1:]
        if b"\r\n." in region:
            region = region.replace(b"\r\n.", b"\r\n")
        self.at_line_start = True
        return self.check.scan(region)

    def _partial_line(self, buf: bytes, pos: int) -> int:
        """No LF in ``buf[pos:]``: keep it unless it is already an over-long line, in
        which case drop all of it except a final CR (it may start the next CRLF)."""
        if not self.check.long_tail(len(buf) - pos) and self.check.refusal is None:
            return pos
        if len(buf) - pos < 5:
            return pos
        self.at_line_start = False
        return len(buf) - 1 if buf.endswith(b"\r") else len(buf)


class ChunkDecoder:
    """One message's BDAT chunks (RFC 3030 2): octets taken as they are, handed to the
    content checks in whole lines; the last partial line goes at :meth:`finish`."""

    __slots__ = ("check", "carry")

    def __init__(self, check: ContentCheck) -> None:
        self.check = check
        self.carry = b""

    def feed(self, piece: bytes) -> bytes:
        check = self.check
        if check.refusal is not None:
            self.carry = b""
            return b""
        if check.binary:
            # No line structure to keep (RFC 3030 3); Received fields split across two
            # chunks are not counted, which only delays loop detection by a hop.
            return check.scan(piece)
        data = self.carry + piece if self.carry else piece
        cut = data.rfind(b"\n")
        if cut < 0:
            self.carry = b"" if check.long_tail(len(data)) else data
            return b""
        self.carry = data[cut + 1 :]
        if self.carry and check.long_tail(len(self.carry)):
            self.carry = b""
        return check.scan(data[: cut + 1])

    def finish(self) -> bytes:
        """The message ended (BDAT LAST): check and return the unterminated rest."""
        carry, self.carry = self.carry, b""
        return self.check.scan(carry) if carry else b""
