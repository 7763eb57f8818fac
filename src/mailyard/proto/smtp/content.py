"""Message content as it streams in: DATA decoding, BDAT chunks, and content checks.

:class:`DataDecoder` finds the end of DATA (only ``CRLF.CRLF``, RFC 5321 4.1.1.4) and
removes dot-stuffing (4.5.2).  :class:`ChunkDecoder` passes BDAT octets through
(RFC 3030 2).  Both hand whole lines to one :class:`ContentCheck`, which counts the
size, refuses bare CR or LF (RFC 5321 2.3.8; a lone ``\\n.\\n`` is how SMTP smuggling,
CVE-2023-51764, hides a second message) or converts them to CRLF, enforces the
text-line limit (4.5.3.1.6) and counts Received fields in the header section for loop
detection (6.3).  The same pass keeps a copy of the header section (up to
:data:`MAX_HEADER_BLOCK` octets) for the checks the adapter makes at the end of the
content (:meth:`ContentCheck.take_header`); the header is never parsed twice.

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
_BARE_EOL = re.compile(rb"\r(?!\n)|(?<!\r)\n")
#: Largest header section kept for inspection (Postfix's header_size_limit); fields
#: beyond it are stored and delivered, but not inspected.
MAX_HEADER_BLOCK = 102_400


class ContentCheck:
    """Per-message checks over regions of content, each cut just after an LF.

    ``refusal`` is the reply for the first problem in the content; from then on
    :meth:`scan` returns nothing and the caller discards the rest of the message.
    When one region has several problems, the one that starts first wins (ties: line
    length, bare line ending, size, loop), so the reply does not depend on how the
    input was split into packets.  A "line" here ends at an LF, so a CRLF line may
    hold ``max_line - 2`` octets of text, as RFC 5321 4.5.3.1.6 allows.
    """

    __slots__ = ("max_size", "max_line", "max_received", "normalize", "binary",
                 "size", "received", "in_headers", "refusal", "header", "header_size",
                 "header_state")

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
        self.header: list[bytes] = []  # the header section, as scanned
        self.header_size = 0
        self.header_state = "open"  # open -> complete | truncated -> taken

    def take_header(self, at_end: bool = False) -> tuple[bytes, bool] | None:
        """The header section and whether it is complete, once: as soon as its end (the
        empty line) was scanned or it grew past :data:`MAX_HEADER_BLOCK`, or with
        ``at_end`` when the content ended (a message without a body is all header; a
        refused one has what was scanned).  None before that, and after."""
        state = self.header_state
        if state == "taken" or (state == "open" and not at_end):
            return None
        self.header_state = "taken"
        block = b"".join(self.header)
        self.header = []
        return block, state != "truncated" and self.refusal is None

    def refuse(self, reply: Reply) -> None:
        if self.refusal is None:
            self.refusal = reply

    def scan(self, region: bytes) -> bytes:
        """Check ``region`` (content after an LF, or the first content) and return
        what to store."""
        if self.refusal is not None:
            return b""
        bare = long = False
        if not self.binary:
            crlf = region.count(b"\r\n")
            bare = region.count(b"\r") != crlf or region.count(b"\n") != crlf
            if bare and self.normalize:
                region = _ANY_EOL.sub(b"\r\n", region)
                bare = False
            long = len(region) >= self.max_line and \
                max(map(len, region.split(b"\n"))) >= self.max_line
        big = self.size + len(region) > self.max_size
        loop_at = self._count_received(region) if self.in_headers else -1
        if bare or long or big or loop_at >= 0:
            self.refusal = self._first_problem(region, bare, long, big, loop_at)
            return b""
        self.size += len(region)
        return region

    def long_tail(self, length: int) -> bool:
        """A partial line of ``length`` raw octets, no LF yet: certainly too long?
        (One octet of slack: a leading dot may still be removed.)"""
        if self.binary or length <= self.max_line:
            return False
        self.refuse(REPLY_LINE_TOO_LONG)
        return True

    def _first_problem(self, region: bytes, bare: bool, long: bool, big: bool,
                       loop_at: int) -> Reply:
        found: list[tuple[int, int, Reply]] = []
        if long:
            offset = 0
            for segment in region.split(b"\n"):
                if len(segment) >= self.max_line:
                    found.append((offset, 0, REPLY_LINE_TOO_LONG))
                    break
                offset += len(segment) + 1
        if bare:
            match = _BARE_EOL.search(region)
            assert match is not None
            found.append((match.start(), 1, REPLY_BARE_LINE_ENDING))
        if big:
            found.append((self.max_size - self.size, 2, REPLY_MESSAGE_TOO_BIG))
        if loop_at >= 0:
            found.append((loop_at, 3, REPLY_LOOP))
        return min(found)[2]

    def _count_received(self, region: bytes) -> int:
        """RFC 5321 6.3: count trace fields in the header section; the offset of the
        field that goes over the limit, or -1."""
        if region.startswith(b"\r\n"):
            self.in_headers = False
            self._keep_header(b"", True)
            return -1
        end = region.find(b"\r\n\r\n")
        head = region if end < 0 else region[: end + 2]
        if end >= 0:
            self.in_headers = False
        self._keep_header(head, end >= 0)
        lowered = b"\r\n" + head.lower()
        count = lowered.count(b"\r\nreceived:")
        if self.received + count <= self.max_received:
            self.received += count
            return -1
        offset = -2
        for _ in range(self.max_received - self.received + 1):
            offset = lowered.find(b"\r\nreceived:", offset + 2)
        return max(offset, 0)


    def _keep_header(self, head: bytes, ended: bool) -> None:
        if self.header_state != "open":
            return
        if self.header_size + len(head) > MAX_HEADER_BLOCK:
            self.header_state = "truncated"
            return
        if head:
            self.header.append(head)
            self.header_size += len(head)
        if ended:
            self.header_state = "complete"


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
        data = self.carry + piece if self.carry else piece
        if check.binary:
            # No line rules in the body (RFC 3030 3), but the header section is still
            # lines: it is scanned in whole lines, like text, so that a field split
            # across two chunks is seen whole.
            if not check.in_headers or len(data) > MAX_HEADER_BLOCK:
                self.carry = b""
                return check.scan(data)
            cut = data.rfind(b"\n")
            self.carry = data[cut + 1 :]
            return check.scan(data[: cut + 1]) if cut >= 0 else b""
        cut = data.rfind(b"\n")
        if cut < 0:
            self.carry = b"" if check.long_tail(len(data)) else data
            return b""
        self.carry = data[cut + 1 :]
        content = check.scan(data[: cut + 1])  # before the rest: it comes first
        if self.carry and check.long_tail(len(self.carry)):
            self.carry = b""
        return content

    def finish(self) -> bytes:
        """The message ended (BDAT LAST): check and return the unterminated rest."""
        carry, self.carry = self.carry, b""
        return self.check.scan(carry) if carry else b""
