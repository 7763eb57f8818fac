"""What smtpd looks at in a received message's header section, read in one pass.

The SMTP core hands over the header section once per message (``HeaderSection``, at
most ``content.MAX_HEADER_BLOCK`` octets); :func:`inspect_header` reads the few fields
the end-of-data checks need and ignores the rest:

* ``Delivered-To:`` (RFC 9228) addresses, as directory keys, for the loop check;
* the addresses in ``From:`` (RFC 5322 3.6.2), for the sender ownership check;
* whether ``Date:`` and ``Message-ID:`` are present (RFC 5322 3.6), which a submission
  server adds when they are missing (RFC 6409 8.2, 8.3).

Field names are matched case-insensitively and folded values are unfolded (RFC 5322
2.2.3).  The checks are made on addresses, so the parse is deliberately conservative:
for ``From:`` every address-like token in the value counts, including one in a display
name, so a display name cannot carry an address the sender does not own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import getaddresses
from functools import cached_property

from mailyard.directory.addresses import address_key
from mailyard.message.headers import fold_field, format_date, make_message_id

__all__ = ["HeaderSummary", "inspect_header", "submission_fields"]

_WANTED = frozenset((b"delivered-to", b"from", b"date", b"message-id"))
# An addr-spec as it appears in a header value: no spaces, brackets, quotes or commas.
_ADDRESS_TOKEN = re.compile(r"""[^\s<>()\[\]",;:@\\]+@[^\s<>()\[\]",;:@\\]+""")


@dataclass(frozen=True)
class HeaderSummary:
    delivered_to: frozenset[str] = frozenset()  # address keys (lower-case)
    from_values: tuple[bytes, ...] = ()  # the From fields' unfolded values
    has_date: bool = False
    has_message_id: bool = False
    complete: bool = True  # False: the header section was longer than what was read

    @cached_property
    def from_addresses(self) -> tuple[str, ...]:
        """The addresses in ``From:``, as written; empty when there is no From.  Parsed
        when first asked for: only an authenticated submission's ownership check needs
        them, and mail from other servers is most of what a server receives."""
        return _from_addresses(self.from_values)


EMPTY = HeaderSummary()


def _fields(block: bytes) -> dict[bytes, list[bytes]]:
    """The wanted fields' unfolded values, by lower-case name."""
    found: dict[bytes, list[bytes]] = {}
    current: list[bytes] | None = None
    for line in block.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if current is not None:
                current[-1] += line
            continue
        current = None
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        name = name.rstrip(b" \t").lower()
        if name in _WANTED:
            current = found.setdefault(name, [])
            current.append(value)
    return found


def _from_addresses(values: tuple[bytes, ...]) -> tuple[str, ...]:
    out: dict[str, None] = {}
    for raw in values:
        text = raw.decode("utf-8", "replace").strip()
        for _name, addr in getaddresses([text]):
            if "@" in addr:
                out.setdefault(addr.strip(), None)
        for token in _ADDRESS_TOKEN.findall(text):
            out.setdefault(token.strip("."), None)
    return tuple(out)


def inspect_header(block: bytes, complete: bool = True) -> HeaderSummary:
    """Summarise a header section (CRLF line endings, as the SMTP core stores it)."""
    if not block:
        return HeaderSummary(complete=complete)
    fields = _fields(block)
    delivered = frozenset(
        address_key(v.decode("utf-8", "replace").strip().strip("<>"))
        for v in fields.get(b"delivered-to", ()))
    return HeaderSummary(
        delivered_to=delivered,
        from_values=tuple(fields.get(b"from", ())),
        has_date=b"date" in fields,
        has_message_id=b"message-id" in fields,
        complete=complete,
    )


def submission_fields(header: HeaderSummary, hostname: str, now: float) -> bytes:
    """``Date:`` and ``Message-ID:`` fields for a submitted message that lacks them
    (RFC 6409 8.2, 8.3; RFC 5322 3.6 requires Date, recommends Message-ID).  Nothing
    is added when the header section was too long to be read whole."""
    if not header.complete:
        return b""
    fields = ""
    if not header.has_date:
        fields += fold_field("Date", format_date(now))
    if not header.has_message_id:
        fields += fold_field("Message-ID", make_message_id(hostname, now))
    return fields.encode("utf-8")
