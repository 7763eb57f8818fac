"""Observability: structured log lines and Prometheus-format counters.

``log_event`` writes one line per event, as ``key=value`` text or JSON depending on
``[log] format``.  ``Metrics`` keeps counters and gauges per process; each process
dumps its values to ``<data_dir>/run/metrics/<pid>.prom`` and the metrics endpoint
adds the files up, so a multi-process server reports one set of figures.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

_JSON = False


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        fields = getattr(record, "fields", None)
        if fields is None:
            return f"{ts} {record.levelname.lower()} {record.name}: {record.getMessage()}"
        parts = [f"{ts} {record.levelname.lower()} {record.name}: {record.getMessage()}"]
        for k, v in fields.items():
            s = str(v)
            if not s or any(c in s for c in ' "='):
                s = json.dumps(s, ensure_ascii=False)
            parts.append(f"{k}={s}")
        return " ".join(parts)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        out.update(getattr(record, "fields", None) or {})
        return json.dumps(out, ensure_ascii=False, default=str)


def setup_logging(fmt: str = "text", level: str = "info", file: str = "") -> None:
    handler: logging.Handler = (
        logging.FileHandler(file) if file else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    root = logging.getLogger("mailyard")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """One structured line: ``event`` plus ``fields`` (queue id, client, from, to, ...)."""
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"fields": fields})


class Metrics:
    """Counters and gauges of one process, keyed by (name, sorted labels)."""

    def __init__(self) -> None:
        self._values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._kinds: dict[str, str] = {}
        self._lock = threading.Lock()

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._kinds.setdefault(name, "counter")
            self._values[key] = self._values.get(key, 0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._kinds.setdefault(name, "gauge")
            self._values[key] = value

    def get(self, name: str, **labels: str) -> float:
        return self._values.get((name, tuple(sorted(labels.items()))), 0)

    def render(self) -> str:
        return render_prometheus(self._snapshot())

    def _snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "kinds": dict(self._kinds),
                "values": [[n, list(map(list, l)), v] for (n, l), v in self._values.items()],
            }

    def dump(self, directory: str | os.PathLike[str]) -> None:
        """Write this process's values where the metrics endpoint adds them up."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{os.getpid()}.tmp"
        tmp.write_text(json.dumps(self._snapshot()))
        os.replace(tmp, d / f"{os.getpid()}.json")


def collect(directory: str | os.PathLike[str]) -> str:
    """Add up every process's dumped values into one Prometheus text exposition."""
    total: dict[str, Any] = {"kinds": {}, "values": []}
    sums: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for path in sorted(Path(directory).glob("*.json")):
        try:
            snap = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        total["kinds"].update(snap["kinds"])
        for name, labels, value in snap["values"]:
            key = (name, tuple(tuple(x) for x in labels))
            if snap["kinds"].get(name) == "gauge" and not name.endswith("_total"):
                sums[key] = sums.get(key, 0) + value
            else:
                sums[key] = sums.get(key, 0) + value
    total["values"] = [[n, list(map(list, l)), v] for (n, l), v in sums.items()]
    return render_prometheus(total)


def render_prometheus(snap: dict[str, Any]) -> str:
    by_name: dict[str, list[str]] = {}
    for name, labels, value in snap["values"]:
        lab = ",".join(f'{k}="{v}"' for k, v in labels)
        sample = f"mailyard_{name}{{{lab}}} {value:g}" if lab else f"mailyard_{name} {value:g}"
        by_name.setdefault(name, []).append(sample)
    lines = []
    for name in sorted(by_name):
        lines.append(f"# TYPE mailyard_{name} {snap['kinds'].get(name, 'counter')}")
        lines.extend(sorted(by_name[name]))
    return "\n".join(lines) + "\n"
