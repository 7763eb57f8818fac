"""The SMTP envelope: who a message is from and who it goes to.

These value types are shared by every stage (smtpd builds them, the queue stores them,
delivery reads them), so they live outside any one package.  They serialize to plain
JSON-able dicts for the queue's on-disk records.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DsnRecipient:
    """RFC 3461 per-recipient parameters (RCPT TO ... NOTIFY= ORCPT=)."""

    notify: tuple[str, ...] = ()  # subset of SUCCESS, FAILURE, DELAY; or ("NEVER",)
    orcpt: str = ""  # "rfc822;user@example.org", decoded from xtext

    def to_dict(self) -> dict[str, Any]:
        return {"notify": list(self.notify), "orcpt": self.orcpt}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DsnRecipient:
        _require(d, dict, "dsn")
        notify = _get(d, "notify", list, [])
        return cls(notify=tuple(_require(n, str, "notify item") for n in notify),
                   orcpt=_get(d, "orcpt", str, ""))


@dataclass(frozen=True)
class Recipient:
    address: str  # as given in RCPT TO (local part case kept), without <>
    dsn: DsnRecipient = field(default_factory=DsnRecipient)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"address": self.address}
        if self.dsn.notify or self.dsn.orcpt:
            d["dsn"] = self.dsn.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recipient:
        _require(d, dict, "recipient")
        return cls(address=_require(d.get("address"), str, "address"),
                   dsn=DsnRecipient.from_dict(d.get("dsn", {})))


@dataclass(frozen=True)
class Envelope:
    """One accepted transaction.  ``sender`` is "" for the null reverse-path (<>)."""

    sender: str
    recipients: tuple[Recipient, ...]
    body_type: str = "7BIT"  # 7BIT, 8BITMIME or BINARYMIME (BODY=)
    smtputf8: bool = False
    ret: str = ""  # "", "FULL" or "HDRS" (RFC 3461 RET=)
    envid: str = ""  # RFC 3461 ENVID=, decoded from xtext
    # Who handed it to us: for Received headers, logs and policy.
    client_ip: str = ""
    client_helo: str = ""
    auth_user: str = ""  # authenticated submitter, "" on port 25
    received_at: float = 0.0  # unix time of acceptance
    pool: str = ""  # the delivery pool ([[delivery.pools]]), assigned by ingest; "" default
    # A producer's idempotency key (a campaign's "campaign:<id>:<contact>"): the queue
    # index remembers it with the queue id, beyond the message's delivery, so a producer
    # that crashed mid-submit can ask whether its message was committed.
    submit_key: str = ""

    def to_dict(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"pool": self.pool} if self.pool else {}
        if self.submit_key:
            extra["submit_key"] = self.submit_key
        return {**extra,
            "sender": self.sender,
            "recipients": [r.to_dict() for r in self.recipients],
            "body_type": self.body_type,
            "smtputf8": self.smtputf8,
            "ret": self.ret,
            "envid": self.envid,
            "client_ip": self.client_ip,
            "client_helo": self.client_helo,
            "auth_user": self.auth_user,
            "received_at": self.received_at,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Envelope:
        """Raises EnvelopeFormatError (a ValueError) when a field is missing or has the
        wrong type: the dict comes from disk and may have been damaged or forged."""
        _require(d, dict, "envelope")
        return cls(
            sender=_require(d.get("sender"), str, "sender"),
            recipients=tuple(Recipient.from_dict(r)
                             for r in _require(d.get("recipients"), list, "recipients")),
            body_type=_get(d, "body_type", str, "7BIT"),
            smtputf8=_get(d, "smtputf8", bool, False),
            ret=_get(d, "ret", str, ""),
            envid=_get(d, "envid", str, ""),
            client_ip=_get(d, "client_ip", str, ""),
            client_helo=_get(d, "client_helo", str, ""),
            auth_user=_get(d, "auth_user", str, ""),
            received_at=float(_get(d, "received_at", (int, float), 0.0)),
            pool=_get(d, "pool", str, ""),
            submit_key=_get(d, "submit_key", str, ""),
        )


def made_here(sender: str, recipients: Sequence[str], content: bytes, *,
              smtputf8: bool = False, auth_user: str = "",
              received_at: float | None = None) -> Envelope:
    """The envelope of a message the server hands to ingest itself (a local
    submission, a confirmation, an API or campaign test message): from 127.0.0.1, the
    body type read off ``content``, SMTPUTF8 when ``smtputf8`` (a header needs it) or
    an address is not ASCII."""
    return Envelope(sender=sender, recipients=tuple(Recipient(r) for r in recipients),
                    body_type="7BIT" if content.isascii() else "8BITMIME",
                    smtputf8=smtputf8 or not "".join([sender, *recipients]).isascii(),
                    client_ip="127.0.0.1", client_helo="localhost", auth_user=auth_user,
                    received_at=time.time() if received_at is None else received_at)


class EnvelopeFormatError(ValueError):
    """A stored envelope field is missing or has the wrong type."""


def _require(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    # bool is an int subclass: a number field must not accept true/false, nor the reverse.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise EnvelopeFormatError(f"envelope field {what!r} has the wrong type "
                                  f"({type(value).__name__})")
    return value


def _get(d: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any) -> Any:
    return _require(d[key], kind, key) if key in d else default


def split_address(address: str) -> tuple[str, str]:
    """'user@Example.ORG' -> ('user', 'example.org').  No '@': ('user', '')."""
    local, sep, domain = address.rpartition("@")
    if not sep:
        return address, ""
    return local, domain.lower().rstrip(".")
