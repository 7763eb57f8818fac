"""``mailyard user|alias|domain`` through the real argument parser."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from mailyard.cli import accounts
from mailyard.cli.main import main
from mailyard.config import Config
from mailyard.directory.sqlite import SqliteDirectory


class Cli:
    def __init__(self, config_path: Path, capsys: pytest.CaptureFixture[str],
                 monkeypatch: pytest.MonkeyPatch) -> None:
        self.config_path = config_path
        self.capsys = capsys
        self.monkeypatch = monkeypatch

    def __call__(self, *args: str, stdin: str = "") -> tuple[int, str, str]:
        self.monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = main([*args, "--config", str(self.config_path)])
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def cli(tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> Cli:
    config_path = tmp_path / "mailyard.toml"
    config_path.write_text(f'hostname = "mx.example.test"\ndata_dir = "{data_dir}"\n'
                           'local_domains = ["example.test"]\n'
                           '[auth]\nmin_password_length = 1\n')
    fast = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)

    def open_directory(config: Config) -> SqliteDirectory:
        return SqliteDirectory(config.data_path / "directory.db", config, hasher=fast)

    monkeypatch.setattr(accounts, "open_directory", open_directory)
    return Cli(config_path, capsys, monkeypatch)


def directory(data_dir: Path) -> SqliteDirectory:
    return SqliteDirectory(data_dir / "directory.db",
                           Config(hostname="h", local_domains=("example.test",)))


def test_user_add_from_stdin_creates_user_and_mailbox(cli: Cli, data_dir: Path) -> None:
    code, out, err = cli("user", "add", "Alice@Example.test", "--password-stdin",
                         stdin="s3cret pass\n")
    assert (code, err) == (0, "")
    assert "alice@example.test added" in out
    assert directory(data_dir).verify_password("alice@example.test", "s3cret pass")
    for sub in ("cur", "new", "tmp"):
        assert (data_dir / "mail" / "example.test" / "alice" / sub).is_dir()


def test_user_add_errors(cli: Cli) -> None:
    code, _, err = cli("user", "add", "x@nope.test", "--password-stdin", stdin="pw\n")
    assert code == 1 and "mailyard domain add nope.test" in err
    cli("user", "add", "alice@example.test", "--password-stdin", stdin="pw\n")
    code, _, err = cli("user", "add", "alice@example.test", "--password-stdin", stdin="pw\n")
    assert code == 1 and "exists" in err
    code, _, err = cli("user", "add", "bob@example.test", "--password-stdin", stdin="\n")
    assert code == 2 and "the password is empty" in err


def test_user_add_without_tty_needs_password_stdin(cli: Cli) -> None:
    code, _, err = cli("user", "add", "alice@example.test")
    assert code == 2 and "--password-stdin" in err


def test_user_add_prompts_on_a_tty(cli: Cli, monkeypatch: pytest.MonkeyPatch,
                                   data_dir: Path) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    answers = iter(["typed pw", "typed pw"])
    monkeypatch.setattr(accounts.getpass, "getpass", lambda prompt: next(answers))
    monkeypatch.setattr("sys.stdin", Tty())
    code = main(["user", "add", "alice@example.test", "--config", str(cli.config_path)])
    assert code == 0
    assert directory(data_dir).verify_password("alice@example.test", "typed pw")


def test_user_list_passwd_delete(cli: Cli, data_dir: Path) -> None:
    cli("user", "add", "bob@example.test", "--password-stdin", stdin="pw\n")
    cli("user", "add", "alice@example.test", "--password-stdin", stdin="pw\n")
    code, out, _ = cli("user", "list", "--json")
    assert code == 0
    users = json.loads(out)
    assert [u["address"] for u in users] == ["alice@example.test", "bob@example.test"]
    assert users[0]["scram"] is True and users[0]["created"] > 0
    code, out, _ = cli("user", "list")
    assert out.splitlines() == ["alice@example.test", "bob@example.test", "-- 2 user(s)"]

    code, _, _ = cli("user", "passwd", "alice@example.test", "--password-stdin", stdin="new\n")
    assert code == 0
    assert directory(data_dir).verify_password("alice@example.test", "new")
    code, _, err = cli("user", "passwd", "zed@example.test", "--password-stdin", stdin="x\n")
    assert code == 1 and "no such user" in err

    code, out, _ = cli("user", "delete", "alice@example.test")
    assert code == 0 and "mailbox is kept" in out
    code, _, err = cli("user", "delete", "alice@example.test")
    assert code == 1 and "no such user" in err
    assert [u["address"] for u in json.loads(cli("user", "list", "--json")[1])] == [
        "bob@example.test"]


def test_alias_commands(cli: Cli, data_dir: Path) -> None:
    cli("user", "add", "alice@example.test", "--password-stdin", stdin="pw\n")
    code, out, _ = cli("alias", "add", "team@example.test", "alice@example.test",
                       "Ext@remote.org")
    assert code == 0 and "team@example.test -> alice@example.test, Ext@remote.org" in out
    res = directory(data_dir).resolve("team@example.test")
    assert res.mailboxes == ("alice@example.test",) and res.external == ("Ext@remote.org",)
    code, out, _ = cli("alias", "list", "--json")
    assert json.loads(out)[0]["targets"] == ["alice@example.test", "Ext@remote.org"]
    code, _, _ = cli("alias", "delete", "team@example.test", "ext@remote.org")
    assert code == 0
    assert json.loads(cli("alias", "list", "--json")[1])[0]["targets"] == [
        "alice@example.test"]
    code, _, _ = cli("alias", "delete", "team@example.test")
    assert code == 0 and json.loads(cli("alias", "list", "--json")[1]) == []
    code, _, err = cli("alias", "delete", "team@example.test")
    assert code == 1 and "no such alias" in err
    code, _, err = cli("alias", "add", "x@nope.test", "a@example.test")
    assert code == 1 and "not local" in err


def test_alias_on_a_user_is_refused_without_force(cli: Cli, data_dir: Path) -> None:
    """An alias on a user's own address would divert all of its mail: refused (exit 2,
    one line) unless --force, which keeps the user's copy besides the targets."""
    cli("user", "add", "alice@example.test", "--password-stdin", stdin="pw\n")
    code, out, err = cli("alias", "add", "Alice@example.test", "boss@remote.org")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "alice@example.test is a user" in err and "--force" in err
    assert directory(data_dir).list_aliases() == []
    code, out, err = cli("alias", "add", "alice@example.test", "boss@remote.org", "--force")
    assert code == 0 and err == ""
    assert "alice@example.test -> alice@example.test, boss@remote.org" in out
    assert "copy kept in its mailbox" in out
    res = directory(data_dir).resolve("alice@example.test")
    assert res.mailboxes == ("alice@example.test",) and res.external == ("boss@remote.org",)
    # The alias now keeps the user's copy: more targets need no --force.
    code, _, _ = cli("alias", "add", "alice@example.test", "other@remote.org")
    assert code == 0
    # Naming the user itself among the targets is explicit enough.
    cli("user", "add", "bob@example.test", "--password-stdin", stdin="pw\n")
    code, out, _ = cli("alias", "add", "bob@example.test", "bob@example.test", "x@remote.org")
    assert code == 0 and "copy kept" not in out


