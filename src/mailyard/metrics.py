"""Every metric Mailyard exports, declared once, and the per-process figures.

A metric is a :class:`Metric` declared below (name, counter or gauge, help text, label
names), and code counts with the declared object: ``metrics.inc(CONNECTIONS,
listener="smtp")``.  A name typed wrong is then an ``ImportError``/``NameError``, not a
new series; wrong label names raise :class:`MetricError` at the call.  The exposition
takes ``# HELP`` and ``# TYPE`` from here, and a test checks that ``docs/operations.md``
lists exactly these metrics.

Each process keeps its own :class:`Metrics` and dumps them to
``<data_dir>/run/metrics/<pid>.json`` every few seconds; the metrics endpoint (and
``metrics.file``) add the files up, so a multi-process server reports one set of figures.
The supervisor removes the files of an earlier run at start, and when a worker dies it
keeps that worker's counters (so totals never go back) and drops its gauges.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

PREFIX = "mailyard_"

_Key = tuple[str, tuple[tuple[str, str], ...]]


class MetricError(ValueError):
    """A metric used against its declaration (unknown name, wrong labels or type)."""


@dataclass(frozen=True)
class Metric:
    name: str  # without PREFIX
    kind: Literal["counter", "gauge"]
    help: str
    labels: tuple[str, ...] = ()

    @property
    def exported_name(self) -> str:
        return PREFIX + self.name

    def key(self, labels: dict[str, str]) -> _Key:
        if not labels and not self.labels:  # most counters: no label to check or sort
            return self.name, ()
        if labels.keys() != set(self.labels):
            raise MetricError(f"{self.exported_name} takes the labels {self.labels}, "
                              f"not {tuple(sorted(labels))}")
        return self.name, tuple(sorted(labels.items()))


REGISTRY: dict[str, Metric] = {}


def _declare(name: str, kind: Literal["counter", "gauge"], help_text: str,
             *labels: str) -> Metric:
    if name in REGISTRY:
        raise MetricError(f"metric {name} declared twice")
    REGISTRY[name] = metric = Metric(name, kind, help_text, labels)
    return metric


# --- the metrics (keep docs/operations.md in step: a test compares) -------------------
CONNECTIONS = _declare("connections_total", "counter",
                       "SMTP connections accepted", "listener")
MESSAGES_ACCEPTED = _declare("messages_accepted_total", "counter",
                             "Messages acknowledged with 250")
MESSAGES_REJECTED = _declare("messages_rejected_total", "counter",
                             "SMTP transactions refused, by reason", "reason")
BYTES_RECEIVED = _declare("bytes_received_total", "counter",
                          "Message bytes received from SMTP clients")
AUTH_FAILURES = _declare("auth_failures_total", "counter",
                         "SMTP AUTH attempts that did not succeed")
SPF_RESULTS = _declare("spf_results_total", "counter",
                       "SPF results at MAIL FROM on port 25, by result", "result")
DELIVERY_ATTEMPTS = _declare("delivery_attempts_total", "counter",
                             "Delivery attempts per recipient", "result", "transport")
DELIVERY_POSTPONED = _declare("delivery_postponed_total", "counter",
                              "Queue entries pushed back because their destination is "
                              "suspended or over its share")
DELIVERY_ACTIVE = _declare("delivery_active", "gauge", "Queue entries being delivered now")
QUEUE_RECIPIENTS = _declare("queue_recipients", "gauge", "Queued recipients by state",
                            "state")
OUTBOUND_TLS = _declare("outbound_tls_sessions_total", "counter",
                        "TLS outcomes of outbound MX sessions (TLS-RPT), by policy type "
                        "and RFC 8460 result type ('success' when it worked)",
                        "policy", "result")
WORKER_RESTARTS = _declare("worker_restarts_total", "counter",
                           "SMTP worker processes restarted after dying")
FEEDBACK_REPORTS = _declare("feedback_reports_total", "counter",
                            "Messages to the bounce, unsubscribe and complaint addresses, "
                            "by address kind and verdict", "kind", "verdict")
FEEDBACK_ACTIONS = _declare("feedback_actions_total", "counter",
                            "Bounces, complaints, unsubscribes and delivery results "
                            "applied to contacts and campaigns, by action and source",
                            "action", "source")


def lookup(name: str) -> Metric:
    try:
        return REGISTRY[name]
    except KeyError:
        raise MetricError(f"no metric {name!r} is declared in mailyard.metrics") from None


class Metrics:
    """Counters and gauges of one process, keyed by (name, sorted labels)."""

    def __init__(self) -> None:
        self._values: dict[_Key, float] = {}
        self._lock = threading.Lock()

    def inc(self, metric: Metric, amount: float = 1, **labels: str) -> None:
        key = metric.key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0) + amount

    def set(self, metric: Metric, value: float, **labels: str) -> None:
        if metric.kind != "gauge":
            raise MetricError(f"{metric.exported_name} is a {metric.kind}: it cannot be set")
        key = metric.key(labels)
        with self._lock:
            self._values[key] = value

    def get(self, metric: Metric | str, **labels: str) -> float:
        """The current value (a declared name will do, for tests)."""
        m = lookup(metric) if isinstance(metric, str) else metric
        return self._values.get(m.key(labels), 0)

    def render(self) -> str:
        return render_prometheus(self._snapshot())

    def _snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "kinds": {n: REGISTRY[n].kind for n, _ in self._values},
                "values": _rows(self._values),
            }

    def dump(self, directory: str | os.PathLike[str]) -> None:
        """Write this process's values where the metrics endpoint adds them up."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{os.getpid()}.tmp"
        write_private(tmp, json.dumps(self._snapshot()))
        os.replace(tmp, d / f"{os.getpid()}.json")

    def add_counters(self, snap: dict[str, Any]) -> None:
        """Add the counters of a dumped snapshot (a process that is gone) to these;
        names this version does not declare are dropped."""
        for name, labels, value in _declared_values(snap):
            metric = REGISTRY[name]
            if metric.kind == "counter":
                self.inc(metric, value, **labels)


