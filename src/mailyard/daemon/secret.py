"""The server secret: 32 random bytes in ``<data_dir>/server-secret`` (64 hex digits,
mode 0600) from which keys that must stay the same in every process and across
restarts are derived, such as the key of the SCRAM decoys for unknown users.

The first process that needs it creates it (SMTP workers start together): the secret
is written to a temporary file, synced, and then linked to its name, which fails if
another process linked first (the same exclusivity as O_EXCL, and nobody ever reads a
half-written file); every process then reads the one that won.  Removing the file
only makes the next start choose a new secret.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

SECRET_NAME = "server-secret"
SECRET_BYTES = 32


class ServerSecretError(Exception):
    """The secret cannot be read or created (the message names the file)."""


def load_server_secret(data_dir: Path) -> bytes:
    path = Path(data_dir) / SECRET_NAME
    try:
        try:
            return _read(path)
        except FileNotFoundError:
            _create(path)
        return _read(path)
    except OSError as exc:
        raise ServerSecretError(f"server secret {path}: {exc.strerror or exc}") from exc


def derive_key(secret: bytes, purpose: str) -> bytes:
    """A key for one purpose, so a key derived for one use reveals nothing of another."""
    return hmac.new(secret, f"mailyard {purpose}".encode("ascii"), hashlib.sha256).digest()


def _read(path: Path) -> bytes:
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) != SECRET_BYTES:
        raise ServerSecretError(
            f"server secret {path}: expected {2 * SECRET_BYTES} hex digits; remove the "
            "file to create a new one")
    return secret


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{SECRET_NAME}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.write(fd, secrets.token_hex(SECRET_BYTES).encode("ascii") + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return  # another process created it first: use that one
    finally:
        os.unlink(tmp)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
