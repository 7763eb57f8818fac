"""The Maildir side of the mailbox index: folder names, file names and flags.

Folders are Maildir++ ``.Name`` directories: :func:`normalize` checks an IMAP name,
:func:`disk_name` and :func:`imap_name` map it to and from the directory name (``/``
is ``.`` on disk, each level modified UTF-7).  A message file's name carries its
base (stable across flag changes) and, after ``:2,``, the system flags as info
letters (:data:`FLAG_LETTERS`); :func:`_split`, :func:`_letters_of`, :func:`_flags`
and :func:`_with_letters` convert between them and IMAP flags.  :func:`_arrival`
orders new files, :func:`_entries` and :func:`_mtime_ns` read a directory.  Separate
from the database side because these are pure conversions of names and plain
directory reads, shared by every index operation.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable
from pathlib import Path

from mailyard.proto.imap import mutf7
from mailyard.store.api import INBOX, MailboxNameError

DELIMITER = "/"
#: IMAP system flag -> Maildir info letter (maildir(5), Dovecot).
FLAG_LETTERS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S",
                "\\Deleted": "T"}
_LETTER_FLAGS = {v: k for k, v in FLAG_LETTERS.items()}
_FLAG_CANON = {k.lower(): k for k in FLAG_LETTERS}

_BAD_LEVEL = re.compile(r"[.%*\\\x00-\x1f\x7f]")
#: The longest ``.Name`` directory entry a file system takes (NAME_MAX).
MAX_DISK_NAME = 255
_NAME_TIME = re.compile(r"(\d+)\.(?:M(\d+))?")
#: The internal dates the index keeps: 01-Jan-1970 00:00:00 to 31-Dec-9999 23:59:59 UTC
#: (an IMAP date-time has a four-digit year; mail before the epoch is a bogus date).
FIRST_INTERNAL_DATE, LAST_INTERNAL_DATE = 0.0, 253402300799.0


def clamp_internal_date(when: float) -> float:
    """``when`` (an APPEND's date-time, a file's modification time) brought into the
    range of internal dates the index keeps (:data:`FIRST_INTERNAL_DATE` to
    :data:`LAST_INTERNAL_DATE`), so FETCH INTERNALDATE and SEARCH BEFORE/SINCE see
    the same instant."""
    return min(max(when, FIRST_INTERNAL_DATE), LAST_INTERNAL_DATE)


# --- names ------------------------------------------------------------------------------

def normalize(name: str) -> str:
    """The canonical IMAP name: ``INBOX`` in any case is ``INBOX``.  Raises
    :class:`MailboxNameError` for a name that cannot be stored, among them one whose
    directory name would be longer than the file system allows."""
    if name.upper() == INBOX:
        return INBOX
    levels = name.split(DELIMITER)
    for level in levels:
        if not level or _BAD_LEVEL.search(level) or level.strip() != level:
            raise MailboxNameError(f"cannot use {name!r} as a folder name")
    if levels[0].upper() == INBOX:
        levels[0] = INBOX
    name = DELIMITER.join(levels)
    if len(disk_name(name)) + 1 > MAX_DISK_NAME:  # refused before anything is created
        raise MailboxNameError("mailbox name too long")
    return name


def disk_name(name: str) -> str:
    """``A/B`` -> ``A.B`` with each level in modified UTF-7 (without the leading dot)."""
    return ".".join(mutf7.encode(level).decode("ascii") for level in name.split(DELIMITER))


def imap_name(entry: str) -> str | None:
    """The IMAP name of a ``.Name`` directory entry, None if it is not a folder."""
    if not entry.startswith(".") or entry in (".", ".."):
        return None
    levels = entry[1:].split(".")
    try:
        decoded = [mutf7.decode(level.encode("ascii")) for level in levels]
    except (UnicodeEncodeError, mutf7.MUtf7Error):
        return None
    if any(not level or DELIMITER in level for level in decoded):
        return None
    return DELIMITER.join(decoded)


def _split(filename: str) -> tuple[str, str]:
    """(base, info letters) of a Maildir file name."""
    base, sep, info = filename.partition(":")
    return base, (info[2:] if sep and info.startswith("2,") else "")


def _letters_of(flags: Iterable[str]) -> tuple[str, list[str]]:
    """(system flag letters, keywords) of IMAP flags."""
    letters: set[str] = set()
    keywords: list[str] = []
    for flag in flags:
        canon = _FLAG_CANON.get(flag.lower())
        if canon is not None:
            letters.add(FLAG_LETTERS[canon])
        elif not flag.startswith("\\") and flag not in keywords:
            keywords.append(flag)
    return "".join(sorted(letters)), keywords


@functools.lru_cache(maxsize=4096)
def _flags(letters: str, keywords: str) -> frozenset[str]:
    """The flag set of a row; one shared object per distinct set (a folder has few:
    building them is a good part of reading a large folder, and FLAGS rendering and
    keyword listing go by distinct set)."""
    return frozenset([_LETTER_FLAGS[c] for c in letters if c in _LETTER_FLAGS]
                     + keywords.split())


def _with_letters(filename: str, letters: str) -> str:
    """``filename`` with its system letters set to ``letters`` (other letters kept)."""
    base, info = _split(filename)
    others = {c for c in info if c not in _LETTER_FLAGS}
    return f"{base}:2,{''.join(sorted(others | set(letters)))}"


def _arrival(path: Path) -> tuple[int, int, float, str]:
    m = _NAME_TIME.match(path.name)
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        mtime = 0.0
    if m is None:
        return int(mtime), 0, mtime, path.name
    return int(m.group(1)), int(m.group(2) or 0), mtime, path.name


def _mtime_ns(directory: Path) -> int:
    try:
        return os.stat(directory).st_mtime_ns
    except FileNotFoundError:
        return 0


def _entries(directory: Path) -> list[str]:
    try:
        with os.scandir(directory) as it:
            return [e.name for e in it
                    if not e.name.startswith(".") and e.is_file(follow_symlinks=False)]
    except FileNotFoundError:
        return []
