"""Choosing the identity ``mailyard serve`` drops to, and giving data_dir to it."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from mailyard.config import ConfigError, default_config, parse_config
from mailyard.daemon import privileges
from mailyard.daemon.privileges import Identity, PrivilegeError, give_tree, server_identity

BASE = 'hostname = "mx.example.test"\n'


def config(text: str = ""):  # type: ignore[no-untyped-def]
    return parse_config(BASE + text)


@pytest.fixture
def as_root(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(privileges.os, "geteuid", lambda: 0)


def test_defaults_are_the_mailyard_user_and_no_root():
    cfg = default_config()
    assert (cfg.user, cfg.group, cfg.allow_root) == ("mailyard", "", False)


@pytest.mark.parametrize("line, key", [('user = ""', "user"), ('user = "a b"', "user"),
                                       ('group = "x:y"', "group"), ("user = 0", "user")])
def test_bad_user_or_group_is_a_config_error(line, key):
    with pytest.raises(ConfigError) as err:
        config(line)
    assert err.value.key == key


def test_not_root_nothing_to_drop(monkeypatch):
    monkeypatch.setattr(privileges.os, "geteuid", lambda: 1000)
    assert server_identity(config('user = "no-such-user-here"')) is None


def test_unknown_user_says_how_to_create_it(as_root):
    with pytest.raises(PrivilegeError) as err:
        server_identity(config('user = "no-such-user-here"'))
    assert "does not exist" in str(err.value)
    assert "useradd --system" in str(err.value) and "no-such-user-here" in str(err.value)


def test_root_is_refused_unless_allowed(as_root):
    with pytest.raises(PrivilegeError, match="refusing to run as root"):
        server_identity(config('user = "root"'))
    with pytest.raises(PrivilegeError, match="refusing to run as root"):
        server_identity(config('user = "0"'))
    assert server_identity(config('user = "root"\nallow_root = true')) == Identity(0, 0, "root")


def test_user_by_name_or_uid_and_group_override(as_root):
    nobody = pwd.getpwnam("nobody")
    assert server_identity(config('user = "nobody"')) == Identity(
        nobody.pw_uid, nobody.pw_gid, "nobody")
    assert server_identity(config(f'user = "{nobody.pw_uid}"\ngroup = "0"')).gid == 0
    with pytest.raises(PrivilegeError, match="group 'no-such-group-here' does not exist"):
        server_identity(config('user = "nobody"\ngroup = "no-such-group-here"'))


def test_uid_without_passwd_entry_needs_a_group(as_root):
    with pytest.raises(PrivilegeError, match="set `group`"):
        server_identity(config('user = "54321"'))
    assert server_identity(config('user = "54321"\ngroup = "54321"')) == Identity(
        54321, 54321, "")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_give_tree_follows_no_link(tmp_path: Path):
    outside = tmp_path / "outside"
    outside.write_text("root's")
    data = tmp_path / "data"
    (data / "queue").mkdir(parents=True)
    (data / "queue" / "index.db").write_text("")
    (data / "link").symlink_to(outside)
    os.link(outside, data / "hardlink")
    nobody = pwd.getpwnam("nobody")
    give_tree(data, Identity(nobody.pw_uid, nobody.pw_gid, "nobody"))
    for path in (data, data / "queue", data / "queue" / "index.db"):
        assert (path.stat().st_uid, path.stat().st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert os.lstat(data / "link").st_uid == nobody.pw_uid  # the link itself
    assert outside.stat().st_uid == 0  # neither its target nor a hard link to it


def test_a_path_the_user_cannot_reach_stops_the_start(tmp_path: Path):
    user = Identity(1234, 1234, "mail")
    privileges.check_runnable(user, [(str(tmp_path), os.R_OK | os.X_OK)])
    missing = tmp_path / "gone" / "python3"
    with pytest.raises(PrivilegeError) as err:
        privileges.check_runnable(user, [(str(tmp_path), os.R_OK), (str(missing), os.X_OK)])
    assert str(err.value).startswith(f"user 'mail' cannot run {missing}:")
    assert "install Mailyard where that user can read it" in str(err.value)
    # Staying root (allow_root) needs no check.
    privileges.check_runnable(Identity(0, 0, "root"), [(str(missing), os.X_OK)])


def test_the_runtime_paths_are_the_interpreter_its_library_and_mailyard():
    import sys

    import mailyard

    paths = dict(privileges._runtime_paths())
    assert paths[sys.executable] == os.X_OK
    assert paths[os.path.dirname(os.__file__)] == os.R_OK | os.X_OK
    assert paths[os.path.dirname(mailyard.__file__)] == os.R_OK | os.X_OK
