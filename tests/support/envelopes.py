"""Envelopes for tests that need one and do not care about most of its fields."""

from __future__ import annotations

from mailyard.envelope import Envelope, Recipient


def make_envelope(*recipients: str, sender: str = "sender@example.org") -> Envelope:
    rcpts = recipients or ("rcpt@example.net",)
    return Envelope(sender, tuple(Recipient(r) for r in rcpts), client_ip="192.0.2.1",
                    client_helo="client.example.org", received_at=1_700_000_000.0)
