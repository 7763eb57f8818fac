"""SPF at MAIL FROM on port 25: check the sender, then apply ``[spf]``.

:class:`SpfCheck` evaluates the MAIL FROM identity (for the null sender, the HELO
name's ``postmaster``, RFC 7208 2.4) through the server's caching resolver, within the
configured time budget, so a session waits on it without holding up the event loop
or, for long, the client.  :func:`refusal_for` is the pure table from a result to the
reply ``[spf]`` asks for (RFC 7208 8 with the codes of RFC 7372): None accepts.  The
result is returned either way, for the transaction's Authentication-Results.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from mailyard.config import SpfAction, SpfConfig
from mailyard.dns.api import Resolver
from mailyard.proto.smtp.replies import (
    REPLY_SPF_FAIL,
    REPLY_SPF_FAIL_TEMP,
    REPLY_SPF_PERMERROR,
    REPLY_SPF_TEMPERROR,
    Reply,
)
from mailyard.spf import (
    Identity,
    SpfLimits,
    SpfMemo,
    SpfResult,
    SpfStatus,
    check_helo,
    check_mail_from,
    client_address,
    remembered,
)

__all__ = ["SenderVerdict", "SpfCheck", "SpfVerdict", "refusal_for"]

_MAX_TEXT = 200
_MAX_ADDRESSES = 4096  # client addresses whose applies() answer is kept

# (result, action) -> reply template; anything else is accepted.
_REFUSALS: dict[tuple[SpfStatus, SpfAction], Reply] = {
    (SpfStatus.FAIL, SpfAction.REJECT): REPLY_SPF_FAIL,
    (SpfStatus.FAIL, SpfAction.DEFER): REPLY_SPF_FAIL_TEMP,
    (SpfStatus.SOFTFAIL, SpfAction.DEFER): REPLY_SPF_FAIL_TEMP,
    (SpfStatus.PERMERROR, SpfAction.REJECT): REPLY_SPF_PERMERROR,
    (SpfStatus.PERMERROR, SpfAction.DEFER): REPLY_SPF_TEMPERROR,
    (SpfStatus.TEMPERROR, SpfAction.REJECT): REPLY_SPF_TEMPERROR,  # never permanent
    (SpfStatus.TEMPERROR, SpfAction.DEFER): REPLY_SPF_TEMPERROR,
}


@dataclass(frozen=True)
class SpfVerdict:
    """The SPF result of the MAIL FROM identity (None: not checked), of the HELO
    identity (None: not checked separately), and the refusal they lead to (None: go
    on)."""

    result: SpfResult | None
    refusal: Reply | None = None
    helo_result: SpfResult | None = None


# What the policy answers at MAIL FROM: the verdict at once, or a coroutine to await.
SenderVerdict = SpfVerdict | Coroutine[Any, Any, SpfVerdict]


def _action(config: SpfConfig, status: SpfStatus) -> SpfAction:
    if status is SpfStatus.FAIL:
        return config.fail
    if status is SpfStatus.SOFTFAIL:
        return config.softfail
    if status is SpfStatus.PERMERROR:
        return config.permerror
    if status is SpfStatus.TEMPERROR:
        return config.temperror
    return SpfAction.MARK


def _reply_text(text: str) -> str:
    """Printable ASCII only (it comes from DNS and from the sender), and short."""
    clean = "".join(c if " " <= c <= "~" else "?" for c in text)
    return clean if len(clean) <= _MAX_TEXT else clean[: _MAX_TEXT - 3] + "..."


def refusal_for(result: SpfResult, config: SpfConfig) -> Reply | None:
    template = _REFUSALS.get((result.status, _action(config, result.status)))
    if template is None:
        return None
    # RFC 7208 8.4: a fail's reply carries the domain owner's explanation when given.
    comment = result.explanation if result.status is SpfStatus.FAIL and result.explanation \
        else result.comment
    return template.fill(comment=_reply_text(comment))


class SpfCheck:
    def __init__(self, config: SpfConfig, resolver: Resolver, receiver: str) -> None:
        self.config = config
        self.resolver = resolver
        self.receiver = receiver
        self.limits = SpfLimits(max_void_lookups=config.max_void_lookups,
                                time_budget=config.time_budget)
        self.skipped = tuple(ipaddress.ip_network(n, strict=False)
                             for n in config.skip_addresses)
        self.memo = SpfMemo()  # results for as long as their DNS answers live
        self._applies: dict[str, bool] = {}

    def applies(self, ip: str) -> bool:
        """Is a client at ``ip`` checked (a real address, not in ``skip_addresses``)?
        Remembered per address (clients come back)."""
        known = self._applies.get(ip)
        if known is None:
            if len(self._applies) >= _MAX_ADDRESSES:
                self._applies.clear()
            known = self._applies[ip] = self._check_applies(ip)
        return known

    def _check_applies(self, ip: str) -> bool:
        try:
            address = client_address(ip)
        except ValueError:
            return False
        return not any(address in network for network in self.skipped)

    def known(self, ip: str, helo: str, sender: str) -> SpfVerdict | None:
        """The verdict of :meth:`check` when every result it needs is remembered (no
        DNS, no task); None: call :meth:`check`."""
        args = (self.memo, ip, sender, helo)
        result = remembered(*args, identity=Identity.MAILFROM, receiver=self.receiver,
                            limits=self.limits)
        if result is None:
            return None
        if not (self.config.check_helo and sender):
            return SpfVerdict(result, refusal_for(result, self.config))
        helo_result = remembered(*args, identity=Identity.HELO, receiver=self.receiver,
                                 limits=self.limits)
        return None if helo_result is None else self._verdict(result, helo_result)

    async def check(self, ip: str, helo: str, sender: str) -> SpfVerdict:
        """Both identities at once (RFC 7208 2.3, 2.4), each within the time budget.
        A HELO fail counts unless MAIL FROM passed."""
        mail_from = check_mail_from(self.resolver, ip, sender, helo, receiver=self.receiver,
                                    limits=self.limits, memo=self.memo)
        if not (self.config.check_helo and sender):  # <>: MAIL FROM is the HELO identity
            result = await mail_from
            return SpfVerdict(result, refusal_for(result, self.config))
        result, helo_result = await asyncio.gather(
            mail_from, check_helo(self.resolver, ip, helo, receiver=self.receiver,
                                  limits=self.limits, memo=self.memo))
        return self._verdict(result, helo_result)

    def _verdict(self, result: SpfResult, helo_result: SpfResult) -> SpfVerdict:
        refusal = refusal_for(result, self.config)
        if refusal is None and helo_result.status is SpfStatus.FAIL \
                and result.status is not SpfStatus.PASS:
            refusal = refusal_for(helo_result, self.config)
        return SpfVerdict(result, refusal, helo_result)
