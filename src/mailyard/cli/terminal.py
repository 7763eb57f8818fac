"""Showing untrusted text on the operator's terminal.

Envelope fields (HELO, addresses, the submitter's name), remote replies and message
headers come from the network.  Printed raw, an escape sequence among them could
rewrite the screen or the window title, and a CR could hide the rest of a line.
:func:`printable` is used for every such value the CLI prints.
"""

from __future__ import annotations

import re

# C0 controls except TAB, DEL, the C1 controls, and the Unicode line separators.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """``text`` with every control character shown as a visible ``\\xNN`` escape."""
    s = text if isinstance(text, str) else str(text)
    # Lone surrogates (undecodable bytes kept by surrogateescape) cannot be printed.
    s = s.encode("utf-8", "backslashreplace").decode("utf-8")
    return _CONTROL.sub(_escape, s)
