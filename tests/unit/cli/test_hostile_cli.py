"""Every ``mailyard`` command, fed hostile arguments and input, answers with a message
and an exit status, never a traceback."""

from __future__ import annotations

import argparse
import io
import itertools
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from mailyard.cli import accounts
from mailyard.cli.main import build_parser, main
from mailyard.config import Config
from mailyard.directory.sqlite import SqliteDirectory

HOSTILE = ["", " ", "-", "--", "@", "a@", "@b", "..", "../../etc/passwd", "x" * 3000,
           "a\r\nb", "\x1b]0;x\x07", "ë@ü.test", "a@b@c", "<>", "%s%n", "alice@example.test",
           "[127.0.0.1]", "\udcff", "1" * 40]
STDIN = ["", "\n", "x" * 100_000, "\x00\x01\x02", "Subject: a\r\n\r\nbody\r\n", "\udcffé\n"]


def leaf_commands() -> list[tuple[list[str], argparse.ArgumentParser]]:
    """(command words, parser) for every command that runs something."""
    out: list[tuple[list[str], argparse.ArgumentParser]] = []

    def walk(words: list[str], parser: argparse.ArgumentParser) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            out.append((words, parser))
            return
        for name, child in subs[0].choices.items():
            walk([*words, name], child)

    walk([], build_parser())
    return out


def positional_count(parser: argparse.ArgumentParser) -> int:
    return sum(1 for a in parser._actions if not a.option_strings and a.nargs != 0
               and not isinstance(a, argparse._SubParsersAction))


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    config = tmp_path / "mailyard.toml"
    config.write_text(f'hostname = "mx.example.test"\ndata_dir = "{data}"\n'
                      'local_domains = ["example.test"]\n[listen]\nsmtp = ["127.0.0.1:1"]\n')
    fast = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)

    def open_directory(cfg: Config) -> SqliteDirectory:
        return SqliteDirectory(cfg.data_path / "directory.db", cfg, hasher=fast)

    monkeypatch.setattr(accounts, "open_directory", open_directory)
    monkeypatch.chdir(tmp_path)
    return config


def run(argv: list[str], stdin: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors
        code = exc.code if isinstance(exc.code, int) else 2
    err = capsys.readouterr().err
    return code, err


def test_every_command_is_covered() -> None:
    names = {" ".join(words) for words, _ in leaf_commands()}
    assert {"serve", "init", "user add", "queue show", "sendmail", "send"} <= names


@pytest.mark.parametrize("words", [w for w, _ in leaf_commands() if w != ["serve"]],
                         ids=lambda w: "-".join(w))
def test_hostile_arguments_never_raise(words: list[str], env: Path,
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    parser = dict((tuple(w), p) for w, p in leaf_commands())[tuple(words)]
    n = max(1, positional_count(parser))
    extra: list[list[str]] = [["--json"], ["--headers"], ["--password-stdin"], ["-t"],
                              ["-f", "a\r\nb"], ["-F", "Eve\r\nBcc: x@y"], ["--to", "\r\n"],
                              ["--subject", "a\r\nb"], ["--force"], ["--output", "/proc/x/y"],
                              ["--hostname", "a b"], ["--domain", "@"]]
    cases = 0
    for values, stdin in zip(itertools.product(HOSTILE, repeat=1), itertools.cycle(STDIN)):
        for flags in [[], *extra]:
            argv = [*words, *([values[0]] * n), *flags, "--config", str(env)]
            code, err = run(argv, stdin, monkeypatch, capsys)
            cases += 1
            assert "Traceback" not in err, (argv, err)
            assert code in (0, 1, 2), (argv, code, err)
            if code:
                assert err.strip(), (argv, "failed without a message")
    assert cases > 100


def test_serve_with_hostile_configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    bad = {
        "not-utf8.toml": b'hostname = "mx.\xff.test"\n',
        "not-toml.toml": b"[listen\n",
        "empty-listen.toml": b"[listen]\nsmtp = []\n",
        "unwritable.toml": b'data_dir = "/proc/mailyard-test"\n[listen]\nsmtp = ["127.0.0.1:1"]\n',
        "bad-port.toml": b'[listen]\nsmtp = ["127.0.0.1:99999"]\n',
    }
    for name, text in bad.items():
        path = tmp_path / name
        path.write_bytes(text)
        code, err = run(["serve", "--config", str(path)], "", monkeypatch, capsys)
        assert code == 2, (name, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, (name, err)
