"""A message as a POP3 multi-line response, chunk by chunk (RFC 1939 3, 5 RETR, 7 TOP).

:class:`ContentEncoder` turns stored message bytes into wire bytes without ever
holding the whole message: line ends become CRLF (Maildir files may use bare LF),
lines starting with "." get one more "." (byte-stuffing), and TOP stops after the
header, the empty line and ``body_lines`` body lines.  A CRLF or a leading "." split
across two chunks is handled by carrying one flag each between calls.
"""

from __future__ import annotations

import re

_LINE_END = re.compile(rb"\r?\n")
_STUFF = re.compile(rb"\r\n\.")
TERMINATOR = b".\r\n"


class ContentEncoder:
    """One RETR (``body_lines=None``) or TOP response body."""

    __slots__ = ("_at_line_start", "_body_left", "_cr", "_in_header", "_line_empty", "done")

    def __init__(self, body_lines: int | None = None) -> None:
        self._body_left = body_lines  # None: no limit
        self._cr = False  # the previous chunk ended in CR, held back
        self._in_header = True  # TOP: the empty line after the header not yet seen
        self._line_empty = True  # TOP: nothing yet on the current output line
        self._at_line_start = True  # the last byte written ended a line
        self.done = False  # TOP has all it needs: further content is dropped

    def feed(self, chunk: bytes) -> bytes:
        """Wire bytes for the next piece of the stored message."""
        if self.done:
            return b""
        if self._cr:
            chunk = b"\r" + chunk
            self._cr = False
        if chunk.endswith(b"\r"):  # it may be the first half of CRLF
            chunk = chunk[:-1]
            self._cr = True
        return self._emit(_LINE_END.sub(b"\r\n", chunk))

    def finish(self) -> bytes:
        """The end of the response: what is held back, a last CRLF if the message did
        not end with one, and the terminating "." line."""
        tail = b""
        if self._cr and not self.done:
            self._cr = False
            tail = self._emit(b"\r")
        if not self._at_line_start:
            tail += b"\r\n"
        self.done = True
        return tail + TERMINATOR

    def _emit(self, text: bytes) -> bytes:
        if self._body_left is not None:
            text = self._cut(text)
        if not text:
            return b""
        out = _STUFF.sub(b"\r\n..", text)
        if self._at_line_start and text.startswith(b"."):
            out = b"." + out
        self._at_line_start = text.endswith(b"\r\n")
        return out

    def _cut(self, text: bytes) -> bytes:
        """TOP: keep the header, the empty line and ``_body_left`` more lines."""
        pos = 0
        while pos < len(text):
            end = text.find(b"\r\n", pos)
            if end < 0:
                if pos < len(text):
                    self._line_empty = False
                return text
            line_was_empty = self._line_empty and end == pos
            self._line_empty = True
            pos = end + 2
            if self._in_header:
                if line_was_empty:
                    self._in_header = False
                    if self._body_left == 0:
                        self.done = True
                        return text[:pos]
                continue
            assert self._body_left is not None
            self._body_left -= 1
            if self._body_left <= 0:
                self.done = True
                return text[:pos]
        return text
