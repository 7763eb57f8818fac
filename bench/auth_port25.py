"""Micro benchmark: the CPU per message of the port-25 path with the inbound checks on.

What a worker does for the checks of one message, in process, warm caches, the way
smtpd and ingest call them: SPF at MAIL FROM (``SpfCheck.applies`` and ``known``: the
memo answers, the MAIL FROM and HELO identities), the header rewrite that drops the
fields only we may write, the observer fed our trace field and the content as ingest
feeds it, the verdict (DKIM and ARC verification, DMARC), the transaction's log
fields, the Authentication-Results field and the action, and the count for the DMARC
aggregate reports.  Every message is signed on its own (a new Message-ID, hence a new
signature, as in real traffic), RSA-2048 relaxed/relaxed, 2 KB; DMARC passes with
``p=reject`` and ``rua``.  The DNS answers come from ``CachingResolver`` in front of
an in-memory zone.

Reported: CPU microseconds per message (``time.process_time``), the minimum and
median of ``--rounds`` rounds of ``--iterations`` messages, and Python calls per
message (``--calls``: one round under cProfile; ``--profile N``: print its top N).
``PYTHONPATH`` picks the code measured, so two trees can be compared in turn.

Run back to back, the messages find the processor's caches holding everything the
previous one used; in a server each message's checks run between other sessions'
work and find them cold.  ``--cold`` writes a 64 MiB buffer between messages (outside
the time measured), which evicts the caches and the TLB, and so gives the cost of a
message checked on a busy server (an upper bound: the caches are never quite that
cold there).

Run: ``python3 bench/auth_port25.py [--iterations 1000] [--rounds 5] [--calls] [--cold]``
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

if not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from mailyard.config import DmarcConfig, SpfConfig  # noqa: E402
from mailyard.dkim.keys import dns_record  # noqa: E402
from mailyard.dkim.sign import Signer, sign_message  # noqa: E402
from mailyard.dkim.verify import VerifyPolicy  # noqa: E402
from mailyard.dmarc.evalstore import EvaluationRecorder, EvaluationStore  # noqa: E402
from mailyard.dmarc.orgdomain import load_public_suffixes  # noqa: E402
from mailyard.dns import CachingResolver, StaticResolver  # noqa: E402
from mailyard.envelope import Envelope, Recipient  # noqa: E402
from mailyard.ingest.api import Origin, Submission  # noqa: E402
from mailyard.senderauth.hook import InboundChecks, OwnFields  # noqa: E402
from mailyard.smtpd.spf import SpfCheck  # noqa: E402

AUTHSERV_ID = "mx.bench.test"
SENDER_DOMAIN = "source.bench.test"
SENDER = f"loadgen@{SENDER_DOMAIN}"
CLIENT_IP = "192.0.2.25"
HELO = "client.source.bench.test"
DISTINCT = 200  # messages signed in advance, each with its own Message-ID
EVICT_BYTES = 64 << 20  # --cold: twice the last-level cache of the bench machine


def messages(key: rsa.RSAPrivateKey) -> list[bytes]:
    signer = Signer(SENDER_DOMAIN, "bench", key)
    line = b"The figures for the quarter are in the attached table, see below.  \r\n"
    out = []
    for i in range(DISTINCT):
        header = (f"From: Load Generator <{SENDER}>\r\nTo: postmaster@bench.test\r\n"
                  f"Subject: accept with checks\r\nDate: Tue, 1 Dec 2026 10:00:{i % 60:02} "
                  f"+0000\r\nMessage-ID: <bench.{i}@{SENDER_DOMAIN}>\r\n"
                  "MIME-Version: 1.0\r\n\r\n").encode()
        message = header + line * ((2048 - len(header)) // len(line))
        out.append(sign_message(message, [signer], time.time()) + message)
    return out


def zones(key: rsa.RSAPrivateKey) -> dict[str, dict[str, list[str]]]:
    return {
        SENDER_DOMAIN: {"TXT": ["v=spf1 ip4:192.0.2.0/24 -all"], "A": ["127.0.0.1"]},
        HELO: {"TXT": ["v=spf1 ip4:192.0.2.0/24 -all"]},
        f"bench._domainkey.{SENDER_DOMAIN}": {"TXT": [dns_record(key)]},
        f"_dmarc.{SENDER_DOMAIN}": {"TXT": [
            f"v=DMARC1; p=reject; rua=mailto:dmarc@{SENDER_DOMAIN}"]},
    }


class Path25:
    """The port-25 work of one worker, over one resolver and one report recorder."""

    def __init__(self, resolver: CachingResolver, data_dir: str) -> None:
        self.spf = SpfCheck(SpfConfig(), resolver, "mx.bench.test")
        suffixes = load_public_suffixes()
        self.rewrite = OwnFields((AUTHSERV_ID,))
        self.recorder = EvaluationRecorder(EvaluationStore.in_data_dir(data_dir))
        self.hook = InboundChecks(lambda: resolver, lambda: suffixes, authserv_id=AUTHSERV_ID,
                                  policy=VerifyPolicy(), dmarc=DmarcConfig(reports=True),
                                  recorder=self.recorder)
        self.trace = (b"Received: from client.source.bench.test (client [192.0.2.25])\r\n"
                      b"\tby mx.bench.test (Mailyard) with ESMTP id 0123456789abcdef\r\n"
                      b"\tfor <postmaster@bench.test>; Tue, 1 Dec 2026 10:00:00 +0000\r\n")

    async def one(self, data: bytes) -> bytes:
        assert self.spf.applies(CLIENT_IP)
        verdict = self.spf.known(CLIENT_IP, HELO, SENDER)
        if verdict is None:
            verdict = await self.spf.check(CLIENT_IP, HELO, SENDER)
        envelope = Envelope(SENDER, (Recipient("postmaster@bench.test"),),
                            client_ip=CLIENT_IP, client_helo=HELO)
        submission = Submission(Origin.INBOUND, envelope, protocol="ESMTP",
                                spf=verdict.result, spf_helo=verdict.helo_result)
        end = data.index(b"\r\n\r\n") + 2
        content = self.rewrite.rewrite(submission, data[:end]) + data[end:]
        observer = self.hook.observe(submission)
        assert observer is not None
        observer.feed(self.trace)
        observer.feed(content)
        fields = await observer.fields()
        assert b"dmarc=pass" in fields, fields
        return fields


async def run(args: argparse.Namespace) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    found = messages(key)
    resolver = CachingResolver(StaticResolver(zones(key)))
    with tempfile.TemporaryDirectory() as data_dir:
        path = Path25(resolver, data_dir)
        for data in found:  # warm the caches
            await path.one(data)
        rounds = []
        evict = bytearray(EVICT_BYTES) if args.cold else None
        line_bytes = bytes(EVICT_BYTES // 64)  # one byte for each cache line of evict
        for _ in range(args.rounds):
            spent = 0.0
            for i in range(args.iterations):
                if evict is not None:
                    evict[::64] = line_bytes
                start = time.process_time()
                await path.one(found[i % DISTINCT])
                spent += time.process_time() - start
            rounds.append(spent / args.iterations * 1e6)
        calls = None
        if args.calls or args.profile:
            profile = cProfile.Profile()
            profile.enable()
            for i in range(args.iterations):
                await path.one(found[i % DISTINCT])
            profile.disable()
            stats = pstats.Stats(profile)
            calls = stats.total_calls / args.iterations  # type: ignore[attr-defined]
            if args.profile:
                stats.sort_stats(args.sort).print_stats(args.profile)
        await path.recorder.aclose()
    print(f"port-25 path{' (cold caches)' if args.cold else ''}, "
          f"{args.iterations} x {args.rounds}: min {min(rounds):.1f} "
          f"median {statistics.median(rounds):.1f} us CPU/message "
          f"(rounds {[round(r, 1) for r in rounds]})"
          + (f", {calls:.0f} calls/message" if calls is not None else "")
          + f", load {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", action="store_true")
    parser.add_argument("--cold", action="store_true",
                        help="evict the processor's caches between messages")
    parser.add_argument("--profile", type=int, default=0)
    parser.add_argument("--sort", default="tottime")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
