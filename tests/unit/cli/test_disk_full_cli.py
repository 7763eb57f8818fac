"""A full disk under a CLI command: one line on stderr and exit status 1, whether the
disk said ENOSPC/EDQUOT or SQLite said "database or disk is full"."""

from __future__ import annotations

import errno
import io
import sqlite3
from pathlib import Path

import pytest

from mailyard.cli import accounts
from mailyard.cli.main import main
from mailyard.config import Config


@pytest.mark.parametrize("failure", [
    OSError(errno.ENOSPC, "No space left on device"),
    OSError(errno.EDQUOT, "Disk quota exceeded"),
    sqlite3.OperationalError("database or disk is full"),
])
def test_user_add_on_a_full_disk(failure: Exception, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "mailyard.toml"
    config.write_text(f'hostname = "mx.example.test"\ndata_dir = "{tmp_path / "data"}"\n'
                      'local_domains = ["example.test"]\n')

    def open_directory(cfg: Config) -> None:
        raise failure

    monkeypatch.setattr(accounts, "open_directory", open_directory)
    monkeypatch.setattr("sys.stdin", io.StringIO("secret-password\n"))
    code = main(["--config", str(config), "user", "add", "ann@example.test",
                 "--password-stdin"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("mailyard: not enough disk space in "), err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
