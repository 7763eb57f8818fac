"""Who the server runs as.

Started as root, ``mailyard serve`` binds its sockets, prepares ``data_dir`` (and gives
it to the configured ``user``), then drops to that user and group for good before any
worker or the dispatcher runs: nothing that parses network input or touches the queue
runs as root.  Started as another user (for example by systemd with ``User=``), it
keeps that identity and ``user``/``group`` are ignored.

CLI commands run by root switch their *effective* identity to the owner of
``data_dir``, so the files they create (``directory.db``, queue records) belong to
the server's user, not to root.
"""

from __future__ import annotations

import codecs
import grp
import logging
import os
import pwd
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mailyard.config import Config
from mailyard.obs import log_event

log = logging.getLogger("mailyard.supervisor")

USERADD_HINT = "useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin"


class PrivilegeError(Exception):
    """The server cannot take the configured identity (one line for the operator)."""


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    name: str  # "" for a uid without a passwd entry


def started_as_root() -> bool:
    return os.geteuid() == 0


def server_identity(config: Config) -> Identity | None:
    """The identity to drop to; None when not started as root (nothing to drop).
    Refuses an unknown user, and root itself unless ``allow_root`` is set."""
    if not started_as_root():
        return None
    user, group = config.user, config.group
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        uid, gid, name = entry.pw_uid, entry.pw_gid, entry.pw_name
    except KeyError:
        if not user.isdigit():
            raise PrivilegeError(
                f"user {user!r} does not exist: create it with `{USERADD_HINT} {user}`, "
                f"or set `user` in the configuration") from None
        if not group:
            raise PrivilegeError(f"uid {user} has no passwd entry: set `group` as well") from None
        uid, gid, name = int(user), -1, ""
    if group:
        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise PrivilegeError(f"group {group!r} does not exist: create it with "
                                 f"`groupadd --system {group}`, or set `group`") from None
    if uid == 0 and not config.allow_root:
        raise PrivilegeError(
            "refusing to run as root: set `user` to an unprivileged account (default "
            f"'mailyard', created with `{USERADD_HINT} mailyard`), or set "
            "`allow_root = true` (or pass --allow-root) to run as root anyway")
    return Identity(uid, gid, name)


def give_tree(top: Path, identity: Identity) -> None:
    """``chown -R`` of ``top`` to ``identity``, without following symbolic links.  A
    regular file with several hard links is left alone (and logged): it may be a link
    to a file outside ``top`` planted by whoever could write here."""
    uid, gid = identity.uid, identity.gid

    def give(path: str) -> None:
        st = os.lstat(path)
        if st.st_uid == uid and st.st_gid == gid:
            return
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            log_event(log, "not changing the owner of a hard-linked file",
                      level=logging.WARNING, path=path, links=st.st_nlink)
            return
        os.chown(path, uid, gid, follow_symlinks=False)

    give(str(top))
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        for name in dirnames + filenames:
            try:
                give(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue


def give_file(path: str | os.PathLike[str], identity: Identity) -> None:
    """Give one file (the log) to ``identity`` if it is a plain file of ours."""
    try:
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_uid in (0, identity.uid):
            os.chown(path, identity.uid, identity.gid, follow_symlinks=False)
    except FileNotFoundError:
        pass


# Codecs the server looks up by name (files under /proc, IDNA host names, headers):
# Python loads each on first use, and the mail user need not be able to read the
# interpreter's installation (it may live in root's home), so they are loaded while
# still root.
_CODECS = ("ascii", "latin-1", "utf-8", "idna", "punycode")


def _load_codecs() -> None:
    for name in _CODECS:
        codecs.lookup(name)


def drop_privileges(identity: Identity) -> None:
    """Become ``identity`` for good (real, effective and saved ids, supplementary
    groups), then check that root cannot be taken back."""
    if identity.uid == 0:
        return  # allow_root: stays root, as configured
    _load_codecs()
    if identity.name:
        os.initgroups(identity.name, identity.gid)
    else:
        os.setgroups([])
    os.setresgid(identity.gid, identity.gid, identity.gid)
    os.setresuid(identity.uid, identity.uid, identity.uid)
    if os.getresuid() != (identity.uid,) * 3 or os.getresgid() != (identity.gid,) * 3:
        raise PrivilegeError("could not switch to the configured user and group")
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise PrivilegeError("privileges could be regained after dropping them; stopping")


def check_runnable(identity: Identity,
                   paths: Sequence[tuple[str, int]] | None = None) -> None:
    """After the drop: every worker is a new process of this interpreter, started as
    the server's user, so that user must be able to run the interpreter and read its
    library and Mailyard's code.  A Python or a checkout in a directory closed to other
    users (root's home) is the usual reason it cannot; say so before the first worker
    fails to start.  ``paths``: (path, ``os.access`` mode) pairs, by default those."""
    if identity.uid == 0:
        return
    for path, mode in paths if paths is not None else _runtime_paths():
        if not os.access(path, mode):
            verb = "run" if mode == os.X_OK else "read"
            raise PrivilegeError(
                f"user {identity.name or identity.uid!r} cannot {verb} {path}: it or a "
                "directory above it is closed to that user (a Python or a checkout under "
                "/root?); install Mailyard where that user can read it, or set `user`")


def _runtime_paths() -> list[tuple[str, int]]:
    import mailyard

    return [(sys.executable, os.X_OK), (os.path.dirname(os.__file__), os.R_OK | os.X_OK),
            (os.path.dirname(mailyard.__file__), os.R_OK | os.X_OK)]


def cli_take_data_dir_owner(data_dir: Path) -> None:
    """For a CLI command run by root: take the owner of ``data_dir`` (and its group) as
    the effective identity, so new files belong to the server's user.  The real uid
    stays root (the command still knows who ran it)."""
    if not started_as_root():
        return
    try:
        st = os.stat(data_dir)
    except OSError:
        return  # not created yet: `mailyard serve` gives it to its user at start
    if st.st_uid == 0:
        return
    os.setgroups([st.st_gid])
    os.setegid(st.st_gid)
    os.seteuid(st.st_uid)
