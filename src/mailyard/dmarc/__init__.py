"""DMARC (RFC 7489, with ``np`` from RFC 9091): pure functions over an injected
resolver that turn a message's From field and its SPF and DKIM results into a
:class:`DmarcResult` (the result keyword and the disposition: none, quarantine or
reject).

* :mod:`~mailyard.dmarc.record`: the TXT record syntax (6.3, 6.4);
* :mod:`~mailyard.dmarc.orgdomain`: Organizational Domains from the Public Suffix List (3.2);
* :mod:`~mailyard.dmarc.author`: the Author Domain from the From field (6.6.1);
* :mod:`~mailyard.dmarc.evaluate`: discovery, alignment, sampling, the result (6.6);
* :mod:`~mailyard.dmarc.action`: the configured answer to a result (reply, marker);
* :mod:`~mailyard.dmarc.reports`: aggregate reports received (appendix C) and their store.
"""

from __future__ import annotations

from mailyard.dmarc.author import FromProblem, author_domains
from mailyard.dmarc.evaluate import (
    Disposition,
    DkimOutcome,
    DmarcResult,
    DmarcStatus,
    SpfOutcome,
    aligned,
    evaluate_domain,
    evaluate_message,
)
from mailyard.dmarc.orgdomain import PublicSuffixes, load_public_suffixes
from mailyard.dmarc.record import Alignment, DmarcRecord, Policy, RecordError, parse_record

__all__ = [
    "Alignment",
    "Disposition",
    "DkimOutcome",
    "DmarcRecord",
    "DmarcResult",
    "DmarcStatus",
    "FromProblem",
    "Policy",
    "PublicSuffixes",
    "RecordError",
    "SpfOutcome",
    "aligned",
    "author_domains",
    "evaluate_domain",
    "evaluate_message",
    "load_public_suffixes",
    "parse_record",
]
