"""``mailyard check bounce FILE [--json] [--rcpt ADDR]``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from mailyard.cli.main import main
from mailyard.daemon.secret import load_server_secret
from mailyard.feedback.verp import CampaignRecipient, verp_address, verp_key

SAMPLES = Path(__file__).parent.parent / "feedback" / "samples"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    path = tmp_path / "mailyard.toml"
    path.write_text(f'hostname = "mx.example.test"\ndata_dir = "{data}"\n'
                    'local_domains = ["lists.example.org"]\n')
    return path


def verp_for(config: Path) -> str:
    secret = load_server_secret(config.parent / "data")
    return verp_address(CampaignRecipient(42, 1001), verp_key(secret), "lists.example.org")


def sample_file(tmp_path: Path, name: str, verp: str = "bounces+x@lists.example.org") -> Path:
    token = verp.partition("+")[2].partition("@")[0]
    out = tmp_path / name
    out.write_bytes((SAMPLES / name).read_bytes().replace(b"TOKEN", token.encode()))
    return out


def test_text_output(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    verp = verp_for(config)
    path = sample_file(tmp_path, "exim.eml", verp)
    assert main(["check", "bounce", str(path), "--config", str(config)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "hard-bounce (exim)"
    assert out[1] == "recipient: gone@example.com  hard  failed  5.1.1"
    assert "  message-id: <nov-8@lists.example.org>" in out
    assert "verp: campaign 42, contact 1001" in out


def test_json_with_envelope_recipient(config: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    verp = verp_for(config)
    path = sample_file(tmp_path, "postfix-plain.eml", verp)
    assert main(["check", "bounce", str(path), "--json", "--rcpt", verp,
                 "--config", str(config)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "soft-bounce" and data["format"] == "postfix"
    assert data["recipients"][0]["status"] == "5.2.2"
    assert data["target"] == {"campaign_id": 42, "contact_id": 1001}


def test_forged_token_is_reported(config: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    verp_for(config)  # the server has a secret; this token was not made with it
    path = sample_file(tmp_path, "qmail.eml", "bounces+aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@x")
    assert main(["check", "bounce", str(path), "--config", str(config), "--rcpt",
                 "bounces+aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@lists.example.org"]) == 0
    out = capsys.readouterr().out
    assert "hard-bounce (qmail)" in out
    assert "verp: the recipient is not a VERP address of this server" in out


def test_no_secret_yet_is_said_not_created(config: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = sample_file(tmp_path, "ooo-rfc3834.eml")
    assert main(["check", "bounce", str(path), "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("auto-reply (auto-reply)")
    assert "no server secret" in out
    assert not (config.parent / "data" / "server-secret").exists()


def test_standard_input(config: Path, capsys: pytest.CaptureFixture[str],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    raw = (SAMPLES / "rfc5965-abuse.eml").read_bytes()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(raw)))
    assert main(["check", "bounce", "-", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("complaint (rfc5965)")
    assert "complaint: feedback-type abuse" in out
    assert "  source-ip: 192.0.2.1" in out


def test_terminal_escapes_in_a_report_are_shown_escaped(
        config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "evil.eml"
    path.write_bytes(b"From: MAILER-DAEMON@x.example\r\nSubject: Undelivered\r\n\r\n"
                     b"<a@example.org>: 550 5.1.1 \x1b]0;pwned\x07 unknown\r\n")
    assert main(["check", "bounce", str(path), "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b" in out


def test_missing_file(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "bounce", str(tmp_path / "nope.eml"), "--config", str(config)]) == 1
    assert "No such file" in capsys.readouterr().err


def test_check_without_a_name(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(config)]) == 2
    assert "name a check" in capsys.readouterr().err
