"""``mailyard queue show`` through the real argument parser."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mailyard.cli.main import main
from mailyard.cli.spool_access import open_spool
from mailyard.config import load_config
from mailyard.envelope import Envelope, Recipient


def test_queue_show_labels_the_client_line(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The client line says which value is the HELO name and which the IP address."""
    config_path = tmp_path / "mailyard.toml"
    config_path.write_text(f'hostname = "mx.example.test"\ndata_dir = "{tmp_path / "data"}"\n'
                           'local_domains = ["example.test"]\n')
    config = load_config(config_path)
    env = Envelope(sender="carol@remote.test", recipients=(Recipient("bob@example.test"),),
                   client_ip="192.0.2.7", client_helo="client.remote.test")
    qid = asyncio.run(open_spool(config).enqueue(env, b"Subject: x\r\n\r\nbody\r\n"))
    assert main(["queue", "show", qid, "--config", str(config_path)]) == 0
    out = capsys.readouterr().out
    assert "Client:      helo=client.remote.test ip=192.0.2.7\n" in out


def test_queue_list_json_carries_the_structured_reply(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The last reply comes out as code, status, text and origin, not only a string."""
    import json

    from mailyard.queue.api import Outcome, RecipientState
    from tests.support.replies import reply

    config_path = tmp_path / "mailyard.toml"
    config_path.write_text(f'hostname = "mx.example.test"\ndata_dir = "{tmp_path / "data"}"\n'
                           'local_domains = ["example.test"]\n')
    config = load_config(config_path)
    spool = open_spool(config)
    env = Envelope(sender="carol@example.test", recipients=(Recipient("bob@remote.test"),))
    qid = asyncio.run(spool.enqueue(env, b"Subject: x\r\n\r\nbody\r\n"))
    spool.claim_due(0.0, 10, 60)
    spool.record(qid, [Outcome(0, RecipientState.DEFERRED,
                               reply(450, "4.2.1", "greylisted", "mx.remote.test"), 9e9)])
    assert main(["queue", "list", "--json", "--config", str(config_path)]) == 0
    [entry] = json.loads(capsys.readouterr().out)
    rcpt = entry["recipients"][0]
    assert rcpt["reply"] == {"code": 450, "status": "4.2.1", "text": "greylisted",
                             "origin": "remote", "host": "mx.remote.test"}
    assert rcpt["last_reply"] == "450 4.2.1 greylisted"
    assert main(["queue", "show", qid, "--config", str(config_path)]) == 0
    assert "last reply: 450 4.2.1 greylisted (from mx.remote.test)" in capsys.readouterr().out
