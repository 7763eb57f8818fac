"""The ARC Set Mailyard adds when it forwards a message (an alias to an external
address, RFC 8617 5.1).

A forward keeps the original From, so the next hop's DMARC check depends on the
original DKIM signature surviving, and SPF no longer aligns (SRS changes the envelope
sender to our domain).  The ARC Set records, under the forwarding domain's key, what
we found when the message reached us: the ARC-Authentication-Results carry the
results of our own Authentication-Results field (the one with our authserv-id, if
ingest added one) and the ``arc`` result of the chain as it arrived.
"""

from __future__ import annotations

import time

from mailyard.arc.chain import ArcSealer, validate_message
from mailyard.authres.format import arc_result, format_value
from mailyard.authres.model import AuthResults, MethodResult
from mailyard.authres.parse import ParseError, claims_authserv_id, parse_value
from mailyard.dkim.canon import BodyHasher, Canon, split_header
from mailyard.dns.api import Resolver

__all__ = ["forward_seal", "our_results"]

_AR = b"authentication-results"


def our_results(header: bytes, authserv_id: str) -> tuple[MethodResult, ...]:
    """The results of the topmost Authentication-Results field with our authserv-id
    (RFC 8601 5: ours are the only ones to trust); none when there is none."""
    for field in split_header(header):
        if field.name != _AR:
            continue
        value = field.raw.split(b":", 1)[1].decode("utf-8", "replace")
        if not claims_authserv_id(value, (authserv_id,)):
            continue
        parsed = parse_value(value)
        return () if isinstance(parsed, ParseError) else parsed.results
    return ()


async def forward_seal(message: bytes, sealer: ArcSealer, resolver: Resolver,
                       now: float | None = None) -> bytes:
    """The fields of our ARC Set for ``message`` (CRLF, whole), to put on top of it;
    ``b""`` when the chain it arrived with must not be sealed (it fails)."""
    now = time.time() if now is None else now
    end = message.find(b"\r\n\r\n")
    header, body = (message, b"") if end < 0 else (message[:end + 2], message[end + 4:])
    chain = await validate_message(message, resolver, now)
    results = [r for r in our_results(header, sealer.authserv_id) if r.method != "arc"]
    results.append(arc_result(chain.status.value))
    value = format_value(AuthResults(sealer.authserv_id, tuple(results)))
    auth_results = value.partition(";")[2].lstrip("\r\n\t")
    hasher = BodyHasher(Canon.RELAXED)
    hasher.update(body)
    return sealer.seal(header, hasher.digest(), chain, auth_results, now)
