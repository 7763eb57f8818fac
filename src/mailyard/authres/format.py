"""Our Authentication-Results field (RFC 8601), built from the results of the checks.

One field per message, carrying every check we made (2.1: one field per
authserv-id is recommended), each result on its own folded line.  The helpers build
the registered forms:

* ``spf`` (RFC 7208 9.1 / RFC 8601 2.7.2): ``smtp.mailfrom``, ``smtp.helo``;
* ``dkim`` (RFC 6376 / RFC 6008): one result per signature, ``header.d``, ``header.s``
  and ``header.b``, the shortest prefix of ``b=`` (at least 8 characters) that tells the
  message's signatures apart (RFC 6008 2);
* ``dmarc`` (RFC 7489 11.2): ``header.from``, with the published policy and the
  disposition in a comment, as receivers commonly show them;
* ``arc`` (RFC 8617 10.2): ``header.oldest-pass``, ``smtp.remote-ip``.

Values are written as RFC 8601 ``pvalue`` allows: a token or an
``[local-part]@domain`` as is, anything else as a quoted string, so no value can
break the field.  Results and names are reduced to keyword characters for the same
reason.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from mailyard.authres.model import AuthResults, MethodResult, ResultProperty

__all__ = [
    "arc_result",
    "dkim_results",
    "dmarc_result",
    "format_field",
    "format_value",
    "spf_result",
]

FIELD_NAME = "Authentication-Results"
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")  # RFC 2045 token
_ATOM = r"[!#$%&'*+\-/=?^_`{|}~0-9A-Za-z]+"
_ADDRESS = re.compile(rf"(?:{_ATOM}(?:\.{_ATOM})*)?@[0-9A-Za-z](?:[0-9A-Za-z\-.]*[0-9A-Za-z])?")
_KEYWORD_JUNK = re.compile(r"[^0-9A-Za-z\-]")
_COMMENT_JUNK = re.compile(r"[()\\\x00-\x1f\x7f]")
HEADER_B_MIN = 8


@functools.lru_cache(maxsize=512)  # method, result and property names: a small vocabulary
def _keyword(text: str) -> str:
    return _KEYWORD_JUNK.sub("", text) or "unknown"


def _quoted(text: str) -> str:
    clean = "".join(c for c in text if c >= " " and c != "\x7f")
    return '"' + clean.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _pvalue(text: str) -> str:
    if _TOKEN.fullmatch(text) or _ADDRESS.fullmatch(text):
        return text
    return _quoted(text)


def _value(text: str) -> str:
    return text if _TOKEN.fullmatch(text) else _quoted(text)


def _resinfo(result: MethodResult) -> str:
    method = _keyword(result.method)
    if result.version:
        method += "/" + _keyword(result.version)
    parts = [f"{method}={_keyword(result.result)}"]
    if result.comment:
        parts.append(f"({_COMMENT_JUNK.sub('', result.comment)})")
    if result.reason:
        parts.append(f"reason={_quoted(result.reason)}")
    parts.extend(f"{_keyword(p.ptype)}.{_keyword(p.name)}={_pvalue(p.value)}"
                 for p in result.properties)
    return " ".join(parts)


def format_value(results: AuthResults) -> str:
    """The field body, folded: ``" id;\\r\\n\\tspf=pass ...;\\r\\n\\tdkim=..."``."""
    head = " " + _value(results.authserv_id)
    if results.version:
        head += " " + _keyword(results.version)
    if not results.results:
        return head + "; none"
    return head + ";" + ";".join("\r\n\t" + _resinfo(r) for r in results.results)


def format_field(results: AuthResults) -> bytes:
    """The whole field with its CRLF, ready to put in front of a message."""
    return f"{FIELD_NAME}:{format_value(results)}\r\n".encode("ascii", "replace")


def spf_result(result: str, *, mail_from: str = "", helo: str = "",
               comment: str = "") -> MethodResult:
    """RFC 7208 9.1: ``smtp.mailfrom`` is the checked MAIL FROM (its domain, or the
    ``postmaster@HELO`` of an empty path), ``smtp.helo`` the HELO identity."""
    props = []
    if mail_from:
        props.append(ResultProperty("smtp", "mailfrom", mail_from))
    if helo:
        props.append(ResultProperty("smtp", "helo", helo))
    return MethodResult("spf", result, tuple(props), comment=comment)


def _unique_prefixes(signatures: Sequence[str]) -> list[str]:
    """RFC 6008 2: enough of each ``b=`` value (8 characters or more) to tell it apart
    from the others."""
    clean = ["".join(s.split()) for s in signatures]
    if len(clean) == 1:  # nothing to tell it apart from
        return [clean[0][:HEADER_B_MIN]]
    out = []
    for i, sig in enumerate(clean):
        length = HEADER_B_MIN
        while length < len(sig) and any(
                j != i and other[:length] == sig[:length] for j, other in enumerate(clean)):
            length += 1
        out.append(sig[:length])
    return out


def dkim_results(signatures: Sequence[tuple[str, str, str, str]]) -> list[MethodResult]:
    """One ``dkim`` result per signature, given ``(result, d, s, b)`` per signature (``b``
    may be empty, then ``header.b`` is left out)."""
    prefixes = _unique_prefixes([b for _, _, _, b in signatures])
    results = []
    for (result, domain, selector, _), prefix in zip(signatures, prefixes, strict=True):
        props = [ResultProperty("header", "d", domain)] if domain else []
        if selector:
            props.append(ResultProperty("header", "s", selector))
        if prefix:
            props.append(ResultProperty("header", "b", prefix))
        results.append(MethodResult("dkim", result, tuple(props)))
    return results


def dmarc_result(result: str, header_from: str, *, policy: str = "",
                 disposition: str = "") -> MethodResult:
    """RFC 7489 11.2: ``header.from`` is the Author Domain; the comment says which
    policy the domain published and what was done (``p=reject dis=quarantine``)."""
    comment = " ".join(part for part in (f"p={policy}" if policy else "",
                                         f"dis={disposition}" if disposition else "") if part)
    props = (ResultProperty("header", "from", header_from),) if header_from else ()
    return MethodResult("dmarc", result, props, comment=comment)


def arc_result(result: str, *, oldest_pass: int | None = None, remote_ip: str = "",
               comment: str = "") -> MethodResult:
    """RFC 8617 10.2: the chain validation status, with the oldest instance that
    still passes and the address the chain was received from."""
    props = []
    if oldest_pass is not None:
        props.append(ResultProperty("header", "oldest-pass", str(oldest_pass)))
    if remote_ip:
        props.append(ResultProperty("smtp", "remote-ip", remote_ip))
    return MethodResult("arc", result, tuple(props), comment=comment)
