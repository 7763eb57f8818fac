"""ENVELOPE, BODY and BODYSTRUCTURE as the octets a FETCH response carries
(RFC 9051 7.5.2, grammar in 9), from the cached structures of
:mod:`mailyard.message.structure`.

Why the wire form is cached too: ``FETCH 1:* ENVELOPE`` or ``BODYSTRUCTURE`` over a
large folder (what a client does when it first sees it) would otherwise decode every
stored structure and encode it again, hundreds of small strings per message.  The
index keeps the three encodings made here next to the structures, so such a FETCH
copies stored octets.  The encoding of a string depends on whether the session may
get 8-bit text in quoted strings (UTF8=ACCEPT / IMAP4rev2, RFC 9051 4.3): the octets
kept are those for a session that may not, and :attr:`Wire.utf8_differs` says when a
session that may would get other octets (then the structure is encoded for it).

The structures' shapes: the addresses of an address list and the parts of a
multipart follow each other with no space between (RFC 9051 9 ``env-from = "("
1*address ")"``, ``body-type-mpart = 1*body SP media-subtype``); BODY is
BODYSTRUCTURE without extension data, so one cached structure serves both.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailyard.proto.imap.responses import Joined, Value, encode_value

__all__ = ["Wire", "encode", "imap_body", "imap_envelope"]


def imap_envelope(env: Value) -> Value:
    """A cached ENVELOPE as the response writes it: the addresses of an address list
    with no space between."""
    if not isinstance(env, list) or len(env) != 10:
        return env
    out: list[Value] = list(env)
    for i in range(2, 8):
        addresses = env[i]
        if isinstance(addresses, list):
            out[i] = [Joined(addresses)]
    return out


def imap_body(bs: Value, extended: bool) -> Value:
    """A cached BODYSTRUCTURE as the response writes it, without extension data
    unless ``extended`` (that is BODY, RFC 9051 7.5.2).  A part keeps its seven basic
    fields, a text part its line count, a message/rfc822 part its envelope, body and
    lines."""
    if not isinstance(bs, list) or not bs:
        return bs
    if isinstance(bs[0], list):  # multipart: the parts, then the subtype, extensions
        n = 0
        while n < len(bs) and isinstance(bs[n], list):
            n += 1
        parts = Joined([imap_body(p, extended) for p in bs[:n]])
        return [parts, *bs[n:]] if extended else [parts, *bs[n:n + 1]]
    if bs[0] == b"MESSAGE" and len(bs) >= 10 and isinstance(bs[7], list):
        inner: list[Value] = [*bs[:7], imap_envelope(bs[7]), imap_body(bs[8], extended),
                              bs[9]]
        if extended:
            inner += bs[10:]
        return inner
    if extended:
        return bs
    return bs[:8] if bs[0] == b"TEXT" else bs[:7]


@dataclass(frozen=True, slots=True)
class Wire:
    envelope: bytes
    bodystructure: bytes
    body: bytes
    utf8_differs: bool  # a UTF8=ACCEPT session gets other octets for one of them


def encode(envelope: Value, bodystructure: Value) -> Wire:
    """The three items of one message as a session without UTF8=ACCEPT gets them."""
    values = (imap_envelope(envelope), imap_body(bodystructure, extended=True),
              imap_body(bodystructure, extended=False))
    plain = [encode_value(v) for v in values]
    differs = any(not p.isascii() for p in plain) and \
        any(encode_value(v, True) != p for v, p in zip(values, plain, strict=True))
    return Wire(plain[0], plain[1], plain[2], differs)
