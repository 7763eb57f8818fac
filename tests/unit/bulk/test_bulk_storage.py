"""The small SQLite helper (schema versions) and the [http]/[bulk] configuration."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mailyard.config import ConfigError, parse_config
from mailyard.daemon.listeners import Listener
from mailyard.daemon.startup import startup_lines
from mailyard.services.setup import confirmation_sender, public_url
from mailyard.sqlitedb import Database, SchemaTooNew


def test_migrations_run_once_in_order(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    db = Database(path, ["CREATE TABLE a (x)"])
    db.conn().execute("INSERT INTO a VALUES (1)")
    db.close()
    newer = Database(path, ["CREATE TABLE a (x)", "ALTER TABLE a ADD COLUMN y DEFAULT 2"])
    assert tuple(newer.conn().execute("SELECT x, y FROM a").fetchone()) == (1, 2)
    assert newer.conn().execute("PRAGMA user_version").fetchone()[0] == 2
    assert path.stat().st_mode & 0o777 == 0o600


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 7")
    with pytest.raises(SchemaTooNew, match="schema version 7 is newer than this program's"):
        Database(path, ["CREATE TABLE a (x)"]).conn()


def test_transaction_rolls_back(tmp_path: Path) -> None:
    db = Database(tmp_path / "x.db", ["CREATE TABLE a (x UNIQUE)"])
    with pytest.raises(sqlite3.IntegrityError), db.transaction() as conn:
        conn.execute("INSERT INTO a VALUES (1)")
        conn.execute("INSERT INTO a VALUES (1)")
    assert db.conn().execute("SELECT count(*) FROM a").fetchone()[0] == 0


BASE = 'hostname = "mx.example.org"\nlocal_domains = ["example.org"]\n'


@pytest.mark.parametrize(("text", "key"), [
    ('[http]\npublic_url = "lists.example.org"', "http.public_url"),
    ("[http]\nworkers = 0", "http.workers"),
    ("[http]\nmax_body_size = -1", "http.max_body_size"),
    ('[bulk]\nsender = "no address"', "bulk.sender"),
    ("[bulk]\nconfirm_ttl = 0", "bulk.confirm_ttl"),
    ('[listen]\nhttp = ["nowhere"]', "listen.http[0]"),
])
def test_bad_values_name_the_key(text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(BASE + text)
    assert info.value.key == key


def test_public_url_and_sender_defaults() -> None:
    cfg = parse_config(BASE + '[listen]\nhttp = ["0.0.0.0:8080"]\nhttps = ["[::1]:8443"]')
    assert public_url(cfg) == "https://[::1]:8443"
    cfg = parse_config(BASE + '[listen]\nhttp = ["0.0.0.0:8080"]')
    assert public_url(cfg) == "http://mx.example.org:8080"
    cfg = parse_config(BASE + '[http]\npublic_url = "https://lists.example.org/"\n'
                              '[bulk]\nsender = "news@example.org"')
    assert public_url(cfg) == "https://lists.example.org"
    assert confirmation_sender(cfg) == "news@example.org"
    assert confirmation_sender(parse_config(BASE)) == "postmaster@example.org"


def test_embedded_default_serves_http_on_loopback() -> None:
    cfg = parse_config(BASE)  # no [listen]: the embedded default's listeners
    assert cfg.listen.http == ("127.0.0.1:8025",) and cfg.listen.https == ()


def test_startup_names_the_api_docs() -> None:
    import socket

    cfg = parse_config(BASE + '[listen]\nhttp = ["127.0.0.1:8025"]')
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        lines = startup_lines(cfg, [Listener("http", "127.0.0.1:0", sock)], 2, 1)
    assert lines[0].startswith("mailyard: http listening on 127.0.0.1:")
    assert "mailyard: API docs at http://127.0.0.1:8025/api/docs" in lines
