"""``mailyard domain dkim show|rotate`` through the real argument parser: the first key
signs at once, a rotation is published first and switched second."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mailyard.cli.main import main
from mailyard.dkim.keys import KeyStore
from mailyard.dkim.record import parse_key_record


@pytest.fixture
def run(tmp_path: Path, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    config_path = tmp_path / "mailyard.toml"
    config_path.write_text(f'hostname = "mx.example.test"\ndata_dir = "{tmp_path / "data"}"\n'
                           'local_domains = ["example.test"]\n')

    def cli(*args: str) -> tuple[int, str, str]:
        code = main([*args, "--config", str(config_path)])
        out, err = capsys.readouterr()
        return code, out, err
    return cli


def test_first_key_then_rotation(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run("domain", "dkim", "show", "example.test")
    assert code == 0 and "no DKIM key" in out
    code, out, err = run("domain", "dkim", "rotate", "example.test", "--json")
    [first] = json.loads(out)
    assert code == 0 and first["state"] == "active" and first["selector"] == "mailyard"
    assert first["name"] == "mailyard._domainkey.example.test" and first["type"] == "TXT"
    assert parse_key_record(first["value"]).bits == 2048
    code, out, err = run("domain", "dkim", "rotate", "example.test")
    assert code == 0 and " pending " in out and "--switch" in err
    store = KeyStore(tmp_path / "data")
    assert [k.selector for k in store.signing_keys("example.test")] == ["mailyard"]
    code, out, _ = run("domain", "dkim", "rotate", "example.test", "--switch")
    assert code == 0 and "keep the retired records published" in out
    shown = json.loads(run("domain", "dkim", "show", "example.test", "--json")[1])
    states = {s["selector"]: s["state"] for s in shown["selectors"]}
    assert states["mailyard"] == "retired" and list(states.values()).count("active") == 1
    # a new reader (the server's processes see a change within dkim.keys.RECHECK)
    fresh = KeyStore(tmp_path / "data")
    assert [k.selector for k in fresh.signing_keys("example.test")] != ["mailyard"]


def test_first_keys_follow_the_configured_algorithms(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    config_path = tmp_path / "mailyard.toml"
    config_path.write_text(f'hostname = "mx.example.test"\ndata_dir = "{tmp_path / "d"}"\n'
                           'local_domains = ["example.test"]\n[dkim]\n'
                           'algorithms = ["rsa-sha256", "ed25519-sha256"]\n')
    assert main(["domain", "dkim", "rotate", "example.test", "--json",
                 "--config", str(config_path)]) == 0
    made = json.loads(capsys.readouterr().out)
    assert [(m["selector"], m["state"], m["algorithm"]) for m in made] == [
        ("mailyard", "active", "rsa-sha256"), ("mailyard-ed", "active", "ed25519-sha256")]


def test_ed25519_and_refusals(run) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run("domain", "dkim", "rotate", "example.test", "--algorithm",
                       "ed25519-sha256")
    assert code == 0 and "mailyard-ed" in out and "k=ed25519" in out
    code, _, err = run("domain", "dkim", "rotate", "other.test")
    assert code == 1 and "not a local domain" in err
    code, _, err = run("domain", "dkim", "rotate", "example.test", "--switch")
    assert code == 1 and "no pending DKIM key" in err
    code, _, err = run("domain", "dkim", "rotate", "example.test", "--algorithm", "dsa")
    assert code == 1 and "unknown algorithm" in err
