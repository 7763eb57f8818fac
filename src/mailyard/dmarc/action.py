"""What the receiver does with a DMARC result, under the ``[dmarc]`` settings.

RFC 7489 leaves the action to the receiver's local policy (6.7).  Ours:

* ``reject`` disposition: refuse with ``550 5.7.1`` (``REPLY_DMARC_REJECT``), or
  quarantine when ``dmarc.reject`` is false;
* ``quarantine`` disposition: deliver with an ``X-Mailyard-Quarantine`` field (and,
  with ``dmarc.quarantine = "junk"``, into the Junk folder: see
  :mod:`mailyard.senderauth.hook`);
* anything else (pass, none, a sampled-out ``none``, temperror, permerror): accept.

The action is a value the inbound checks apply; nothing here does I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mailyard.authres.format import Spec, dmarc_result, dmarc_spec
from mailyard.authres.model import MethodResult
from mailyard.config import DmarcConfig
from mailyard.dmarc.evaluate import Disposition, DmarcResult, DmarcStatus
from mailyard.proto.smtp.replies import REPLY_DMARC_REJECT, Reply

__all__ = ["QUARANTINE_FIELD", "ActionKind", "DmarcAction", "authres_entry", "authres_spec",
           "dmarc_action"]

QUARANTINE_FIELD = "X-Mailyard-Quarantine"


class ActionKind(enum.StrEnum):
    ACCEPT = "accept"
    QUARANTINE = "quarantine"
    REJECT = "reject"


@dataclass(frozen=True)
class DmarcAction:
    kind: ActionKind
    reply: Reply | None = None  # the refusal, for REJECT
    field: bytes = b""  # a header field to add, for QUARANTINE


_ACCEPT = DmarcAction(ActionKind.ACCEPT)  # immutable: one for every accepted message


def _quarantine(result: DmarcResult) -> DmarcAction:
    policy = result.policy.value if result.policy is not None else "quarantine"
    field = f"{QUARANTINE_FIELD}: dmarc domain={result.author_domain} policy={policy}\r\n"
    return DmarcAction(ActionKind.QUARANTINE, field=field.encode("ascii", "replace"))


def dmarc_action(result: DmarcResult, config: DmarcConfig) -> DmarcAction:
    if not config.enabled or result.status is not DmarcStatus.FAIL:
        return _ACCEPT
    if result.disposition is Disposition.REJECT:
        if config.reject:
            return DmarcAction(ActionKind.REJECT,
                               REPLY_DMARC_REJECT.fill(domain=result.author_domain))
        return _quarantine(result)
    if result.disposition is Disposition.QUARANTINE:
        return _quarantine(result)
    return _ACCEPT


def authres_entry(result: DmarcResult) -> MethodResult:
    """The ``dmarc=`` entry of our Authentication-Results field for this result:
    ``dmarc=fail (p=reject dis=quarantine) header.from=example.com``."""
    # str() of a StrEnum is its value (without the enum property's Python call)
    policy = str(result.policy) if result.policy is not None else ""
    disposition = str(result.disposition) if result.policy is not None else ""
    return dmarc_result(str(result.status), result.author_domain, policy=policy,
                        disposition=disposition)



def authres_spec(result: DmarcResult) -> Spec:
    """:func:`authres_entry` as plain values (:mod:`mailyard.authres.format`)."""
    policy = str(result.policy) if result.policy is not None else ""
    disposition = str(result.disposition) if result.policy is not None else ""
    return dmarc_spec(str(result.status), result.author_domain, policy=policy,
                      disposition=disposition)
