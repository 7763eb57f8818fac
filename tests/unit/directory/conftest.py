"""Fixtures for the directory tests: a config with two local domains and a directory
whose argon2 parameters are small, so hashing is fast."""

from __future__ import annotations

from pathlib import Path

import pytest
from argon2 import PasswordHasher

from mailyard.config import Config
from mailyard.directory.sqlite import SqliteDirectory

FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(hostname="mx.example.test", data_dir=str(tmp_path),
                  local_domains=("example.test", "config.test"))


@pytest.fixture
def directory(tmp_path: Path, config: Config) -> SqliteDirectory:
    d = SqliteDirectory(tmp_path / "directory.db", config, hasher=FAST_HASHER)
    yield d
    d.close()
