"""``mailyard contact import`` draws a progress bar when standard output is a terminal
(a pseudo-terminal here), and prints only the summary otherwise."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path


def run(tmp_path: Path, *args: str, tty: bool) -> tuple[int, str]:
    config = tmp_path / "mailyard.toml"
    config.write_text(f'hostname = "mx.example.org"\ndata_dir = "{tmp_path / "data"}"\n')
    cmd = [sys.executable, "-m", "mailyard.cli.main", "--config", str(config), *args]
    if not tty:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        return res.returncode, res.stdout
    main, child = pty.openpty()
    proc = subprocess.Popen(cmd, stdout=child, stderr=subprocess.STDOUT,
                            env={**os.environ, "COLUMNS": "100", "TERM": "xterm"})
    os.close(child)
    out = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(main)
    return proc.wait(60), out.decode(errors="replace")


def test_progress_bar_only_on_a_terminal(tmp_path: Path) -> None:
    data = tmp_path / "c.csv"
    data.write_text("email\n" + "".join(f"u{i}@example.org\n" for i in range(5000)))
    assert run(tmp_path, "list", "create", "l", tty=False)[0] == 0
    code, out = run(tmp_path, "contact", "import", str(data), "--list", "l", tty=True)
    assert code == 0 and "importing" in out and "5000 new" in out
    code, out = run(tmp_path, "contact", "import", str(data), "--list", "l", tty=False)
    assert code == 0 and "importing" not in out and "5000 unchanged" in out
