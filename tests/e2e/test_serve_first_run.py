"""``mailyard serve`` as a new user meets it: what it prints, and a second server on
the same data directory refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.mailyard_server import MailyardServer, free_port

pytestmark = pytest.mark.e2e


def test_second_serve_on_same_data_dir_is_refused(tmp_path: Path) -> None:
    metrics = f"127.0.0.1:{free_port()}"
    with MailyardServer(tmp_path, overrides={"metrics": {"listen": metrics}}) as srv:
        out = srv.output()
        assert f"metrics at http://{metrics}/metrics" in out
        assert "next, in another terminal" in out
        second = subprocess.run(
            [sys.executable, "-m", "mailyard.cli.main", "--config", str(srv.config_path),
             "serve"], capture_output=True, timeout=30)
        assert second.returncode == 2
        err = second.stderr.decode()
        assert "already running on" in err and str(srv.data_dir) in err
        assert "Traceback" not in err
        assert srv.proc is not None and srv.proc.poll() is None  # the first one still runs
    # Once the first has stopped, a new one starts.
    with MailyardServer(tmp_path):
        pass
