"""Typed replies for tests that record outcomes."""

from __future__ import annotations

from mailyard.proto.smtp.replies import Reply
from mailyard.queue.api import DeliveryReply


def reply(code: int, status: str = "", text: str = "", host: str = "") -> DeliveryReply:
    return DeliveryReply(Reply(code, status, text), host)
