"""A new user's first commands: init, --version, configuration files as editors write
them, one server per data directory, and clear words for every mistake."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from mailyard import __version__
from mailyard.cli.main import main
from mailyard.config import ConfigError, default_listen, load_config, parse_config
from mailyard.daemon.lock import AlreadyRunning, acquire_serve_lock
from tests.support.ports import free_port

# As root, serve runs as `user` (default "mailyard"); these tests stay who they are.
AS_IS = 'user = "root"\nallow_root = true\n' if os.geteuid() == 0 else ""


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"mailyard {__version__}"


def test_init_writes_a_config_that_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--hostname", "mx.example.org"]) == 0
    out = capsys.readouterr().out
    assert "wrote mailyard.toml" in out and "user add you@example.org" in out
    path = tmp_path / "mailyard.toml"
    assert path.stat().st_mode & 0o777 == 0o600
    cfg = load_config(path)
    assert cfg.hostname == "mx.example.org"
    assert cfg.local_domains == ("example.org",)
    assert cfg.listen == default_listen() and not cfg.listen_defaulted
    assert cfg.data_dir == str(tmp_path / "mailyard-data")
    # The commands read ./mailyard.toml by themselves.
    assert main(["domain", "list"]) == 0
    assert "example.org" in capsys.readouterr().out
    # No silent overwrite.
    assert main(["init"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["init", "--force", "--domain", "a.test", "--domain", "b.test"]) == 0
    assert load_config(path).local_domains == ("a.test", "b.test")


def test_init_refuses_bad_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.toml"
    assert main(["init", "-o", str(out), "--hostname", "bad host"]) == 2
    assert "hostname" in capsys.readouterr().err and not out.exists()


def test_init_ignores_a_broken_config_in_the_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mailyard.toml").write_text("[broken\n")
    assert main(["init", "-o", "new.toml"]) == 0


def test_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b'\xef\xbb\xbfhostname = "mx.example.test"\n')
    assert load_config(path).hostname == "mx.example.test"


def test_not_utf8_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'hostname = "mx.example.test"\n# caf\xe9\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "not UTF-8 (line 2" in str(info.value)


def test_unknown_key_suggests_the_closest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config('hostnme = "x.test"\n')
    assert "did you mean 'hostname'" in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_config('[smtpd]\nmax_mesage_size = 1\n')
    assert "smtpd.max_mesage_size" in str(info.value)
    assert "did you mean 'max_message_size'" in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_config('zzzzzz = 1\n')
    assert "did you mean" not in str(info.value)


def test_no_listen_table_falls_back_to_the_defaults() -> None:
    cfg = parse_config('hostname = "mx.example.test"\n')
    assert cfg.listen == default_listen() and cfg.listen_defaulted
    cfg = parse_config('hostname = "mx.example.test"\n[listen]\nsmtp = ["127.0.0.1:2525"]\n')
    assert cfg.listen.smtp == ("127.0.0.1:2525",) and not cfg.listen_defaulted


def test_serve_refuses_to_listen_on_nothing(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.toml"
    path.write_text(f'data_dir = "{tmp_path}/d"\n[listen]\nsmtp = []\n')
    assert main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "listen: no listener configured" in err


def test_one_server_per_data_dir(tmp_path: Path) -> None:
    fd = acquire_serve_lock(tmp_path / "data")
    try:
        with pytest.raises(AlreadyRunning) as info:
            acquire_serve_lock(tmp_path / "data")
        assert "already running" in str(info.value) and "pid" in str(info.value)
    finally:
        os.close(fd)
    os.close(acquire_serve_lock(tmp_path / "data"))  # released with its descriptor


def test_port_in_use_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        path = tmp_path / "m.toml"
        path.write_text(f'{AS_IS}data_dir = "{tmp_path}/d"\n'
                        f'[listen]\nsubmission = ["127.0.0.1:{port}"]\n')
        assert main(["serve", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "listen.submission" in err and "change listen.submission in" in err


def test_os_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    path = tmp_path / "m.toml"
    path.write_text(f'data_dir = "{blocker}/data"\n')
    assert main(["queue", "list", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Not a directory" in err and "data_dir" in err


def test_data_dir_owned_by_another_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """As another user, chmod on data_dir fails with EPERM: one line naming data_dir."""
    import errno

    from mailyard.daemon import supervisor

    data = tmp_path / "d"
    data.mkdir()
    os.chmod(data, 0o755)  # looser than serve wants: it repairs the mode, and fails

    def chmod(path: object, mode: int, *a: object, **k: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted", str(path))

    def never(*a: object, **k: object) -> None:
        raise AssertionError("the server must not start")

    monkeypatch.setattr(os, "chmod", chmod)
    monkeypatch.setattr(supervisor.Supervisor, "start_workers", never)
    path = tmp_path / "m.toml"
    path.write_text(f'{AS_IS}data_dir = "{data}"\n[listen]\nsmtp = ["127.0.0.1:{free_port()}"]\n')
    assert main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Operation not permitted" in err and str(data) in err


def test_crashed_dispatcher_stops_serve_with_one_line(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from mailyard.delivery import dispatcher

    async def crash(self: object) -> None:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(dispatcher.Dispatcher, "run", crash)
    log = tmp_path / "log"
    path = tmp_path / "m.toml"
    path.write_text(f'{AS_IS}data_dir = "{tmp_path}/d"\n'
                    f'[listen]\nsmtp = ["127.0.0.1:{free_port()}"]\n'
                    f'[smtpd]\nworkers = 1\n[log]\nfile = "{log}"\n')
    assert main(["serve", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "delivery stopped on an internal error (RuntimeError: injected fault)" in err
    assert "Traceback" not in err
    text = log.read_text()
    assert "dispatcher crashed; stopping" in text and "traceback=" in text and "crash" in text
