"""Segments run against an in-memory SQLite database with the contacts and events
tables, and injection attempts that must stay values."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator

import pytest

from mailyard.bulk.segments import SegmentError, SegmentSchema, compile_segment, parse

NOW = 1_780_000_000.0
DAY = 86_400.0
SCHEMA_SQL = """
CREATE TABLE contacts (id INTEGER PRIMARY KEY, address TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL DEFAULT '', attributes TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'active', created REAL NOT NULL);
CREATE TABLE events (id INTEGER PRIMARY KEY, contact_id INTEGER NOT NULL,
    kind TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE secrets (value TEXT);
INSERT INTO secrets VALUES ('hunter2');
"""
CONTACTS = [
    # id, address, name, attributes, created (days ago)
    (1, "anna@example.de", "Anna", {"plan": "pro", "country": "DE", "age": 34,
                                    "signup_date": "2025-11-02", "vip": True}, 400),
    (2, "bert@example.at", "Bert", {"plan": "pro", "country": "AT", "age": "41",
                                    "signup_date": "2026-02-10"}, 10),
    (3, "carla@gmail.com", "Carla", {"plan": "free", "country": "DE", "age": "n/a",
                                     "vip": False}, 3),
    (4, "dora@gmail.com", "", {"plan": "pro", "country": "FR", "first name": "Do",
                               'we"ird': "q", "straße": "x", "nothing": None}, 90),
    (5, "emil@example.ch", "Emil", {}, 1),
]
EVENTS = [(1, "opened", 5), (1, "clicked", 40), (2, "opened", 45), (3, "clicked", 2),
          (4, "opened", 29.9)]


@pytest.fixture
def db() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:")
    conn.executescript(SCHEMA_SQL)
    conn.executemany("INSERT INTO contacts (id, address, name, attributes, created) "
                     "VALUES (?, ?, ?, ?, ?)",
                     [(i, a, n, json.dumps(attrs, ensure_ascii=False), NOW - d * DAY)
                      for i, a, n, attrs, d in CONTACTS])
    conn.executemany("INSERT INTO events (contact_id, kind, at) VALUES (?, ?, ?)",
                     [(c, k, NOW - d * DAY) for c, k, d in EVENTS])
    yield conn
    conn.close()


def ids(db: sqlite3.Connection, text: str) -> list[int]:
    condition = compile_segment(parse(text), SegmentSchema(), NOW)
    rows = db.execute(f"SELECT id FROM contacts WHERE {condition.where} ORDER BY id",
                      condition.params).fetchall()
    return [r[0] for r in rows]


@pytest.mark.parametrize("text,expected", [
    ('plan = "pro" and country in ("DE","AT") and opened within 30 days', [1]),
    ('plan = "pro" and country in ("DE","AT") and opened within 60 days', [1, 2]),
    ('not (signup_date < "2026-01-01")', [2, 3, 4, 5]),
    ('signup_date < "2026-01-01"', [1]),
    ("clicked within 7 days", [3]),
    ("clicked", [1, 3]),
    ("not opened within 30 days", [2, 3, 5]),
    ("vip exists", [1, 3]),
    ("nothing exists", []),
    ("not plan exists", [5]),
    ('plan != "pro"', [3, 5]),
    ("age >= 35", [2]),
    ("age < 40", [1]),
    ("age = 41", [2]),
    ("age in (34, 41)", [1, 2]),
    ('age in ("n/a", 34)', [1, 3]),
    ("vip = true", [1]),
    ("vip = false", [3]),
    ("vip != true", [2, 3, 4, 5]),
    ('domain = "GMAIL.com"', [3, 4]),
    ('domain not in ("gmail.com")', [1, 2, 5]),
    ('address contains "@example."', [1, 2, 5]),
    ('name = ""', [4]),
    ("name exists", [1, 2, 3, 5]),
    ('attributes["first name"] = "Do"', [4]),
    ('attributes["we\\"ird"] = "q"', [4]),
    ('attributes["straße"] exists', [4]),
    ("created within 30 days", [2, 3, 5]),
    ('created < "2026-01-01"', [1]),
    ('(plan = "free" or country = "FR") and not clicked', [4]),
    ('plan contains "r"', [1, 2, 3, 4]),
    ('status = "active"', [1, 2, 3, 4, 5]),
])
def test_segments_select_the_right_contacts(db: sqlite3.Connection, text: str,
                                            expected: list[int]) -> None:
    assert ids(db, text) == expected


def test_not_is_the_complement(db: sqlite3.Connection) -> None:
    for text in ('plan = "pro"', "age > 35", "vip = true", 'country in ("DE")',
                 "opened within 30 days", 'attributes["nothing"] exists'):
        inside = set(ids(db, text))
        outside = set(ids(db, f"not ({text})"))
        assert inside.isdisjoint(outside) and inside | outside == {1, 2, 3, 4, 5}, text


INJECTIONS = [
    'plan = "x\\" or 1=1 --"',
    "plan = 'x\\' or \\'1\\'=\\'1'",
    'plan = "x\'); DROP TABLE contacts; --"',
    'attributes["plan\\" or 1=1 --"] = "pro"',
    'attributes["x\') or 1=1 --"] exists',
    'attributes["$.plan"] = "pro"',
    'attributes["plan\\"]"] exists',
    'plan in ("pro\\" or \\"1\\"=\\"1", "x")',
    'name contains "%"',
    'domain = "x\' UNION SELECT value FROM secrets --"',
]


@pytest.mark.parametrize("text", INJECTIONS)
def test_injection_attempts_stay_values(db: sqlite3.Connection, text: str) -> None:
    condition = compile_segment(parse(text), SegmentSchema(), NOW)
    # No character of any value reaches the SQL text: it is built from fixed fragments.
    assert "1=1" not in condition.where and "DROP" not in condition.where
    assert "secrets" not in condition.where and "'x'" not in condition.where
    assert set(re.findall(r"'[^']*'", condition.where)) <= {
        "'text'", "'integer'", "'real'", "'*[0-9]*'", "'*[^0-9.eE+-]*'", "'@'", "'null'", "''"}
    assert ids(db, text) == []
    assert db.execute("SELECT count(*) FROM contacts").fetchone() == (5,)


def test_unquotable_attribute_names_use_json_each() -> None:
    condition = compile_segment(parse('attributes["we\\"ird"] exists'), SegmentSchema(), NOW)
    assert "json_each" in condition.where and 'we"ird' in condition.params


@pytest.mark.parametrize("text,message", [
    ('created < "yesterday"', "not an ISO date"),
    ("name = 3", "compare it with a string"),
    ("plan within 3 days", "within applies to a time"),
    ("vip > true", "only with = and !="),
    ("created contains \"x\"", "contains does not apply"),
])
def test_type_errors(text: str, message: str) -> None:
    with pytest.raises(SegmentError, match=message):
        compile_segment(parse(text), SegmentSchema(), NOW)


def test_schema_identifiers_are_checked() -> None:
    with pytest.raises(ValueError):
        SegmentSchema(contacts_ref="contacts; DROP TABLE x")
    with pytest.raises(ValueError):
        SegmentSchema(columns={"name or 1": __import__(
            "mailyard.bulk.segments.sql", fromlist=["ColumnType"]).ColumnType.TEXT})


def test_an_alias_for_the_contacts_table(db: sqlite3.Connection) -> None:
    condition = compile_segment(parse('plan = "pro" and clicked'),
                                SegmentSchema(contacts_ref="c"), NOW)
    rows = db.execute(f"SELECT c.id FROM contacts AS c WHERE {condition.where}",
                      condition.params).fetchall()
    assert rows == [(1,)]


def test_the_largest_expression_allowed_runs(db: sqlite3.Connection) -> None:
    text = " or ".join(f'country = "C{i}"' for i in range(199)) + ' or plan = "free"'
    assert ids(db, text) == [3]
    values = ", ".join(f'"v{i}"' for i in range(999))
    assert ids(db, f'plan in ({values}, "free")') == [3]
