"""Queue ids and process identity.

A queue id names a message everywhere (file name, index key, Received header, logs).
It is 19 characters of Crockford base32 (upper case digits and letters, no I/L/O/U):
11 characters of microseconds since the epoch, made strictly increasing within a
process, then 8 characters (40 bits) of a per-process random nonce.  So ids sort by
arrival time, are safe as file names on any file system (no case folding issue, no
separators), and are unique across processes and machines without coordination.
(The encoder is written here because the standard library's base32 uses the RFC 4648
alphabet, whose letters-before-digits order does not sort like the numbers it encodes.)

A lease owner is a process, named by :class:`ProcessIdentity` as
``<boot id>-<pid>-<start ticks>``.  The boot id tells a leftover from before a reboot;
the start time (``/proc/<pid>/stat`` field 22) tells a reused pid.  A process on
another boot of this machine, or a pid that is gone or was reused, is dead.  (The file
spool lives on one machine; a shared store would have to keep leases of other machines
until they expire.)
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from functools import lru_cache

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
TIME_CHARS = 11  # 55 bits of microseconds: good until the year 3111
NONCE_CHARS = 8  # 40 random bits per process
QID_LENGTH = TIME_CHARS + NONCE_CHARS
QID_PATTERN = re.compile(f"^[{ALPHABET}]{{{QID_LENGTH}}}$")


def encode_base32(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        chars.append(ALPHABET[value & 31])
        value >>= 5
    if value:
        raise ValueError("value does not fit")
    return "".join(reversed(chars))


def is_qid(name: str) -> bool:
    return QID_PATTERN.match(name) is not None


def qid_time(qid: str) -> float:
    """The arrival time (unix seconds) encoded in a queue id."""
    value = 0
    for ch in qid[:TIME_CHARS]:
        value = value * 32 + ALPHABET.index(ch)
    return value / 1_000_000


class QueueIdGenerator:
    """Makes queue ids for one process (a new nonce after fork)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0
        self._pid = -1
        self._nonce = ""

    def next(self) -> str:
        with self._lock:
            pid = os.getpid()
            if pid != self._pid:
                self._pid = pid
                self._nonce = encode_base32(secrets.randbits(5 * NONCE_CHARS), NONCE_CHARS)
                self._last = 0
            micros = time.time_ns() // 1000
            if micros <= self._last:
                micros = self._last + 1
            self._last = micros
            return encode_base32(micros, TIME_CHARS) + self._nonce


@lru_cache(maxsize=1)
def boot_id() -> str:
    """This boot of this machine (short form of the kernel's random boot id)."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip().replace("-", "")[:12]
    except OSError:
        return "noboot"


def process_start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot; None if there is no such process.
    -1 when /proc cannot tell but the process exists."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return None
    except OSError:
        return _pid_exists_fallback(pid)
    # The command name (field 2) is in parentheses and may hold spaces.
    fields = stat[stat.rindex(b")") + 2:].split()
    return int(fields[19])  # field 22 overall


def _pid_exists_fallback(pid: int) -> int | None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return -1
    return -1


@dataclass(frozen=True)
class ProcessIdentity:
    boot: str
    pid: int
    start: int

    @classmethod
    def current(cls) -> ProcessIdentity:
        pid = os.getpid()
        return cls(boot_id(), pid, process_start_ticks(pid) or 0)

    @property
    def token(self) -> str:
        return f"{self.boot}-{self.pid}-{self.start}"

    @classmethod
    def parse(cls, token: str) -> ProcessIdentity | None:
        parts = token.split("-")
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            return None
        return cls(parts[0], int(parts[1]), int(parts[2]))

    def is_dead(self) -> bool:
        """True only when this process is known to be gone."""
        if self.boot != boot_id():
            return True
        start = process_start_ticks(self.pid)
        if start is None:
            return True
        return start not in (-1, self.start) and self.start != 0


def owner_is_dead(token: str) -> bool:
    identity = ProcessIdentity.parse(token)
    return identity is not None and identity.is_dead()
