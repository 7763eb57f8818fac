"""``mailyard user quota`` through the real argument parser, and the default folders
``mailyard user add`` creates."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from mailyard.cli import accounts
from mailyard.cli.main import main
from mailyard.config import Config
from mailyard.directory.sqlite import SqliteDirectory
from mailyard.store.index import DEFAULT_FOLDERS, MailboxIndex
from mailyard.store.maildir import Maildir

MESSAGE = b"From: a@example.test\r\nSubject: hi\r\n\r\nHello\r\n"


class Cli:
    def __init__(self, config_path: Path, capsys: pytest.CaptureFixture[str],
                 monkeypatch: pytest.MonkeyPatch) -> None:
        self.config_path = config_path
        self.capsys = capsys
        self.monkeypatch = monkeypatch

    def __call__(self, *args: str, stdin: str = "") -> tuple[int, str, str]:
        self.monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        try:
            code = main([*args, "--config", str(self.config_path)])
        except SystemExit as exc:  # argparse refuses an argument
            code = int(exc.code or 0)
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
                           '[auth]\nmin_password_length = 1\n'
                           '[mailbox]\nquota_storage = 1048576\n')
    fast = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)

    def open_directory(config: Config) -> SqliteDirectory:
        return SqliteDirectory(config.data_path / "directory.db", config, hasher=fast)

    monkeypatch.setattr(accounts, "open_directory", open_directory)
    cli = Cli(config_path, capsys, monkeypatch)
    assert cli("user", "add", "alice@example.test", "--password-stdin", stdin="pw\n")[0] == 0
    return cli


def test_user_add_creates_the_index_with_the_special_use_folders(cli: Cli,
                                                                 data_dir: Path) -> None:
    """RFC 6154: Drafts, Sent, Junk, Trash, Archive, with their attributes."""
    inbox = Maildir(data_dir / "mail" / "example.test" / "alice")
    assert (inbox.path / "mailyard-index.db").is_file()
    for name in DEFAULT_FOLDERS:
        assert (inbox.path / f".{name}" / "maildirfolder").is_file()
    index = MailboxIndex(inbox)
    uses = {f.name: f.special_use for f in index.list_folders()}
    index.close()
    assert uses == {"INBOX": None, **DEFAULT_FOLDERS}


def test_show_set_and_reset(cli: Cli, data_dir: Path) -> None:
    inbox = Maildir(data_dir / "mail" / "example.test" / "alice")
    inbox.deliver(io.BytesIO(MESSAGE))  # waiting in new/: counted
    code, out, err = cli("user", "quota", "Alice@example.test")
    assert (code, err) == (0, "")
    assert out.split("\n")[0] == "alice@example.test"
    assert out.split("\n")[2].split() == ["storage", "44", "B", "1.0", "MiB", "default"]
    assert out.split("\n")[3].split() == ["messages", "1", "unlimited", "default"]

    code, out, _ = cli("user", "quota", "alice@example.test", "--storage", "2G",
                       "--messages", "500", "--json")
    assert code == 0
    assert json.loads(out) == {
        "address": "alice@example.test",
        "storage": {"usage": 44, "limit": 2 << 30, "source": "user"},
        "messages": {"usage": 1, "limit": 500, "source": "user"}}

    code, out, _ = cli("user", "quota", "alice@example.test", "--messages", "unlimited")
    assert code == 0 and out.startswith("quota of alice@example.test set\n")
    got = json.loads(cli("user", "quota", "alice@example.test", "--json")[1])
    assert got["storage"]["limit"] == 2 << 30  # kept
    assert got["messages"] == {"usage": 1, "limit": None, "source": "user"}

    cli("user", "quota", "alice@example.test", "--storage", "default", "--messages", "default")
    got = json.loads(cli("user", "quota", "alice@example.test", "--json")[1])
    assert got["storage"] == {"usage": 44, "limit": 1 << 20, "source": "default"}
    assert got["messages"]["source"] == "default"


@pytest.mark.parametrize("args", [("--storage", "2X"), ("--storage", "-1"),
                                  ("--storage", ""), ("--messages", "-3"),
                                  ("--messages", "1k"), ("--messages", "٣")])
def test_bad_values_are_usage_errors(cli: Cli, args: tuple[str, str]) -> None:
    code, out, err = cli("user", "quota", "alice@example.test", *args)
    assert code == 2 and out == "" and f"argument {args[0]}" in err
    assert "Traceback" not in err


def test_unknown_user(cli: Cli) -> None:
    code, _, err = cli("user", "quota", "nobody@example.test", "--messages", "3")
    assert code == 1 and "no such user: nobody@example.test" in err


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("unlimited", 0), ("default", None),
                                             ("500M", 500 << 20), ("1.5g", 3 << 29)])
def test_storage_argument(text: str, value: int | None) -> None:
    assert accounts.storage_argument(text) == value


def test_storage_argument_refuses() -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        accounts.storage_argument("lots")
