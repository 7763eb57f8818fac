"""What ``mailyard serve`` prints once it listens: where, and what to do next."""

from __future__ import annotations

from collections.abc import Sequence

from mailyard.config import Config
from mailyard.daemon.listeners import Listener


def startup_lines(cfg: Config, listeners: Sequence[Listener], workers: int, pid: int) -> list[str]:
    lines = [f"mailyard: {listener.kind} listening on {listener.bound}" for listener in listeners]
    if cfg.metrics.listen:
        lines.append(f"mailyard: metrics at http://{cfg.metrics.listen}/metrics")
    if cfg.metrics.file:
        lines.append(f"mailyard: metrics written to {cfg.metrics.file}")
    lines.append(f"mailyard: data in {cfg.data_dir}; {workers} SMTP worker(s); pid {pid}")
    config_arg = f" --config {cfg.source}" if cfg.source else ""
    domain = cfg.local_domains[0] if cfg.local_domains else "example.org"
    lines.append("mailyard: next, in another terminal: "
                 f"mailyard{config_arg} domain add {domain}; "
                 f"mailyard{config_arg} user add you@{domain}; "
                 "then send mail to it on the smtp port, or with "
                 f"mailyard{config_arg} send --to you@{domain} --subject test. "
                 "Stop with Ctrl-C.")
    return lines
