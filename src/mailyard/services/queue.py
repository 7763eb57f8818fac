"""The shapes in which queued mail is shown to an operator: ``mailyard queue list
--json`` today, the HTTP API's queue endpoints later.  One definition, so both show
the same fields."""

from __future__ import annotations

from typing import Any

from mailyard.queue.api import DeliveryReply, QueueEntry


def reply_to_json(reply: DeliveryReply | None) -> dict[str, Any] | None:
    """code, status, text, origin ("remote"/"local") and the answering host."""
    return None if reply is None else reply.to_dict()


def entry_to_json(entry: QueueEntry) -> dict[str, Any]:
    """One queued message with each recipient's state, attempts and last reply."""
    env = entry.envelope
    return {
        "id": entry.qid,
        "sender": env.sender,
        "size": entry.size,
        "created": entry.created,
        "envid": env.envid,
        "ret": env.ret,
        "auth_user": env.auth_user,
        "client_ip": env.client_ip,
        "recipients": [
            {
                "index": r.index,
                "address": r.address,
                "state": r.state.value,
                "attempts": r.attempts,
                "next_attempt": r.next_attempt,
                "last_attempt": r.last_attempt,
                "last_reply": str(r.last_reply) if r.last_reply is not None else "",
                "reply": reply_to_json(r.last_reply),
            }
            for r in entry.recipients
        ],
    }
