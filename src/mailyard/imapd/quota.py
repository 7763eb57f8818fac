"""Quota for the IMAP service (RFC 9208): the names the session handlers use.

The values and the decision live in ``store/quota.py`` and the usage read in
``store/usage.py``, because local delivery and smtpd decide with them too; this
module is the IMAP side's one import for GETQUOTA, GETQUOTAROOT and APPEND/COPY's
``NO [OVERQUOTA]``.  STORAGE is reported in units of 1024 octets (RFC 9208 5.1):
:func:`storage_kib`.
"""

from __future__ import annotations

from mailyard.store.quota import QuotaLimits as QuotaLimits
from mailyard.store.quota import QuotaUsage as QuotaUsage
from mailyard.store.quota import over_quota as over_quota
from mailyard.store.usage import usage as usage

__all__ = ["QuotaLimits", "QuotaUsage", "over_quota", "storage_kib", "usage"]


def storage_kib(octets: int) -> int:
    """Octets as RFC 9208 STORAGE units (1024 octets), rounded up so a mailbox with
    any mail in it never reports 0."""
    return -(-octets // 1024)
