"""The default envelope sender of ``mailyard send``/``sendmail`` can receive bounces."""

from __future__ import annotations

from pathlib import Path

import pytest
from argon2 import PasswordHasher

from mailyard.cli import send
from mailyard.config import Config
from mailyard.directory.sqlite import SqliteDirectory


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(hostname="mx.example.test", data_dir=str(tmp_path),
                  local_domains=("example.test", "other.test"))


def test_own_address_when_it_exists(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    d = SqliteDirectory(config.data_path / "directory.db", config,
                        hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    d.add_user("alice@example.test", "pw")
    monkeypatch.setattr(send, "local_user", lambda: "alice")
    assert send.default_sender(config) == "alice@example.test"
    monkeypatch.setattr(send, "local_user", lambda: "root")
    assert send.default_sender(config) == "postmaster@example.test"


def test_postmaster_without_a_directory(config: Config,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(send, "local_user", lambda: "root")
    assert send.default_sender(config) == "postmaster@example.test"
    assert not (config.data_path / "directory.db").exists()  # not created by a lookup


def test_domain_added_in_the_database(tmp_path: Path) -> None:
    config = Config(hostname="mx.example.test", data_dir=str(tmp_path))
    assert send.default_sender(config) == "postmaster@mx.example.test"
    SqliteDirectory(config.data_path / "directory.db", config).add_domain("db.test")
    assert send.default_sender(config) == "postmaster@db.test"
