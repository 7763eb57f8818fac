"""The metric registry: declared metrics only, their labels checked, documented."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

import mailyard
from mailyard.metrics import (
    CONNECTIONS,
    DELIVERY_ACTIVE,
    DELIVERY_ATTEMPTS,
    MESSAGES_ACCEPTED,
    QUEUE_RECIPIENTS,
    REGISTRY,
    MetricError,
    Metrics,
    collect,
)

SRC = Path(mailyard.__file__).parent
DOCS = SRC.parents[1] / "docs" / "operations.md"


def test_labels_must_match_the_declaration() -> None:
    m = Metrics()
    m.inc(CONNECTIONS, listener="smtp")
    with pytest.raises(MetricError):
        m.inc(CONNECTIONS)
    with pytest.raises(MetricError):
        m.inc(CONNECTIONS, listener="smtp", extra="x")
    with pytest.raises(MetricError):
        m.inc(MESSAGES_ACCEPTED, reason="x")
    assert m.get(CONNECTIONS, listener="smtp") == 1


def test_a_counter_cannot_be_set_and_unknown_names_are_refused() -> None:
    m = Metrics()
    with pytest.raises(MetricError):
        m.set(MESSAGES_ACCEPTED, 3)
    with pytest.raises(MetricError):
        m.get("messages_acepted_total")  # the typo that used to make a new series
    m.set(DELIVERY_ACTIVE, 4)
    m.set(DELIVERY_ACTIVE, 2)
    assert m.get("delivery_active") == 2


def test_exposition_has_help_and_type_and_escapes_label_values() -> None:
    m = Metrics()
    m.inc(DELIVERY_ATTEMPTS, result="deferred", transport="smtp")
    m.inc(DELIVERY_ATTEMPTS, 2, result="delivered", transport="local")
    m.set(QUEUE_RECIPIENTS, 5, state='odd"state\\\n')
    lines = m.render().splitlines()
    assert lines[:4] == [
        "# HELP mailyard_delivery_attempts_total Delivery attempts per recipient",
        "# TYPE mailyard_delivery_attempts_total counter",
        'mailyard_delivery_attempts_total{result="deferred",transport="smtp"} 1',
        'mailyard_delivery_attempts_total{result="delivered",transport="local"} 2',
    ]
    assert lines[5] == "# TYPE mailyard_queue_recipients gauge"
    assert lines[6] == 'mailyard_queue_recipients{state="odd\\"state\\\\\\n"} 5'


def test_collect_adds_up_processes_and_drops_undeclared_series(tmp_path: Path) -> None:
    for pid, accepted in ((11, 2), (12, 3)):
        snap = {"kinds": {"messages_accepted_total": "counter", "renamed_total": "counter"},
                "values": [["messages_accepted_total", [], accepted],
                           ["renamed_total", [], 7],  # a name from another version
                           ["connections_total", [["wrong", "x"]], 1]]}
        (tmp_path / f"{pid}.json").write_text(json.dumps(snap))
    (tmp_path / "13.json").write_text("{not json")
    text = collect(tmp_path)
    assert "mailyard_messages_accepted_total 5" in text
    assert "renamed" not in text and "connections" not in text


def _calls_with_a_string_name(tree: ast.AST) -> list[int]:
    """Lines of ``<x>.metrics.inc("...")``-style calls (a name, not a declared metric)."""
    lines = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("inc", "set")
                and "metrics" in ast.unparse(node.func.value)
                and node.args and isinstance(node.args[0], ast.Constant)):
            lines.append(node.lineno)
    return lines


def test_every_call_site_counts_with_a_declared_metric() -> None:
    offenders = {str(p.relative_to(SRC)): lines for p in SRC.rglob("*.py")
                 if (lines := _calls_with_a_string_name(ast.parse(p.read_text())))}
    assert offenders == {}


def _documented() -> dict[str, tuple[str, tuple[str, ...]]]:
    rows = {}
    for line in DOCS.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"`mailyard_\w+`", cells[0]):
            labels = tuple(re.findall(r"`(\w+)`", cells[2]))
            rows[cells[0].strip("`")] = (cells[1], labels)
    return rows


def test_docs_list_every_declared_metric_and_no_other() -> None:
    declared = {m.exported_name: (m.kind, m.labels) for m in REGISTRY.values()}
    assert _documented() == declared
