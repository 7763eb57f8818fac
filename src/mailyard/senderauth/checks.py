"""The inbound checks of one message and what they decide.

:class:`MessageChecks` is made from the header section as received, fed the body in
pieces (each DKIM signature's body hash and the newest ARC-Message-Signature's are
computed in the same pass) and finished with the resolver: the DNS lookups (DKIM keys,
ARC keys, the DMARC record) go through the injected, caching resolver; a timeout is a
``temperror`` result, never an exception.  The SPF result was found by smtpd at MAIL
FROM and comes in as an :class:`SpfInput`.

The :class:`Verdict` holds every result; :meth:`Verdict.field` is our one
Authentication-Results field (RFC 8601) and :meth:`Verdict.action` the DMARC action
under ``[dmarc]`` (:func:`mailyard.dmarc.action.dmarc_action`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property

from mailyard.arc.chain import ArcResult, ArcStatus, ArcValidation
from mailyard.authres.format import (
    Spec,
    arc_spec,
    dkim_specs,
    field_of,
    method_result,
    resinfo_text,
    spf_spec,
)
from mailyard.authres.model import AuthResults, MethodResult
from mailyard.config import DmarcConfig
from mailyard.dkim.canon import split_header
from mailyard.dkim.result import DkimResult, DkimStatus
from mailyard.dkim.tags import strip_fws
from mailyard.dkim.verify import Verification, VerifyPolicy
from mailyard.dmarc.action import ActionKind, DmarcAction, authres_spec, dmarc_action
from mailyard.dmarc.evaluate import (
    DkimOutcome,
    DmarcResult,
    DmarcStatus,
    Sampler,
    SpfOutcome,
    evaluate_message,
    random_percent,
)
from mailyard.dmarc.orgdomain import PublicSuffixes
from mailyard.dns.api import Resolver

__all__ = ["MessageChecks", "SpfInput", "Verdict", "check_message"]

DEFAULT_POLICY = VerifyPolicy()


@dataclass(frozen=True)
class SpfInput:
    """The SPF result smtpd found (RFC 7208 2.6 keyword) and for what: ``identity``
    "mailfrom" (``sender`` the MAIL FROM address) or "helo" (a null reverse-path:
    ``domain`` the HELO name); ``domain`` is the identity's domain, which DMARC
    aligns (RFC 7489 3.1.2)."""

    result: str
    identity: str
    sender: str
    domain: str

    def to_dict(self) -> dict[str, str]:
        return {"result": self.result, "identity": self.identity, "sender": self.sender,
                "domain": self.domain}

    def entry(self) -> MethodResult:
        return method_result(self.spec())

    def spec(self) -> Spec:
        if self.identity == "helo":
            return spf_spec(self.result, helo=self.domain)
        return spf_spec(self.result, mail_from=self.sender)


@dataclass(frozen=True)
class Verdict:
    """Everything the checks found about one message."""

    dkim: tuple[DkimResult, ...]
    signatures: tuple[str, ...]  # each DKIM signature's b= value, for header.b
    arc: ArcResult
    spf: SpfInput | None = None
    dmarc: DmarcResult | None = None  # None: DMARC not checked ([dmarc] enabled = false)
    remote_ip: str = ""
    dmarc_config: DmarcConfig = field(default_factory=DmarcConfig)
    spf_helo: SpfInput | None = None  # the HELO identity, when checked separately

    def _specs(self) -> list[Spec]:
        specs: list[Spec] = []
        if self.spf is not None:
            specs.append(self.spf.spec())
        if self.spf_helo is not None:
            specs.append(self.spf_helo.spec())
        specs += dkim_specs([(str(r.status), r.domain, r.selector, b)
                             for r, b in zip(self.dkim, self.signatures, strict=True)])
        if not self.dkim:
            specs.append(("dkim", "none", (), ""))
        if self.dmarc is not None:
            specs.append(authres_spec(self.dmarc))
        specs.append(arc_spec(str(self.arc.status), remote_ip=self.remote_ip))
        return specs

    def results(self, authserv_id: str) -> AuthResults:
        return AuthResults(authserv_id, tuple(method_result(s) for s in self._specs()))

    def field(self, authserv_id: str) -> bytes:
        """Our Authentication-Results field, with its CRLF: :meth:`results` formatted
        (``format_field``), written straight from the results' values."""
        return field_of(authserv_id, [resinfo_text(*spec) for spec in self._specs()])

    def action(self) -> DmarcAction:
        return self._action

    @cached_property
    def _action(self) -> DmarcAction:  # asked for the field, the log and the reports
        if self.dmarc is None:
            return DmarcAction(ActionKind.ACCEPT)
        return dmarc_action(self.dmarc, self.dmarc_config)

    def to_dict(self, authserv_id: str) -> dict[str, object]:
        return {
            "spf": None if self.spf is None else self.spf.to_dict(),
            "spf_helo": None if self.spf_helo is None else self.spf_helo.to_dict(),
            "dkim": [r.to_dict() for r in self.dkim],
            "arc": self.arc.to_dict(),
            "dmarc": None if self.dmarc is None else {
                "result": str(self.dmarc.status), "disposition": str(self.dmarc.disposition),
                "domain": self.dmarc.author_domain, "reason": self.dmarc.reason},
            "action": str(self.action().kind),
            "authentication_results": self.field(authserv_id).decode("ascii").rstrip("\r\n"),
        }


