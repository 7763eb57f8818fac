"""The tagged ``NO`` for a command the store could not carry out: what the client is
told (a fixed text and response code, never the server's paths or database words)
and what the log keeps (the details).  Shared by the mailbox engine, the folder
commands and the session."""

from __future__ import annotations

import logging
from typing import Any

from mailyard.fs import disk_full
from mailyard.obs import log_event

__all__ = ["DISK_FULL_TEXT", "QUOTA_UNAVAILABLE_TEXT", "quota_refusal", "write_refusal"]

log = logging.getLogger("mailyard.imapd")


DISK_FULL_TEXT = "Not enough disk space"


def write_refusal(command: str, exc: BaseException, client: str = "") -> tuple[str, str]:
    """(text, response code) of the tagged NO for a change the store could not make.
    A full disk (ENOSPC, EDQUOT, SQLite's "database or disk is full") is
    ``[OVERQUOTA] Not enough disk space``, as Dovecot says it; anything else is
    logged and answered without its details (no server paths on the wire).
    ``client``, when given, goes to the log line."""
    fields: dict[str, Any] = {"client": client} if client else {}
    if disk_full(exc):
        log_event(log, "imap write refused: disk full", level=logging.WARNING,
                  command=command, error=str(exc), **fields)
        return DISK_FULL_TEXT, "OVERQUOTA"
    log_event(log, "imap command failed", level=logging.ERROR, command=command,
              error=str(exc), **fields)
    return f"{command} failed, try again", "SERVERBUG"


QUOTA_UNAVAILABLE_TEXT = "Cannot check the quota, try again"


def quota_refusal(command: str, exc: BaseException) -> tuple[str, str]:
    """(text, response code) of the tagged NO when the quota (the directory's limits,
    the index's usage) cannot be read: ``[UNAVAILABLE]``, the details logged."""
    log_event(log, "imap quota unreadable", level=logging.ERROR, command=command,
              error=str(exc))
    return QUOTA_UNAVAILABLE_TEXT, "UNAVAILABLE"
