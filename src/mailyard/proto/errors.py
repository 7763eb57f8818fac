"""Errors shared by the sans-IO protocol cores (SMTP server and client, and the IMAP
and POP3 cores to come).

A peer's protocol violation is never an exception: it is answered on the wire (a reply
value).  :class:`LocalProtocolError` is the other kind: *our* adapter called a core in a
way its state does not allow (a decision answered with nothing pending, content sent
outside a transaction...).  That is a bug in the caller, like h11's error of the same
name, and it is a ``RuntimeError`` so that it is never mistaken for a peer's doing.
"""

from __future__ import annotations

__all__ = ["LocalProtocolError"]


class LocalProtocolError(RuntimeError):
    """The adapter used a protocol core wrongly (a bug in the caller, not the peer's)."""
