"""Fixtures of the local delivery tests: a configuration with one local domain and a
directory with two users in it."""

from __future__ import annotations

from pathlib import Path

import pytest
from argon2 import PasswordHasher

from mailyard.config import Config
from mailyard.directory.sqlite import SqliteDirectory


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(hostname="mx.example.test", data_dir=str(tmp_path),
                  local_domains=("example.test",))


@pytest.fixture
def directory(tmp_path: Path, config: Config) -> SqliteDirectory:
    d = SqliteDirectory(tmp_path / "directory.db", config,
                        hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    d.add_user("alice@example.test", "pw")
    d.add_user("bob@example.test", "pw")
    return d
