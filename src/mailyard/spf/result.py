"""What an SPF evaluation returns: a result keyword (RFC 7208 2.6) and the facts a
receiver logs or puts in Authentication-Results (RFC 8601 2.7.2).

Every outcome is a value: a ``fail`` or a ``temperror`` is not an exception.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class SpfStatus(enum.StrEnum):
    """RFC 7208 2.6: the seven results of check_host()."""

    PASS = "pass"
    FAIL = "fail"
    SOFTFAIL = "softfail"
    NEUTRAL = "neutral"
    NONE = "none"
    PERMERROR = "permerror"
    TEMPERROR = "temperror"


class Identity(enum.StrEnum):
    """RFC 7208 2.3 and 2.4: the identity checked (the ``smtp.mailfrom`` or
    ``smtp.helo`` property of Authentication-Results)."""

    MAILFROM = "mailfrom"
    HELO = "helo"


#: RFC 7208 4.6.2: qualifier characters to results ("+" is the default).
QUALIFIERS = {"+": SpfStatus.PASS, "-": SpfStatus.FAIL, "~": SpfStatus.SOFTFAIL,
              "?": SpfStatus.NEUTRAL}


@dataclass(frozen=True)
class SpfResult:
    """One check_host() outcome.

    ``domain`` is the domain whose policy was asked (the identity's domain);
    ``mechanism`` the directive that matched at the top level (``"include:a.example"``,
    ``"-all"``), ``"redirect=..."`` chains included, or ``""`` when none did (the
    ``neutral`` default, ``none``, errors).  ``explanation`` is the domain owner's
    ``exp=`` text for a ``fail`` when they published one (RFC 7208 6.2), else ``""``.
    ``problem`` says what went wrong for ``permerror`` and ``temperror``.
    ``lookups`` and ``void_lookups`` count the terms that caused DNS queries and the
    queries that found nothing (RFC 7208 4.6.4).
    """

    status: SpfStatus
    identity: Identity
    ip: str
    sender: str
    domain: str
    mechanism: str = ""
    explanation: str = ""
    problem: str = ""
    lookups: int = 0
    void_lookups: int = 0

    @property
    def comment(self) -> str:
        """One line for logs and the CLI, in the style of RFC 7208 9.1's comments."""
        who = f"{self.domain}" if self.domain else "the sender"
        if self.status is SpfStatus.PASS:
            text = f"{who} designates {self.ip} as permitted sender"
        elif self.status is SpfStatus.FAIL:
            text = f"{who} does not designate {self.ip} as permitted sender"
        elif self.status is SpfStatus.SOFTFAIL:
            text = f"{who} discourages use of {self.ip} as sender"
        elif self.status is SpfStatus.NEUTRAL:
            text = f"{self.ip} is neither permitted nor denied by {who}"
        elif self.status is SpfStatus.NONE:
            text = f"{who} publishes no SPF record" if not self.problem else self.problem
        elif self.status is SpfStatus.PERMERROR:
            text = f"permanent error in the SPF policy of {who}: {self.problem}"
        else:
            text = f"temporary error evaluating the SPF policy of {who}: {self.problem}"
        if self.mechanism:
            text += f" (mechanism {self.mechanism})"
        return text

    def resinfo(self) -> str:
        """This result as one ``resinfo`` of an Authentication-Results field (RFC 8601
        2.7.2): ``spf=pass smtp.mailfrom=user@example.com`` (``smtp.helo=NAME`` for
        the HELO identity)."""
        if self.identity is Identity.HELO:
            return f"spf={self.status} smtp.helo={_pvalue(self.domain)}"
        return f"spf={self.status} smtp.mailfrom={_pvalue(self.sender)}"

    def to_dict(self) -> dict[str, object]:
        return {
            "result": str(self.status),
            "identity": str(self.identity),
            "ip": self.ip,
            "sender": self.sender,
            "domain": self.domain,
            "mechanism": self.mechanism,
            "explanation": self.explanation,
            "problem": self.problem,
            "comment": self.comment,
            "lookups": self.lookups,
            "void_lookups": self.void_lookups,
        }


_TSPECIALS = set('()<>@,;:\\"/[]?= ')


def _pvalue(text: str) -> str:
    """RFC 8601 2.2 pvalue: an address or domain as is, else a quoted string."""
    local, _, domain = text.rpartition("@")
    if all(c not in _TSPECIALS and " " < c < "\x7f" for c in local + domain):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