def test_alias_add_needs_a_target(cli: Cli) -> None:
    with pytest.raises(SystemExit) as info:
        cli("alias", "add", "team@example.test")
    assert info.value.code == 2


def test_domain_commands(cli: Cli) -> None:
    code, _, _ = cli("domain", "add", "Other.TEST")
    assert code == 0
    code, out, _ = cli("domain", "list", "--json")
    assert json.loads(out) == [
        {"domain": "example.test", "config": True, "database": False},
        {"domain": "other.test", "config": False, "database": True},
    ]
    code, out, _ = cli("domain", "list")
    assert "example.test  (config)" in out and "other.test    (database)" in out
    code, _, err = cli("domain", "add", "example.test")
    assert code == 1 and "already local" in err
    code, _, err = cli("domain", "delete", "example.test")
    assert code == 1 and "configuration file" in err
    code, _, _ = cli("user", "add", "a@other.test", "--password-stdin", stdin="pw\n")
    assert code == 0
    code, _, err = cli("domain", "delete", "other.test")
    assert code == 1 and "delete them first" in err
    cli("user", "delete", "a@other.test")
    code, _, _ = cli("domain", "delete", "other.test")
    assert code == 0


@pytest.mark.parametrize("command", [
    ["user"], ["user", "add"], ["user", "list"], ["user", "delete"], ["user", "passwd"],
    ["alias"], ["alias", "add"], ["alias", "list"], ["alias", "delete"],
    ["domain"], ["domain", "add"], ["domain", "list"], ["domain", "delete"],
])
def test_every_command_has_help(cli: Cli, command: list[str],
                                capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: mailyard " + " ".join(command))
    assert "--config" in out


def test_handlers_callable_directly(tmp_path: Path) -> None:
    import argparse

    config = Config(hostname="h", data_dir=str(tmp_path), local_domains=("example.test",))
    args = argparse.Namespace(json=True)
    assert accounts.cmd_domain_list(args, config) == 0


def test_password_rules(tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The default minimum length is 10; an empty line is reported as empty."""
    config_path = tmp_path / "strict.toml"
    config_path.write_text(f'hostname = "mx.example.test"\ndata_dir = "{data_dir}"\n'
                           'local_domains = ["example.test"]\n')
    strict = Cli(config_path, capsys, monkeypatch)
    code, _, err = strict("user", "add", "a@example.test", "--password-stdin", stdin="\n")
    assert code == 2 and "the password is empty" in err
    code, _, err = strict("user", "add", "a@example.test", "--password-stdin", stdin="")
    assert code == 2 and "no password on standard input" in err
    code, _, err = strict("user", "add", "a@example.test", "--password-stdin", stdin="short\n")
    assert code == 2 and "at least 10" in err and "auth.min_password_length" in err
    code, _, err = strict("user", "add", "a@example.test", "--password-stdin",
                          stdin="long enough pw\n")
    assert code == 0, err
    code, _, err = strict("user", "passwd", "a@example.test", "--password-stdin", stdin="tiny\n")
    assert code == 2 and "too short" in err
