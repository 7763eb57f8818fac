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
    "Spec",
    "arc_result",
    "arc_spec",
    "dkim_results",
    "dkim_specs",
    "dmarc_result",
    "dmarc_spec",
    "field_of",
    "format_field",
    "format_value",
    "method_result",
    "resinfo_text",
    "spf_result",
    "spf_spec",
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


@functools.lru_cache(maxsize=512)
def _method_and_result(method: str, version: str, result: str) -> str:
    text = _keyword(method)
    if version:
        text += "/" + _keyword(version)
    return text + "=" + _keyword(result)


@functools.lru_cache(maxsize=512)
def _property_name(ptype: str, name: str) -> str:
    return f"{_keyword(ptype)}.{_keyword(name)}="


def _quoted(text: str) -> str:
    clean = "".join(c for c in text if c >= " " and c != "\x7f")
    return '"' + clean.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _pvalue(text: str) -> str:
    if _TOKEN.fullmatch(text) or _ADDRESS.fullmatch(text):
        return text
    return _quoted(text)


def _value(text: str) -> str:
    return text if _TOKEN.fullmatch(text) else _quoted(text)


# One resinfo as plain values: (method, result, ((ptype, property, value), ...),
# comment).  The helpers below make these once; a MethodResult or the text is then
# built from them, so both forms always say the same.
Spec = tuple[str, str, tuple[tuple[str, str, str], ...], str]


def resinfo_text(method: str, result: str, properties: Sequence[tuple[str, str, str]] = (),
                 comment: str = "", *, reason: str = "", version: str = "") -> str:
    """One ``resinfo`` as it goes in the field: ``dkim=pass header.d=example.com``."""
    text = _method_and_result(method, version, result)
    if comment:
        text += f" ({_COMMENT_JUNK.sub('', comment)})"
    if reason:
        text += f" reason={_quoted(reason)}"
    for ptype, name, value in properties:
        text += " " + _property_name(ptype, name) + _pvalue(value)
    return text


def _resinfo(result: MethodResult) -> str:
    return resinfo_text(result.method, result.result,
                        [(p.ptype, p.name, p.value) for p in result.properties],
                        result.comment, reason=result.reason, version=result.version)


def method_result(spec: Spec) -> MethodResult:
    """The MethodResult of a spec."""
    method, result, properties, comment = spec
    return MethodResult(method, result, tuple(ResultProperty(*p) for p in properties),
                        comment=comment)


def field_of(authserv_id: str, resinfos: Sequence[str], version: str = "") -> bytes:
    """The whole field with its CRLF, given each result's :func:`resinfo_text`."""
    return f"{FIELD_NAME}:{_folded(authserv_id, resinfos, version)}\r\n".encode(
        "ascii", "replace")


def _folded(authserv_id: str, resinfos: Sequence[str], version: str) -> str:
    head = " " + _value(authserv_id)
    if version:
        head += " " + _keyword(version)
    if not resinfos:
        return head + "; none"
    return head + ";\r\n\t" + ";\r\n\t".join(resinfos)


def format_value(results: AuthResults) -> str:
    """The field body, folded: ``" id;\\r\\n\\tspf=pass ...;\\r\\n\\tdkim=..."``."""
    return _folded(results.authserv_id, [_resinfo(r) for r in results.results],
                   results.version)


def format_field(results: AuthResults) -> bytes:
    """The whole field with its CRLF, ready to put in front of a message."""
    return f"{FIELD_NAME}:{format_value(results)}\r\n".encode("ascii", "replace")


def spf_spec(result: str, *, mail_from: str = "", helo: str = "", comment: str = "") -> Spec:
    """RFC 7208 9.1: ``smtp.mailfrom`` is the checked MAIL FROM (its domain, or the
    ``postmaster@HELO`` of an empty path), ``smtp.helo`` the HELO identity."""
    props: tuple[tuple[str, str, str], ...] = ()
    if mail_from:
        props = (("smtp", "mailfrom", mail_from),)
    if helo:
        props += (("smtp", "helo", helo),)
    return "spf", result, props, comment


def spf_result(result: str, *, mail_from: str = "", helo: str = "",
               comment: str = "") -> MethodResult:
    """:func:`spf_spec` as a MethodResult."""
    return method_result(spf_spec(result, mail_from=mail_from, helo=helo, comment=comment))


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


def dkim_specs(signatures: Sequence[tuple[str, str, str, str]]) -> list[Spec]:
    """One ``dkim`` result per signature, given ``(result, d, s, b)`` per signature (``b``
    may be empty, then ``header.b`` is left out)."""
    prefixes = _unique_prefixes([b for _, _, _, b in signatures])
    specs: list[Spec] = []
    for (result, domain, selector, _), prefix in zip(signatures, prefixes, strict=True):
        props: tuple[tuple[str, str, str], ...] = (("header", "d", domain),) if domain else ()
        if selector:
            props += (("header", "s", selector),)
        if prefix:
            props += (("header", "b", prefix),)
        specs.append(("dkim", result, props, ""))
    return specs


def dkim_results(signatures: Sequence[tuple[str, str, str, str]]) -> list[MethodResult]:
    """:func:`dkim_specs` as MethodResults."""
    return [method_result(spec) for spec in dkim_specs(signatures)]


def dmarc_spec(result: str, header_from: str, *, policy: str = "",
               disposition: str = "") -> Spec:
    """RFC 7489 11.2: ``header.from`` is the Author Domain; the comment says which
    policy the domain published and what was done (``p=reject dis=quarantine``)."""
    comment = " ".join(part for part in (f"p={policy}" if policy else "",
                                         f"dis={disposition}" if disposition else "") if part)
    props = (("header", "from", header_from),) if header_from else ()
    return "dmarc", result, props, comment


def dmarc_result(result: str, header_from: str, *, policy: str = "",
                 disposition: str = "") -> MethodResult:
    """:func:`dmarc_spec` as a MethodResult."""
    return method_result(dmarc_spec(result, header_from, policy=policy,
                                     disposition=disposition))


def arc_spec(result: str, *, oldest_pass: int | None = None, remote_ip: str = "",
             comment: str = "") -> Spec:
    """RFC 8617 10.2: the chain validation status, with the oldest instance that
    still passes and the address the chain was received from."""
    props: tuple[tuple[str, str, str], ...] = ()
    if oldest_pass is not None:
        props = (("header", "oldest-pass", str(oldest_pass)),)
    if remote_ip:
        props += (("smtp", "remote-ip", remote_ip),)
    return "arc", result, props, comment


def arc_result(result: str, *, oldest_pass: int | None = None, remote_ip: str = "",
               comment: str = "") -> MethodResult:
    """:func:`arc_spec` as a MethodResult."""
    return method_result(arc_spec(result, oldest_pass=oldest_pass, remote_ip=remote_ip,
                                   comment=comment))