def _declared_values(snap: dict[str, Any]) -> list[tuple[str, dict[str, str], float]]:
    """The (name, labels, value) of a dumped snapshot whose name and label names match a
    declared metric (a file from another version may hold others)."""
    out = []
    for name, labels, value in snap.get("values", []):
        metric = REGISTRY.get(name)
        labels = {str(k): str(v) for k, v in labels}
        if metric is not None and labels.keys() == set(metric.labels):
            out.append((name, labels, float(value)))
    return out


def write_private(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to a new or truncated file readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def remove_metrics_files(directory: str | os.PathLike[str]) -> None:
    """At server start: remove the files of every process of an earlier run."""
    for path in Path(directory).glob("*.json"):
        path.unlink(missing_ok=True)
    for path in Path(directory).glob(".*.tmp"):
        path.unlink(missing_ok=True)


def retire_metrics_file(path: str | os.PathLike[str], into: Metrics) -> None:
    """A process is gone: keep its counters (added to ``into``) so totals do not go
    back, drop its gauges, and remove its file."""
    p = Path(path)
    with contextlib.suppress(OSError, ValueError, TypeError):
        into.add_counters(json.loads(p.read_text()))
    p.unlink(missing_ok=True)


def collect(directory: str | os.PathLike[str]) -> str:
    """Add up every process's dumped values into one Prometheus text exposition."""
    sums: dict[_Key, float] = {}
    for path in sorted(Path(directory).glob("*.json")):
        try:
            values = _declared_values(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue
        for name, labels, value in values:
            key = (name, tuple(sorted(labels.items())))
            # Counters and gauges alike add up: every process reports its own share.
            sums[key] = sums.get(key, 0) + value
    return render_prometheus({"values": _rows(sums)})


def _rows(values: dict[_Key, float]) -> list[list[Any]]:
    """The JSON form of keyed values: [name, [[label, value], ...], value]."""
    return [[name, [list(pair) for pair in labels], value]
            for (name, labels), value in values.items()]


def render_prometheus(snap: dict[str, Any]) -> str:
    """The Prometheus text format (version 0.0.4) of a snapshot's declared metrics,
    each with its ``# HELP`` and ``# TYPE``."""
    by_name: dict[str, list[str]] = {}
    for name, labels, value in snap["values"]:
        if name not in REGISTRY:
            continue
        lab = ",".join(f'{k}="{_escape_label(str(v))}"' for k, v in labels)
        sample = f"{PREFIX}{name}{{{lab}}} {value:g}" if lab else f"{PREFIX}{name} {value:g}"
        by_name.setdefault(name, []).append(sample)
    lines = []
    for name in sorted(by_name):
        metric = REGISTRY[name]
        lines.append(f"# HELP {metric.exported_name} {_escape_help(metric.help)}")
        lines.append(f"# TYPE {metric.exported_name} {metric.kind}")
        lines.extend(sorted(by_name[name]))
    return "\n".join(lines) + "\n"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")
