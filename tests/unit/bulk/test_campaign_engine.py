"""The sending engine over a temporary bulk.db and an in-memory stand-in for ingest:
audience selection, exclusion at send time, render failures, a crash mid-batch,
domain caps, pause, the lease, and the A/B test end to end."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import re

import pytest

from mailyard.bulk.campaigns.audience import AudienceError, count_audience
from mailyard.bulk.campaigns.compose import SendSettings, build_one
from mailyard.bulk.campaigns.model import CampaignSpec, CampaignState
from mailyard.bulk.campaigns.recipients import RecipientStore
from mailyard.bulk.campaigns.runner import CampaignRunner, Queue
from mailyard.bulk.campaigns.sqlite import SqliteCampaignStore
from mailyard.bulk.model import ContactStatus, MembershipStatus, OptIn, SuppressionReason
from mailyard.bulk.report import CampaignEvent, EventKind
from mailyard.bulk.sqlite import SqliteContactStore
from mailyard.bulk.tracking import click_target, decode_token
from mailyard.feedback.verp import CampaignRecipient, parse_verp_address
from mailyard.ingest.api import IngestRefused, Origin
from mailyard.proto.smtp.replies import Reply

SETTINGS = SendSettings("https://mail.example.org", "bounce.example.org", "mx.example.org",
                        b"v" * 32, b"t" * 32, b"s" * 32)
HTML = ('<html><body><p>Hello {{ name }}</p><a href="https://example.com/a">a</a>'
        '<a href="https://example.com/b?c={{ attributes.code }}">b</a>'
        '<a href="{{ unsubscribe_url }}">unsubscribe</a></body></html>')


class Crash(Exception):
    """The process dies here."""


class FakeQueue:
    """Ingest and the queue's submit keys, in memory; ``crash_after`` commits, the next
    submit raises Crash (the rest of the batch never happens)."""

    def __init__(self) -> None:
        self.messages: list[tuple[object, bytes]] = []
        self.keys: dict[str, str] = {}
        self.crash_after: int | None = None
        self.refuse: set[str] = set()
        self.recovered = 0

    async def submit(self, submission, content: bytes) -> str:
        if self.crash_after is not None:
            if self.crash_after == 0:
                raise Crash()
            self.crash_after -= 1
        rcpt = submission.envelope.recipients[0].address
        if rcpt in self.refuse:
            raise IngestRefused(Reply(552, "5.3.4", "message too big"))
        qid = f"Q{len(self.messages)}"
        self.messages.append((submission, content))
        self.keys[submission.envelope.submit_key] = qid
        return qid

    def open(self, submission):
        raise NotImplementedError

    def check(self, submission, content):
        return None

    def queue(self) -> Queue:
        def recover() -> None:
            self.recovered += 1
        return Queue(self.keys.get, recover, lambda qid: None)

    def recipients(self) -> list[str]:
        return [s.envelope.recipients[0].address for s, _ in self.messages]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def env(tmp_path):
    contacts = SqliteContactStore(tmp_path / "bulk.db", lambda a: "d:" + a)
    return contacts, SqliteCampaignStore(contacts.db), RecipientStore(contacts.db)


def add_people(contacts, list_name, addresses, status=MembershipStatus.CONFIRMED, attrs=None):
    lst = contacts.get_list(list_name) or contacts.add_list(list_name, "", OptIn.SINGLE, 1.0)
    ids = []
    for address in addresses:
        c = contacts.get_contact(address) or contacts.add_contact(
            address, address.split("@")[0], attrs or {"code": "x1"}, 1.0)
        contacts.set_membership(lst.id, c.id, status, now=1.0)
        ids.append(c.id)
    return ids


def runner_for(env, fake, clock, owner="me-1", dead=(), batch=10):
    contacts, campaigns, recipients = env
    return CampaignRunner(campaigns, recipients, contacts.digest, fake, fake.queue(), SETTINGS,
                          owner, lambda o: o in dead, clock=clock, sleep=clock.sleep,
                          batch=batch)


def start(env, clock, spec, name="c"):
    _, campaigns, _ = env
    c = campaigns.add_campaign(name, spec, clock())
    campaigns.move(c.id, CampaignState.DRAFT, CampaignState.SCHEDULED, clock(), send_at=clock())
    return c


async def drain(runner, rounds=200):
    for _ in range(rounds):
        if not await runner.tick() and not runner.campaigns.campaigns(
                state=CampaignState.SENDING):
            return


def spec(**kw):
    base = dict(from_address="news@example.org", from_name="News", subject="Hi {{ name }}",
                html=HTML, lists=["news"])
    base.update(kw)
    return CampaignSpec(**base)


def test_audience_confirmed_deduplicated_not_blocked_not_suppressed(env):
    contacts, campaigns, _ = env
    add_people(contacts, "news", ["a@x.example", "b@x.example", "c@y.example"])
    add_people(contacts, "promo", ["b@x.example", "d@y.example"])
    add_people(contacts, "news", ["u@x.example"], MembershipStatus.UNSUBSCRIBED)
    add_people(contacts, "news", ["p@x.example"], MembershipStatus.UNCONFIRMED)
    blocked = contacts.get_contact("c@y.example")
    contacts.update_contact(blocked.id, status=ContactStatus.BLOCKED, now=2.0)
    contacts.suppress("d@y.example", SuppressionReason.HARD_BOUNCE, "", 2.0)
    conn = contacts.db.conn()
    assert count_audience(conn, spec(lists=["news", "promo"]), contacts.digest, 3.0) == 2
    assert count_audience(conn, spec(lists=["news"], segment='domain = "x.example"'),
                          contacts.digest, 3.0) == 2
    with pytest.raises(AudienceError):
        count_audience(conn, spec(lists=["nope"]), contacts.digest, 3.0)
    with pytest.raises(AudienceError):
        count_audience(conn, spec(segment="plan = "), contacts.digest, 3.0)


def test_segment_engagement_reads_campaign_events(env):
    contacts, campaigns, _ = env
    ids = add_people(contacts, "news", ["a@x.example", "b@x.example"])
    old = campaigns.add_campaign("old", spec(), 1.0)
    campaigns.record_events(old.id, [CampaignEvent(EventKind.OPENED, 5000.0, ids[1])])
    conn = contacts.db.conn()
    assert count_audience(conn, spec(segment="opened within 1 days"), contacts.digest,
                          6000.0) == 1
    assert count_audience(conn, spec(segment="not opened within 1 days"), contacts.digest,
                          6000.0) == 1


def test_campaign_sent_once_to_each_with_its_headers(env):
    contacts, campaigns, recipients = env
    add_people(contacts, "news", [f"r{i}@x.example" for i in range(25)])
    add_people(contacts, "promo", [f"r{i}@x.example" for i in range(20, 30)])
    clock, fake = Clock(), FakeQueue()
    c = start(env, clock, spec(lists=["news", "promo"], pool="bulk"))
    asyncio.run(drain(runner_for(env, fake, clock)))
    assert sorted(fake.recipients()) == sorted(f"r{i}@x.example" for i in range(30))
    assert campaigns.get_campaign(c.id).state is CampaignState.FINISHED
    assert recipients.counts(c.id)["queued"] == 30
    queued = [e for e in campaigns.events(c.id) if e.kind is EventKind.QUEUED]
    assert len(queued) == 30 and {e.domain for e in queued} == {"x.example"}
    sub, content = fake.messages[0]
    assert sub.origin is Origin.CAMPAIGN and sub.pool == "bulk"
    contact = contacts.get_contact(sub.envelope.recipients[0].address)
    assert parse_verp_address(sub.envelope.sender, SETTINGS.verp_key) == \
        CampaignRecipient(c.id, contact.id)
    assert sub.envelope.submit_key == f"campaign:{c.id}:{contact.id}"
    msg = email.message_from_bytes(content, policy=email.policy.default)
    token = sub.envelope.sender.split("+")[1].split("@")[0]
    assert msg["List-Unsubscribe"].startswith("<https://mail.example.org/u/")
    assert f"<mailto:unsubscribe+{token}@bounce.example.org>" in msg["List-Unsubscribe"]
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["List-Id"] == "<news.bounce.example.org>"
    assert msg["Feedback-ID"] == f"{c.id}:news:campaign:mx.example.org"
    assert msg["Subject"] == f"Hi {contact.name}"
    html = msg.get_body(("html",)).get_content()
    assert "https://mail.example.org/t/c/" in html and "/t/o/" in html
    # Links are stored (before queueing): a, then one per personalised b.
    assert campaigns.links(c.id) == ["https://example.com/a", "https://example.com/b?c=x1"]
    assert 'href="https://mail.example.org/u/' in html  # our own link, not a click
    ids = {m["Message-ID"] for m in (email.message_from_bytes(x) for _, x in fake.messages)}
    assert len(ids) == 30


def test_exclusions_at_send_time_and_render_failures(env):
    contacts, campaigns, recipients = env
    add_people(contacts, "news", [f"r{i}@x.example" for i in range(6)])
    bad = contacts.add_contact("bad@x.example", "Bad", {}, 1.0)  # no "code": fails
    contacts.set_membership(contacts.get_list("news").id, bad.id, MembershipStatus.CONFIRMED,
                            now=1.0)
    clock, fake = Clock(), FakeQueue()
    strict = HTML.replace("{{ attributes.code }}", "{{ attributes.code.upper() }}")
    c = start(env, clock, spec(html=strict))
    runner = runner_for(env, fake, clock)
    asyncio.run(runner.tick())  # selects the audience
    contacts.suppress("r1@x.example", SuppressionReason.COMPLAINT, "", 2.0)
    r2 = contacts.get_contact("r2@x.example")
    contacts.update_contact(r2.id, status=ContactStatus.BLOCKED, now=2.0)
    r3 = contacts.get_contact("r3@x.example")
    contacts.set_membership(contacts.get_list("news").id, r3.id,
                            MembershipStatus.UNSUBSCRIBED, now=2.0)
    fake.refuse.add("r4@x.example")
    asyncio.run(drain(runner))
    assert sorted(fake.recipients()) == ["r0@x.example", "r5@x.example"]
    reasons = {cid: (state, reason) for cid, state, reason in recipients.skipped(c.id)}
    assert reasons[contacts.get_contact("r1@x.example").id] == ("excluded", "suppressed")
    assert reasons[r2.id] == ("excluded", "blocked")
    assert reasons[r3.id] == ("excluded", "not confirmed")
    assert reasons[contacts.get_contact("r4@x.example").id][0] == "skipped"
    state, reason = reasons[bad.id]
    assert state == "skipped" and "html" in reason
    assert campaigns.get_campaign(c.id).state is CampaignState.FINISHED


def test_crash_mid_batch_then_restart_sends_each_exactly_once(env):
    contacts, campaigns, recipients = env
    add_people(contacts, "news", [f"r{i}@x.example" for i in range(40)])
    clock, fake = Clock(), FakeQueue()
    c = start(env, clock, spec())
    first = runner_for(env, fake, clock, owner="old-1")
    fake.crash_after = 14  # the second batch of 10 dies after 4 commits
    with pytest.raises(Crash):
        asyncio.run(drain(first))
    assert len(fake.messages) == 14
    assert len(recipients.in_flight(c.id)) == 10
    fake.crash_after = None
    # A live owner's lease is respected...
    other = runner_for(env, fake, clock, owner="other-2")
    assert not asyncio.run(other.tick())
    assert len(fake.messages) == 14
    # ...a dead one's is taken over, and its batch settled against the queue.
    second = runner_for(env, fake, clock, owner="new-3", dead={"old-1"})
    asyncio.run(drain(second))
    assert fake.recovered == 1
    assert sorted(fake.recipients()) == sorted(f"r{i}@x.example" for i in range(40))
    queued = [e.contact_id for e in campaigns.events(c.id) if e.kind is EventKind.QUEUED]
    assert len(queued) == len(set(queued)) == 40
    assert campaigns.get_campaign(c.id).state is CampaignState.FINISHED


def test_domain_caps_hold_back_one_domain_only(env):
    contacts, campaigns, recipients = env
    add_people(contacts, "news", [f"g{i}@gmail.example" for i in range(8)]
               + [f"o{i}@other.example" for i in range(8)])
    clock, fake = Clock(), FakeQueue()
    c = start(env, clock, spec(domain_caps={"Gmail.example": 3}))
    runner = runner_for(env, fake, clock, batch=4)
    for _ in range(20):
        asyncio.run(runner.tick())
    got = fake.recipients()
    assert sum(a.endswith("@gmail.example") for a in got) == 3
    assert sum(a.endswith("@other.example") for a in got) == 8
    assert campaigns.get_campaign(c.id).state is CampaignState.SENDING
    clock.now += 3600
    for _ in range(5):
        asyncio.run(runner.tick())
    assert sum(a.endswith("@gmail.example") for a in fake.recipients()) == 6
    clock.now += 3600
    asyncio.run(drain(runner))
    assert len(fake.recipients()) == 16
    assert campaigns.get_campaign(c.id).state is CampaignState.FINISHED


def test_rate_per_minute_paces_the_batches(env):
    contacts, _, _ = env
    add_people(contacts, "news", [f"r{i}@x.example" for i in range(30)])
    clock, fake = Clock(), FakeQueue()
    start(env, clock, spec(rate_per_minute=600))  # 10 a second
    began = clock.now
    asyncio.run(drain(runner_for(env, fake, clock, batch=50)))
    assert len(fake.messages) == 30
    assert clock.now - began >= 1.9  # 10 at once, then 10 a second


def test_the_rate_holds_across_a_restart(env):
    """rate_per_minute=60 is one a second; a process that takes the campaign over (or
    the same one after a restart) goes on at that rate instead of starting with a
    full bucket."""
    contacts, _, recipients = env
    add_people(contacts, "news", [f"r{i}@x.example" for i in range(6)])
    clock, fake = Clock(), FakeQueue()
    c = start(env, clock, spec(rate_per_minute=60))
    sent_at: list[float] = []
    submit = fake.submit

    async def main() -> None:
        stop = asyncio.Event()

        async def timed(submission, content):
            sent_at.append(clock.now)
            if len(sent_at) == 2:
                stop.set()  # the process ends right after its second message
            return await submit(submission, content)

        fake.submit = timed
        first = runner_for(env, fake, clock, owner="old-1")
        await first.tick()  # selection
        while not stop.is_set():
            await first.tick(stop)

    asyncio.run(main())
    assert len(sent_at) == 2
    left_at = len(sent_at)
    second = runner_for(env, fake, clock, owner="new-2", dead={"old-1"})
    asyncio.run(drain(second))
    assert len(fake.messages) == 6 and len(recipients.in_flight(c.id)) == 0
    gaps = [b - a for a, b in zip(sent_at, sent_at[1:], strict=False)]
    assert gaps[left_at - 1] >= 0.99, sent_at  # the first message after the takeover
    assert all(g >= 0.99 for g in gaps), sent_at


def test_pause_stops_between_batches_and_resume_goes_on(env):
    contacts, campaigns, _ = env
    add_people(contacts, "news", [f"r{i}@x.example" for i in range(30)])
    clock, fake = Clock(), FakeQueue()
    c = start(env, clock, spec())
    runner = runner_for(env, fake, clock)
    asyncio.run(runner.tick())  # selection
    campaigns.move(c.id, CampaignState.SENDING, CampaignState.PAUSED, clock())
    asyncio.run(drain(runner, 5))
    assert fake.messages == []
    campaigns.move(c.id, CampaignState.PAUSED, CampaignState.SENDING, clock())
    asyncio.run(drain(runner))
    assert len(fake.messages) == 30


def test_template_error_pauses_the_campaign(env):
    contacts, campaigns, _ = env
    add_people(contacts, "news", ["a@x.example"])
    clock, fake = Clock(), FakeQueue()
    c = start(env, clock, spec(html="{% for %}"))
    asyncio.run(drain(runner_for(env, fake, clock), 3))
    assert campaigns.get_campaign(c.id).state is CampaignState.PAUSED
    assert fake.messages == []


def test_ab_test_sample_wait_winner_rest(env):
    contacts, campaigns, recipients = env
    add_people(contacts, "news", [f"r{i}@x.example" for i in range(200)])
    clock, fake = Clock(), FakeQueue()
    ab = {"subjects": ["Subject A", "Subject B"], "sample_percent": 30, "wait_hours": 1,
          "metric": "opens"}
    c = start(env, clock, spec(subject="unused", extra={"ab": ab}))
    runner = runner_for(env, fake, clock, batch=50)
    for _ in range(20):
        asyncio.run(runner.tick())
    sample = list(fake.messages)
    assert 30 < len(sample) < 90
    subjects = [email.message_from_bytes(x)["Subject"] for _, x in sample]
    assert set(subjects) == {"Subject A", "Subject B"}
    assert recipients.progress(c.id).phase == "waiting"
    # Human opens favour B; machine opens of A do not count.
    events = []
    for sub, content in sample:
        contact = contacts.get_contact(sub.envelope.recipients[0].address).id
        if email.message_from_bytes(content)["Subject"] == "Subject B":
            events.append(CampaignEvent(EventKind.OPENED, clock(), contact))
        else:
            events.append(CampaignEvent(EventKind.OPENED, clock(), contact, machine=True))
    campaigns.record_events(c.id, events)
    asyncio.run(runner.tick())
    assert len(fake.messages) == len(sample)  # still waiting
    clock.now += 3600
    asyncio.run(drain(runner))
    rest = fake.messages[len(sample):]
    assert len(sample) + len(rest) == 200
    assert {email.message_from_bytes(x)["Subject"] for _, x in rest} == {"Subject B"}
    assert recipients.progress(c.id).winner == 1
    assert campaigns.get_campaign(c.id).state is CampaignState.FINISHED
    variants = {v for v, in contacts.db.conn().execute(
        "SELECT DISTINCT variant FROM campaign_recipients WHERE campaign_id = ?", (c.id,))}
    assert variants == {0, 1}


def test_build_one_for_a_test_send(env):
    contacts, campaigns, _ = env
    add_people(contacts, "news", ["a@x.example"])
    c = campaigns.add_campaign("t", spec(), 1.0)
    built = build_one(campaigns, c, contacts.get_contact("a@x.example"), SETTINGS, now=5.0)
    msg = email.message_from_bytes(built.message.data)
    assert msg["List-Id"] == "<news.bounce.example.org>" and msg["Subject"] == "Hi a"
    assert campaigns.links(c.id)[0] == "https://example.com/a"


def test_build_one_sample_keeps_links_as_written(env):
    contacts, campaigns, _ = env
    add_people(contacts, "news", ["a@x.example"])
    c = campaigns.add_campaign("t", spec(), 1.0)
    a = contacts.get_contact("a@x.example")
    first = build_one(campaigns, c, a, SETTINGS, now=5.0, sample=True)
    second = build_one(campaigns, c, a, SETTINGS, now=5.0, sample=True)
    assert b"/t/" not in first.message.data and b"https://example.com/a" in first.message.data
    assert not campaigns.links(c.id)
    assert first.message.message_id != second.message.message_id


def test_audience_is_walked_in_bounded_batches_in_id_order(env):
    from mailyard.bulk.campaigns.audience import Audience

    contacts, _, _ = env
    ids = add_people(contacts, "news", [f"r{i}@x.example" for i in range(7)])
    contacts.suppress("r3@x.example", SuppressionReason.MANUAL, "", 2.0)
    batches = list(Audience(contacts.db.conn(), spec(), contacts.digest, 3.0).walk(batch=3))
    assert [[m.contact_id for m in members] for members, _ in batches] == \
        [ids[0:3], ids[3:6], ids[6:7]]
    assert [sorted(s) for _, s in batches] == [[], ["r3@x.example"], []]


def send_with_render_processes(env, clock, fake, batch, **kwargs) -> None:
    """Runs the campaign engine with one render process until nothing is left."""
    contacts, campaigns, recipients = env
    runner = CampaignRunner(campaigns, recipients, contacts.digest, fake, fake.queue(),
                            SETTINGS, "me-1", lambda o: False, clock=clock, sleep=clock.sleep,
                            batch=batch, render_workers=1, **kwargs)
    try:
        asyncio.run(drain(runner))
    finally:
        assert runner.pool is not None
        runner.pool.close()


def test_render_processes_compose_the_same_messages_and_link_indexes(env):
    """Messages made in render processes (bulk.render_workers): one per recipient, and
    every click token names the stored link its message's anchor showed, also for
    links first met in a render process (numbered by the campaign worker only)."""
    contacts, campaigns, recipients = env
    for i in range(40):  # every 7th contact has a code of its own: a new link
        add_people(contacts, "news", [f"r{i}@x.example"],
                   attrs={"code": f"own{i}" if i % 7 == 0 else "x1"})
    clock, fake = Clock(), FakeQueue()
    c = start(env, clock, spec())
    send_with_render_processes(env, clock, fake, 25)
    assert sorted(fake.recipients()) == sorted(f"r{i}@x.example" for i in range(40))
    assert recipients.counts(c.id)["queued"] == 40
    links = campaigns.links(c.id)
    assert len(links) == len(set(links)) == 2 + 6  # a, b?c=x1, b?c=own0 ... own35
    key = SETTINGS.tracking_key
    for sub, content in fake.messages:
        msg = email.message_from_bytes(content, policy=email.policy.default)
        html = msg.get_body(("html",)).get_content()
        contact = contacts.get_contact(sub.envelope.recipients[0].address)
        code = contact.attributes["code"]
        targets = [click_target(decode_token(t, key), links)
                   for t in re.findall(r"/t/c/([A-Za-z0-9_-]+)", html)]
        assert targets == ["https://example.com/a", f"https://example.com/b?c={code}"]
        assert msg["Subject"] == f"Hi {contact.name}"


def test_render_processes_sign_and_ingest_keeps_their_signatures(env, tmp_path):
    """With signing (``RenderSigning``), a render process's messages come with their
    DKIM-Signature fields (``Submission.dkim``); ingest, signing with the same keys,
    stores exactly those, and they verify."""
    from mailyard.bulk.campaigns.renderpool import RenderSigning
    from mailyard.config import DkimConfig
    from mailyard.dkim.hook import signing_for
    from mailyard.dkim.keys import KeyStore
    from mailyard.dkim.result import DkimStatus
    from mailyard.dkim.verify import verify_message
    from mailyard.dns.static import StaticResolver
    from mailyard.ingest.pipeline import QueueIngest
    from tests.support.memory_queue import MemoryQueue

    key = KeyStore(tmp_path).create("example.org", "mailyard")
    resolver = StaticResolver({key.record_name: {"TXT": [key.record]}})
    contacts, campaigns, recipients = env
    add_people(contacts, "news", [f"r{i}@x.example" for i in range(30)])
    clock, fake = Clock(), FakeQueue()
    start(env, clock, spec())
    send_with_render_processes(env, clock, fake, 10,
                               render_signing=RenderSigning.of(DkimConfig(), str(tmp_path)))
    assert len(fake.messages) == 30
    memory = MemoryQueue()
    ingest = QueueIngest(memory, "mx.example.org",
                         streaming_hooks=[signing_for(DkimConfig(), str(tmp_path))])
    # The first batch met the campaign's links first: composed (unsigned) by the
    # campaign worker, which numbers new links; ingest signs those.
    signed = [sub for sub, _ in fake.messages if sub.dkim]
    assert len(signed) == 20 and all(s.dkim.startswith(b"DKIM-Signature:")
                                             for s in signed)
    for sub, content in fake.messages:
        qid = asyncio.run(ingest.submit(sub, content))
        _env, stored, prepend = memory.messages[qid]
        assert stored == content and prepend == (sub.dkim or prepend)
        results = asyncio.run(verify_message(prepend + stored, resolver))
        assert [r.status for r in results] == [DkimStatus.PASS]


def test_a_render_process_that_dies_mid_batch_loses_and_repeats_nothing(env, monkeypatch):
    """A render process that dies with chunks in flight (its calls raise
    BrokenProcessPool): the rest of the batch is composed in the campaign worker, the
    next batch gets fresh processes, and every recipient is queued exactly once."""
    from mailyard.bulk.campaigns import renderpool

    contacts, campaigns, recipients = env
    add_people(contacts, "news", [f"r{i}@x.example" for i in range(120)])
    calls = {"n": 0}
    real_submit = renderpool._PipeExecutor.submit

    def submit(self, fn, /, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the process dies on the third chunk
            return real_submit(self, os._exit, 3)
        return real_submit(self, fn, *args, **kwargs)

    monkeypatch.setattr(renderpool._PipeExecutor, "submit", submit)
    clock, fake = Clock(), FakeQueue()
    c = start(env, clock, spec())
    send_with_render_processes(env, clock, fake, 50)
    sent = fake.recipients()
    assert sorted(sent) == sorted(f"r{i}@x.example" for i in range(120))
    assert recipients.counts(c.id)["queued"] == 120
    assert calls["n"] > 5  # later batches went to the render processes again


def test_render_processes_that_cannot_start_leave_the_campaign_to_the_worker(env, monkeypatch):
    """Render processes that exit at once (an interpreter that cannot run them): every
    call fails or is dropped with its pool, and the campaign worker composes every
    message itself, each recipient queued exactly once."""
    import sys

    contacts, campaigns, recipients = env
    add_people(contacts, "news", [f"r{i}@x.example" for i in range(60)])
    monkeypatch.setattr(sys, "executable", "/bin/false")
    clock, fake = Clock(), FakeQueue()
    c = start(env, clock, spec())
    send_with_render_processes(env, clock, fake, 30)
    assert sorted(fake.recipients()) == sorted(f"r{i}@x.example" for i in range(60))
    assert recipients.counts(c.id)["queued"] == 60
    assert campaigns.get_campaign(c.id).state is CampaignState.FINISHED
