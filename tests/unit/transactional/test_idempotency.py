"""Idempotency keys: the decision table, the SQLite store under concurrent
reservations, and the send path across the crashes the design names (a request
that died before the queue commit, one that died inside it, a failed commit)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mailyard.apikeys.api import ApiKey, Scope
from mailyard.bulk.templates.mime import Mailbox
from mailyard.envelope import Envelope
from mailyard.feedback.verp import TransactionalMessage, parse_verp_address
from mailyard.ingest.api import Submission
from mailyard.queue.api import StorageError
from mailyard.services.errors import ServiceError
from mailyard.services.messages import MessageRequest, TransactionalMail
from mailyard.transactional.idempotency import (
    LEASE,
    TTL,
    KeyRecord,
    KeyState,
    Reservation,
    decide,
    fingerprint,
    message_id_for,
    valid_key,
)
from mailyard.transactional.sqlite import SqliteTransactionalStore

KEY = ApiKey("0123456789ab", "app", frozenset({Scope.SEND}), 0.0, pool="tx")


def _row(**kw: object) -> KeyRecord:
    base: dict[str, object] = dict(api_key="k", key="x", fingerprint="f",
                                   state=KeyState.PENDING, message_id="m", created=100.0,
                                   lease_until=130.0, holder="h")
    base.update(kw)
    return KeyRecord(**base)  # type: ignore[arg-type]


def test_decision_table() -> None:
    assert decide(None, "f", 100) is None
    assert decide(_row(), "other", 101) is Reservation.MISMATCH
    assert decide(_row(state=KeyState.DONE), "f", 101) is Reservation.REPLAY
    assert decide(_row(), "f", 101) is Reservation.PENDING
    assert decide(_row(), "f", 131) is None  # lease ran out before the commit: take over
    assert decide(_row(qid="Q"), "f", 131) is Reservation.REPLAY  # died in the commit
    assert decide(_row(state=KeyState.DONE), "other", 100 + TTL) is None  # expired


def test_key_syntax_and_fingerprint() -> None:
    assert valid_key("a" * 255) and valid_key("order-1:x~")
    assert not valid_key("") and not valid_key("a" * 256) and not valid_key("with space")
    assert not valid_key("tab\t") and not valid_key("é")
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    one = message_id_for(b"s" * 32, "key1", "order-1")
    assert one == message_id_for(b"s" * 32, "key1", "order-1") and len(one) == 20
    assert one != message_id_for(b"s" * 32, "key2", "order-1")


def test_concurrent_reservations_give_one_owner(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    outcomes: list[Reservation] = []
    barrier = threading.Barrier(10)

    def reserve() -> None:
        store = SqliteTransactionalStore(path)  # one per thread, as processes would
        barrier.wait()
        outcomes.append(store.reserve("k", "burst", "f", "m", 100.0)[0])

    threads = [threading.Thread(target=reserve) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == sorted([Reservation.NEW] + [Reservation.PENDING] * 9)


def test_store_states(tmp_path: Path) -> None:
    store = SqliteTransactionalStore(tmp_path / "t.db")
    outcome, mine = store.reserve("k", "x", "f", "m1", 100.0)
    assert outcome is Reservation.NEW and mine.message_id == "m1"
    assert store.reserve("k", "x", "g", "m1", 101.0)[0] is Reservation.MISMATCH
    # The lease runs out: another request takes the key over, same message id.
    outcome, theirs = store.reserve("k", "x", "f", "ignored", 100.0 + LEASE + 1)
    assert outcome is Reservation.NEW and theirs.message_id == "m1"
    assert not store.committing("k", "x", mine.holder, "Q1", 202, "{}")  # not its key now
    assert store.committing("k", "x", theirs.holder, "Q2", 202, '{"id": "m1"}')
    store.finish("k", "x")
    outcome, done = store.reserve("k", "x", "f", "m1", 200.0)
    assert outcome is Reservation.REPLAY and done.body == '{"id": "m1"}'
    assert store.sweep(100.0 + LEASE + TTL) == 0  # a takeover counts from its own start
    assert store.sweep(100.0 + LEASE + 1 + TTL) == 1
    assert store.reserve("k", "x", "g", "m2", 100.0 + TTL)[0] is Reservation.NEW


@dataclass
class FakeWriter:
    ingest: FakeIngest
    submission: Submission
    qid: str
    data: bytes = b""

    def write(self, data: bytes) -> None:
        self.data += data

    def header(self, block: bytes, summary: object) -> None:
        pass

    async def commit(self) -> str:
        if self.ingest.fail:
            raise StorageError("disk full")
        self.ingest.queued.append((self.submission.envelope, self.submission.pool, self.data))
        return self.qid

    def abort(self) -> None:
        self.ingest.aborted += 1


@dataclass
class FakeIngest:
    queued: list[tuple[Envelope, str, bytes]] = field(default_factory=list)
    fail: bool = False
    aborted: int = 0

    def open(self, submission: Submission) -> FakeWriter:
        return FakeWriter(self, submission, f"Q{len(self.queued) + self.aborted}")

    async def submit(self, submission: Submission, content: bytes) -> str:
        raise NotImplementedError

    def check(self, submission: Submission, content: bytes) -> None:
        pass


class NoSuppressions:
    def suppression(self, address: str) -> object:
        return object() if address.startswith("gone@") else None


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def _service(tmp_path: Path) -> tuple[TransactionalMail, FakeIngest, Clock]:
    ingest, clock = FakeIngest(), Clock()
    service = TransactionalMail(
        SqliteTransactionalStore(tmp_path / "t.db"), NoSuppressions(),  # type: ignore[arg-type]
        lambda d: d == "example.org", ingest, lambda qid: None, b"i" * 32, b"v" * 32,
        "example.org", clock=clock)
    return service, ingest, clock


def _request(subject: str = "Hi", to: tuple[str, ...] = ("ann@example.net",)
             ) -> MessageRequest:
    return MessageRequest(Mailbox("app@example.org"), tuple(Mailbox(t) for t in to),
                          subject=subject, text="hello",
                          canonical={"subject": subject, "to": list(to)})


def test_sends_once_and_replays(tmp_path: Path) -> None:
    service, ingest, _ = _service(tmp_path)
    first = asyncio.run(service.send(KEY, _request(), "order-1"))
    again = asyncio.run(service.send(KEY, _request(), "order-1"))
    assert first.status == again.status == 202 and first.body == again.body
    assert again.replayed and len(ingest.queued) == 1
    envelope, pool, data = ingest.queued[0]
    assert pool == "tx" and envelope.auth_user == "app@example.org"
    assert parse_verp_address(envelope.sender, b"v" * 32) == TransactionalMessage(
        first.body["id"])
    assert f"Message-ID: <{first.body['id']}@example.org>".encode() in data
    with pytest.raises(ServiceError) as caught:
        asyncio.run(service.send(KEY, _request("other"), "order-1"))
    assert caught.value.code == "idempotency_key_reused"


def test_crash_before_the_queue_commit_lets_a_retry_send(tmp_path: Path) -> None:
    service, ingest, clock = _service(tmp_path)
    request = _request()
    digest = fingerprint(dict(request.canonical))
    mid = message_id_for(b"i" * 32, KEY.key_id, "k1")
    service.store.reserve(KEY.key_id, "k1", digest, mid, clock.now)  # then the process died
    clock.now += LEASE + 1
    result = asyncio.run(service.send(KEY, request, "k1"))
    assert result.status == 202 and not result.replayed and result.body["id"] == mid
    assert len(ingest.queued) == 1


def test_crash_inside_the_queue_commit_never_sends_twice(tmp_path: Path) -> None:
    service, ingest, clock = _service(tmp_path)
    request = _request()
    digest = fingerprint(dict(request.canonical))
    mid = message_id_for(b"i" * 32, KEY.key_id, "k2")
    _, mine = service.store.reserve(KEY.key_id, "k2", digest, mid, clock.now)
    answer = {"id": mid, "message_id": f"<{mid}@example.org>", "recipients": [], "tags": []}
    service.store.committing(KEY.key_id, "k2", mine.holder, "Q9", 202, json.dumps(answer))
    clock.now += LEASE + 1
    result = asyncio.run(service.send(KEY, request, "k2"))
    assert result.replayed and result.body == answer and ingest.queued == []


def test_failed_commit_frees_the_key(tmp_path: Path) -> None:
    service, ingest, _ = _service(tmp_path)
    ingest.fail = True
    with pytest.raises(ServiceError) as caught:
        asyncio.run(service.send(KEY, _request(), "k3"))
    assert caught.value.code == "mail_not_queued" and ingest.aborted == 1
    ingest.fail = False
    result = asyncio.run(service.send(KEY, _request(), "k3"))
    assert result.status == 202 and not result.replayed and len(ingest.queued) == 1


def test_suppressed_and_refused_requests_do_not_hold_the_key(tmp_path: Path) -> None:
    service, ingest, _ = _service(tmp_path)
    with pytest.raises(ServiceError) as caught:
        asyncio.run(service.send(KEY, _request(to=("gone@example.net",)), "k4"))
    assert caught.value.code == "recipients_suppressed"
    result = asyncio.run(service.send(KEY, _request(to=("gone@example.net", "b@example.net")),
                                      "k5"))
    assert result.body["recipients"] == [
        {"address": "gone@example.net", "status": "suppressed"},
        {"address": "b@example.net", "status": "queued"}]
    envelope = ingest.queued[0][0]
    assert [r.address for r in envelope.recipients] == ["b@example.net"]
    outside = MessageRequest(Mailbox("app@elsewhere.example"), (Mailbox("b@example.net"),),
                             subject="x", text="y")
    with pytest.raises(ServiceError) as caught:
        asyncio.run(service.send(KEY, outside))
    assert caught.value.code == "sender_not_allowed"


def test_api_keys_carry_pool_and_senders_across_the_schema_upgrade(tmp_path: Path) -> None:
    from mailyard.apikeys.sqlite import MIGRATIONS, SqliteKeyStore
    from mailyard.services.apikeys import ApiKeys
    from mailyard.sqlitedb import Database

    old = Database(tmp_path / "apikeys.db", MIGRATIONS[:1])
    with old.transaction() as conn:  # a key made before keys had pools
        conn.execute("INSERT INTO api_keys (key_id, name, scopes, digest, created) "
                     "VALUES ('aaaaaaaaaaaa', 'old', 'send', 'x', 1.0)")
    old.close()
    keys = ApiKeys(SqliteKeyStore(tmp_path / "apikeys.db"))
    [before] = keys.list()
    assert before.pool == "" and before.senders == () and before.may_send_as("a@b.example")
    made = keys.create("pooled", "send", pool="tx", senders=["App@Example.org", "mail.test"],
                       pools=["tx"])
    found = keys.authenticate(made.secret)
    assert found is not None and found.pool == "tx"
    assert found.senders == ("app@example.org", "mail.test")
    assert found.may_send_as("APP@example.org") and found.may_send_as("x@mail.test")
    assert not found.may_send_as("bob@example.org")
    for bad in ({"pool": "nope", "pools": ["tx"]}, {"senders": ["a b@c"]}):
        with pytest.raises(ServiceError):
            keys.create("bad", "send", **bad)  # type: ignore[arg-type]


def test_failed_commit_and_failed_release_on_a_full_disk_send_once_later(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The queue commit fails and so does freeing the key (the disk is full): the
    answer is still the queue's failure, and a retry once space is back, after the
    lease, sends the message instead of replaying an answer that was never true."""
    service, ingest, clock = _service(tmp_path)
    ingest.fail = True
    real_release = service.store.release

    def full(*args: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(service.store, "release", full)
    with pytest.raises(ServiceError) as caught:
        asyncio.run(service.send(KEY, _request(), "k6"))
    assert caught.value.code == "mail_not_queued"
    monkeypatch.setattr(service.store, "release", real_release)
    ingest.fail = False
    clock.now += LEASE + 1
    result = asyncio.run(service.send(KEY, _request(), "k6"))
    assert result.status == 202 and not result.replayed and len(ingest.queued) == 1
    assert asyncio.run(service.send(KEY, _request(), "k6")).replayed
    assert len(ingest.queued) == 1
