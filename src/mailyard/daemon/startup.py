"""What ``mailyard serve`` prints once it listens: where, and what to do next."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from mailyard.config import Config
from mailyard.daemon.listeners import Listener


def startup_lines(cfg: Config, listeners: Sequence[Listener], workers: int, pid: int) -> list[str]:
    lines = [f"mailyard: {listener.kind} listening on {listener.bound}" for listener in listeners]
    if any(listener.kind in ("http", "https") for listener in listeners):
        from mailyard.services.setup import public_url

        lines.append(f"mailyard: API docs at {public_url(cfg)}/api/docs")
    if cfg.metrics.listen:
        lines.append(f"mailyard: metrics at http://{cfg.metrics.listen}/metrics")
    if cfg.metrics.file:
        lines.append(f"mailyard: metrics written to {cfg.metrics.file}")
    lines.append(f"mailyard: data in {cfg.data_dir}; {workers} worker process(es); pid {pid}")
    command = _command() + (f" --config {cfg.source}" if cfg.source else "")
    if cfg.local_domains:
        domain, steps = cfg.local_domains[0], []
    else:
        domain = "example.org"
        steps = [f"{command} domain add {domain}"]
    steps.append(f"{command} user add you@{domain}")
    lines.append("mailyard: next, in another terminal: " + "; ".join(steps) +
                 f"; then send mail to you@{domain} on the smtp port. Stop with Ctrl-C.")
    return lines


def _command() -> str:
    """How to call the CLI from another terminal: the bare name when it is on PATH,
    else the script beside this interpreter (a virtual environment's bin/)."""
    beside = Path(sys.executable).parent / "mailyard"
    found = shutil.which("mailyard")
    if found and (not beside.exists() or Path(found).resolve() == beside.resolve()):
        return "mailyard"
    return str(beside) if beside.exists() else "mailyard"
