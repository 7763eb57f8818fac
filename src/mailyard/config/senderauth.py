"""Sender authentication of received and forwarded mail: SPF (``[spf]``), DMARC
(``[dmarc]``), Authentication-Results (``[auth_results]``), DKIM signing and
verification (``[dkim]``) and forwarding with SRS and ARC (``[forwarding]``)."""

from __future__ import annotations

import enum
import ipaddress
import os
from dataclasses import dataclass

from mailyard.config._parse import ConfigError


class SpfAction(enum.StrEnum):
    """What an SPF result does at MAIL FROM (docs/configuration.md, [spf])."""

    REJECT = "reject"  # 550 5.7.23 (fail) / 550 5.7.24 (permerror)
    DEFER = "defer"  # 451 4.7.24
    MARK = "mark"  # accept: the result is only recorded (Authentication-Results)


@dataclass(frozen=True)
class SpfConfig:
    # Check SPF (RFC 7208) at MAIL FROM on the port 25 listeners (never on submission).
    enabled: bool = True
    # The action for each result that can refuse; the others are recorded only.
    fail: SpfAction = SpfAction.REJECT
    softfail: SpfAction = SpfAction.MARK
    permerror: SpfAction = SpfAction.MARK
    temperror: SpfAction = SpfAction.MARK
    # Seconds one evaluation may take in all (RFC 7208 4.6.4 allows 20).
    time_budget: float = 5.0
    # RFC 7208 4.6.4: DNS lookups that find nothing before the result is permerror.
    max_void_lookups: int = 2
    # Also check the HELO identity (RFC 7208 2.3); its fail refuses like a MAIL FROM
    # fail unless MAIL FROM passed.
    check_helo: bool = True
    # Clients not checked: the host itself (mail it hands to its own port 25).
    skip_addresses: tuple[str, ...] = ("127.0.0.0/8", "::1/128")

    def validate(self, key: str) -> None:
        if not 0.1 <= self.time_budget <= 60:
            raise ConfigError(f"{key}.time_budget", "must be between 0.1 and 60 seconds")
        if not 0 <= self.max_void_lookups <= 100:
            raise ConfigError(f"{key}.max_void_lookups", "must be between 0 and 100")
        for i, network in enumerate(self.skip_addresses):
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ConfigError(f"{key}.skip_addresses[{i}]",
                                  f"not an address or network: {network!r}") from None
        if self.softfail is SpfAction.REJECT:
            raise ConfigError(f"{key}.softfail", "may be \"mark\" or \"defer\" "
                              "(RFC 7208 8.5: a softfail is not a refusal)")


class DmarcQuarantine(enum.StrEnum):
    HEADER = "header"  # deliver, marked with X-Mailyard-Quarantine
    JUNK = "junk"  # marked, and delivered to the mailbox's \\Junk folder


@dataclass(frozen=True)
class DmarcConfig:
    # Check DMARC (RFC 7489) on mail received on port 25 and act on failures.
    enabled: bool = True
    # Refuse mail whose domain asks for p=reject (550 5.7.1); false: quarantine it.
    reject: bool = True
    quarantine: DmarcQuarantine = DmarcQuarantine.JUNK
    # A Public Suffix List file instead of the copy publicsuffixlist ships ("").
    public_suffix_list: str = ""
    # Aggregate reports we send (RFC 7489 7.2): record evaluations, mail them per period.
    reports: bool = False
    report_interval: float = 86400.0  # seconds; periods end at multiples of it
    report_sender: str = ""  # From and envelope sender; "": postmaster@hostname
    report_organization: str = ""  # org_name; "": the hostname
    report_contact: str = ""  # extra_contact_info; "": none
    # Mail to this local part of a local domain is imported as reports received ("": no).
    report_mailbox: str = "dmarc-reports"

    def is_report_address(self, address: str) -> bool:
        """Is ``address`` (in a local domain) the one our domains publish in their
        DMARC ``rua``, whose mail is imported as reports received?"""
        local = address.rpartition("@")[0] if "@" in address else address
        return bool(self.report_mailbox) and local.lower() == self.report_mailbox.lower()

    def validate(self, key: str) -> None:
        if self.public_suffix_list and not os.path.isabs(self.public_suffix_list):
            raise ConfigError(f"{key}.public_suffix_list", "must be an absolute path")
        if self.report_interval < 1:
            raise ConfigError(f"{key}.report_interval", "must be at least 1 (seconds)")
        if self.report_sender and "@" not in self.report_sender:
            raise ConfigError(f"{key}.report_sender", "must be a mail address")
        if "@" in self.report_mailbox or any(c.isspace() for c in self.report_mailbox):
            raise ConfigError(f"{key}.report_mailbox", "must be a local part (no @)")


@dataclass(frozen=True)
class AuthResultsConfig:
    # The authserv-id of our Authentication-Results fields (RFC 8601 2.5); "": hostname.
    authserv_id: str = ""

    def validate(self, key: str) -> None:
        if any(c.isspace() or c in '()<>@,;:\\"/[]?=' for c in self.authserv_id):
            raise ConfigError(f"{key}.authserv_id", "must be a host name (an RFC 2045 token)")


_DKIM_HEADERS = (
    "From", "Reply-To", "Subject", "Date", "To", "Cc", "In-Reply-To", "References",
    "Message-ID", "Sender", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
    "List-Id", "List-Unsubscribe", "List-Unsubscribe-Post", "List-Post", "List-Help",
    "List-Subscribe", "List-Owner", "List-Archive", "Resent-Date", "Resent-From",
    "Resent-To", "Resent-Cc")


@dataclass(frozen=True)
class DkimConfig:
    # Sign mail from local domains that have a key (see docs/configuration.md).
    enabled: bool = True
    selector: str = "mailyard"
    algorithms: tuple[str, ...] = ("rsa-sha256",)
    rsa_bits: int = 2048
    headers: tuple[str, ...] = _DKIM_HEADERS
    oversign: tuple[str, ...] = ("From",)
    expiry: int = 0
    # Verification (mail received on port 25 from unauthenticated clients).
    verify: bool = True
    max_signatures: int = 5
    min_rsa_bits: int = 1024

    def validate(self, key: str) -> None:
        if not self.algorithms or any(a not in ("rsa-sha256", "ed25519-sha256")
                                      for a in self.algorithms):
            raise ConfigError(f"{key}.algorithms",
                              "must list 'rsa-sha256' and/or 'ed25519-sha256'")
        if not self.selector or not all(c.isalnum() or c == "-" for c in self.selector):
            raise ConfigError(f"{key}.selector", "must be letters, digits and '-'")
        if not 1024 <= self.rsa_bits <= 8192:
            raise ConfigError(f"{key}.rsa_bits", "must be between 1024 and 8192")
        if not any(h.lower() == "from" for h in self.headers):
            raise ConfigError(f"{key}.headers", "must include From (RFC 6376 5.4)")
        if self.expiry < 0 or self.max_signatures < 0 or self.min_rsa_bits < 512:
            raise ConfigError(key, "expiry and max_signatures must be >= 0, "
                              "min_rsa_bits >= 512")


@dataclass(frozen=True)
class ForwardingConfig:
    # Alias forwards to external addresses are sent from an SRS address of the alias's
    # domain (mailyard.srs); bounces to such addresses go back to the original sender.
    srs: bool = True
    # Forwarded copies get an ARC Set (RFC 8617) signed with the alias domain's DKIM key.
    arc: bool = True

    def validate(self, key: str) -> None:
        return None