def _dsb(tags: dict[str, bytes] | None) -> tuple[str, str, str]:
    """``d=``, ``s=`` and ``b=`` of a DKIM-Signature field's tag list ("" where
    unreadable: ``tags`` None)."""
    if tags is None:
        return "", "", ""
    get = tags.get
    return (strip_fws(get("d", b"")).decode("ascii", "replace").lower(),
            strip_fws(get("s", b"")).decode("ascii", "replace"),
            strip_fws(get("b", b"")).decode("ascii", "replace"))


class MessageChecks:
    """DKIM, ARC and DMARC of one message, its body hashed as it streams by."""

    def __init__(self, header: bytes, policy: VerifyPolicy = DEFAULT_POLICY, *,
                 dmarc: DmarcConfig | None = None, remote_ip: str = "") -> None:
        fields = split_header(header)  # once, for DKIM, ARC and DMARC
        self.dkim = Verification(header, policy, fields=fields)
        self.arc = ArcValidation(header, fields=fields)
        self.dmarc = dmarc
        self.remote_ip = remote_ip
        self._tags = [_dsb(tags) for tags in self.dkim.candidate_tags]
        self._signatures = tuple(b for _, _, b in self._tags)
        self._from = [f.raw.partition(b":")[2].decode("utf-8", "replace")
                      for f in fields if f.name == b"from"]

    def update(self, body: bytes) -> None:
        self.dkim.update(body)
        self.arc.update(body)

    async def finish(self, resolver: Resolver, spf: SpfInput | None,
                     suffixes: PublicSuffixes, *, now: float | None = None,
                     sample: Sampler = random_percent,
                     spf_helo: SpfInput | None = None) -> Verdict:
        now = time.time() if now is None else now
        dkim = tuple(await self.dkim.finish(resolver, now))
        arc = await self.arc.finish(resolver, now)
        dmarc = None
        if self.dmarc is not None and self.dmarc.enabled:
            outcomes = [DkimOutcome(str(r.status), r.domain, r.selector, b)
                        for r, b in zip(dkim, self._signatures, strict=True)]
            spf_outcome = None if spf is None else SpfOutcome(spf.result, spf.domain)
            dmarc = await evaluate_message(self._from, spf_outcome, outcomes, resolver,
                                           suffixes, sample)
        return Verdict(dkim, self._signatures, arc, spf, dmarc, self.remote_ip,
                       self.dmarc or DmarcConfig(), spf_helo)


    def timed_out(self, spf: SpfInput | None, spf_helo: SpfInput | None = None) -> Verdict:
        """The verdict when the lookups took longer than the time allowed: every
        signature and DMARC ``temperror`` (so no DMARC action), ARC ``fail`` (RFC 8617
        has no temporary result) when there is a chain."""
        reason = "DNS lookups took too long"
        dkim = tuple(DkimResult(DkimStatus.TEMPERROR, d, s, reason) for d, s, _ in self._tags)
        arc = ArcResult(ArcStatus.NONE)
        if any(f.name == b"arc-seal" for f in self.dkim.fields):
            arc = ArcResult(ArcStatus.FAIL, reason=reason)
        dmarc = None
        if self.dmarc is not None and self.dmarc.enabled:
            dmarc = DmarcResult(DmarcStatus.TEMPERROR, reason=reason)
        return Verdict(dkim, self._signatures, arc, spf, dmarc, self.remote_ip,
                       self.dmarc or DmarcConfig(), spf_helo)


def split_message(message: bytes) -> tuple[bytes, bytes]:
    """A CRLF message's header section (with the CRLF of its last field) and body."""
    if message.startswith(b"\r\n"):
        return b"", message[2:]
    end = message.find(b"\r\n\r\n")
    return (message, b"") if end < 0 else (message[:end + 2], message[end + 4:])


async def check_message(message: bytes, resolver: Resolver, suffixes: PublicSuffixes, *,
                        spf: SpfInput | None = None, dmarc: DmarcConfig | None = None,
                        policy: VerifyPolicy = DEFAULT_POLICY, remote_ip: str = "",
                        now: float | None = None,
                        sample: Sampler = random_percent) -> Verdict:
    """The checks of a whole message (CRLF line ends), as ingest makes them (``dmarc``
    None: no DMARC)."""
    header, body = split_message(message)
    checks = MessageChecks(header, policy, dmarc=dmarc, remote_ip=remote_ip)
    checks.update(body)
    return await checks.finish(resolver, spf, suffixes, now=now, sample=sample)
