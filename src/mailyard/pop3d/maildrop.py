"""The maildrop of one POP3 session: the user's INBOX, locked and listed at login
(RFC 1939 8: one session per maildrop), read and updated through the store interface
(:class:`~mailyard.store.api.Mailbox`).

Every method blocks on the disk: the session calls them in an executor.

UIDL: the store's key of a message (the Maildir base name, the same in ``new/`` and
``cur/`` and across flag changes) when it is a valid unique-id (RFC 1939 7: 1 to 70
printable ASCII characters), else a digest of it, so it stays stable across sessions.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field

from mailyard.proto.pop3.session import MessageInfo
from mailyard.store.api import Mailbox, MailboxLock, MailStore

__all__ = ["LOCK_PURPOSE", "OpenMaildrop", "open_maildrop", "uidl"]

LOCK_PURPOSE = "pop3"
READ_CHUNK = 64 * 1024
_UID = re.compile(r"[\x21-\x7e]{1,70}")


def uidl(key: str) -> str:
    """The UIDL unique-id of the message the store names ``key``."""
    if _UID.fullmatch(key):
        return key
    return "H" + hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:40]


@dataclass
class OpenMaildrop:
    """A locked INBOX and the snapshot taken at login."""

    mailbox: Mailbox
    lock: MailboxLock
    messages: tuple[MessageInfo, ...]
    keys: dict[str, str] = field(default_factory=dict)  # UIDL unique-id -> store key

    def chunks(self, message: MessageInfo) -> Generator[bytes, None, None]:
        """The stored message, chunk by chunk (raises FileNotFoundError when gone)."""
        with self.mailbox.open_message(self.keys[message.uid]) as f:
            while chunk := f.read(READ_CHUNK):
                yield chunk

    def remove(self, messages: Sequence[MessageInfo]) -> int:
        """RFC 1939 6 UPDATE: remove the messages marked deleted."""
        return self.mailbox.remove_messages(self.keys[m.uid] for m in messages)

    def release(self) -> None:
        self.lock.release()


def open_maildrop(store: MailStore, address: str) -> OpenMaildrop:
    """Lock ``address``'s INBOX and list it.  Raises MailboxBusy (another session has
    it), OSError."""
    mailbox = store.mailbox(address)
    lock = mailbox.lock_exclusive(LOCK_PURPOSE)
    try:
        listed = mailbox.inbox_messages()
    except BaseException:
        lock.release()
        raise
    messages, keys = [], {}
    for entry in listed:
        uid = uidl(entry.key)
        if uid in keys:
            continue  # two keys with one digest: not reachable in practice
        keys[uid] = entry.key
        messages.append(MessageInfo(uid, entry.size))
    return OpenMaildrop(mailbox, lock, tuple(messages), keys)
