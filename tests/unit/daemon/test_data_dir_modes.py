"""The supervisor's start-up repair of the data directory's modes agrees with the
maildrop's (queue/pickup.py): data_dir keeps the search bits for others (0711) and
loses everything else; its private subdirectories are 0700."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mailyard.config import Config, TlsConfig
from mailyard.daemon.supervisor import prepare_data_dir
from mailyard.queue.pickup import MaildropPaths


def _config(data: Path) -> Config:
    return Config(hostname="mx.example.test", data_dir=str(data),
                  tls=TlsConfig(cert="/nonexistent/cert.pem", key="/nonexistent/key.pem"))


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_loose_data_dir_is_repaired_to_what_the_maildrop_keeps(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "queue").mkdir()
    os.chmod(data, 0o755)
    os.chmod(data / "queue", 0o711)
    prepare_data_dir(_config(data))
    assert _mode(data) == 0o711
    assert _mode(data / "queue") == 0o700


def test_modes_stay_put_from_one_start_to_the_next(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = _config(data)
    for _ in range(2):
        prepare_data_dir(config)
        MaildropPaths(data).prepare()
        assert (_mode(data), _mode(data / "maildrop")) == (0o711, 0o1733)
    ctime = os.stat(data).st_ctime_ns
    prepare_data_dir(config)  # a third start: data_dir's mode is not touched
    assert os.stat(data).st_ctime_ns == ctime
    assert _mode(data) == 0o711


def test_a_private_data_dir_stays_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    os.chmod(data, 0o700)
    prepare_data_dir(_config(data))
    assert _mode(data) == 0o700  # the maildrop adds the search bits when it starts
