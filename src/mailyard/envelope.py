"""The SMTP envelope: who a message is from and who it goes to.

These value types are shared by every stage (smtpd builds them, the queue stores them,
delivery reads them), so they live outside any one package.  They serialize to plain
JSON-able dicts for the queue's on-disk records.
"""

from __future__ import annotations

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
        return cls(notify=tuple(d.get("notify", ())), orcpt=d.get("orcpt", ""))


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
        return cls(address=d["address"], dsn=DsnRecipient.from_dict(d.get("dsn", {})))


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

    def to_dict(self) -> dict[str, Any]:
        return {
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
        return cls(
            sender=d["sender"],
            recipients=tuple(Recipient.from_dict(r) for r in d["recipients"]),
            body_type=d.get("body_type", "7BIT"),
            smtputf8=bool(d.get("smtputf8", False)),
            ret=d.get("ret", ""),
            envid=d.get("envid", ""),
            client_ip=d.get("client_ip", ""),
            client_helo=d.get("client_helo", ""),
            auth_user=d.get("auth_user", ""),
            received_at=float(d.get("received_at", 0.0)),
        )


def split_address(address: str) -> tuple[str, str]:
    """'user@Example.ORG' -> ('user', 'example.org').  No '@': ('user', '')."""
    local, sep, domain = address.rpartition("@")
    if not sep:
        return address, ""
    return local, domain.lower().rstrip(".")
