"""Micro benchmark: the CPU cost per message of all the inbound checks, warm caches.

What a message received on port 25 costs in the ingest stage once SPF has run at
MAIL FROM: the header rewrite that removes the fields only we may write, the
DKIM and ARC body hashing as the content streams through (in 16 KiB pieces, as
smtpd hands them over), DKIM verification (key record parsed, RSA-2048 or Ed25519
check), DMARC (discovery and alignment), the Authentication-Results field and the
action.  The DNS answers come from ``CachingResolver`` in front of an in-memory zone
and are all cache hits after the first message, as for the second and later
messages of a sender.  Shapes, each measured on its own: a 2 KB message with one
RSA-2048 signature, the same with an RSA and an Ed25519 signature, a 100 KB signed
message, and an unsigned forged one (DMARC fail).

Reported: CPU microseconds per message (``time.process_time``), the median of
``--rounds`` rounds of ``--iterations`` messages, one event loop, sequential.  The
issue's budget is 2 ms of CPU per message.

Run: ``python3 bench/auth_inbound.py [--iterations 2000] [--rounds 5] [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from cryptography.hazmat.primitives.asymmetric import ed25519, rsa  # noqa: E402

from mailyard.config import DmarcConfig  # noqa: E402
from mailyard.dkim.keys import dns_record  # noqa: E402
from mailyard.dkim.sign import Signer, sign_message  # noqa: E402
from mailyard.dkim.verify import VerifyPolicy  # noqa: E402
from mailyard.dmarc.orgdomain import load_public_suffixes  # noqa: E402
from mailyard.dns import CachingResolver, StaticResolver  # noqa: E402
from mailyard.envelope import Envelope, Recipient  # noqa: E402
from mailyard.ingest.api import Origin, Submission  # noqa: E402
from mailyard.senderauth.checks import MessageChecks, SpfInput, split_message  # noqa: E402
from mailyard.senderauth.hook import OwnFields  # noqa: E402

CHUNK = 16 * 1024
AUTHSERV_ID = "mx.example.net"


def message(size: int) -> bytes:
    header = (b"From: Alice <alice@example.com>\r\nTo: bob@example.net\r\n"
              b"Subject: quarterly report\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\n"
              b"Message-ID: <r1@example.com>\r\nMIME-Version: 1.0\r\n"
              b"Authentication-Results: elsewhere.example; spf=pass\r\n\r\n")
    line = b"The figures for the quarter are in the attached table, see below.  \r\n"
    return header + line * max(1, (size - len(header)) // len(line))


def shapes() -> dict[str, tuple[bytes, SpfInput]]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    now = time.time()
    small, large = message(2048), message(100 * 1024)
    rsa_signer = Signer("example.com", "r1", rsa_key)
    ed_signer = Signer("example.com", "e1", ed_key)
    spf_pass = SpfInput("pass", "mailfrom", "alice@example.com", "example.com")
    spf_fail = SpfInput("fail", "mailfrom", "alice@example.com", "example.com")
    return {
        "2k_rsa": (sign_message(small, [rsa_signer], now) + small, spf_pass),
        "2k_rsa_ed25519": (sign_message(small, [rsa_signer, ed_signer], now) + small, spf_pass),
        "100k_rsa": (sign_message(large, [rsa_signer], now) + large, spf_pass),
        "2k_forged_unsigned": (small, spf_fail),
    }, {"r1._domainkey.example.com": {"TXT": [dns_record(rsa_key)]},
        "e1._domainkey.example.com": {"TXT": [dns_record(ed_key)]}}


async def one(data: bytes, spf: SpfInput, resolver: CachingResolver, rewrite: OwnFields,
              submission: Submission, dmarc: DmarcConfig) -> bytes:
    header, body = split_message(data)
    header = rewrite.rewrite(submission, header)
    checks = MessageChecks(header, VerifyPolicy(), dmarc=dmarc, remote_ip="192.0.2.9")
    for i in range(0, len(body), CHUNK):
        checks.update(body[i:i + CHUNK])
    verdict = await checks.finish(resolver, spf, load_public_suffixes(), sample=lambda: 0)
    verdict.action()
    return verdict.field(AUTHSERV_ID)


async def measure(data: bytes, spf: SpfInput, resolver: CachingResolver, iterations: int,
                  rounds: int) -> list[float]:
    rewrite = OwnFields((AUTHSERV_ID,))
    submission = Submission(Origin.INBOUND, Envelope("alice@example.com",
                                                     (Recipient("bob@example.net"),)))
    dmarc = DmarcConfig()
    await one(data, spf, resolver, rewrite, submission, dmarc)  # warm the caches
    out = []
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(iterations):
            await one(data, spf, resolver, rewrite, submission, dmarc)
        out.append((time.process_time() - start) / iterations * 1e6)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    found, keys = shapes()
    zones = {"_dmarc.example.com": {"TXT": ["v=DMARC1; p=reject"]},
             "example.com": {"A": ["192.0.2.1"]}, **keys}
    resolver = CachingResolver(StaticResolver(zones))
    load_public_suffixes()
    results = {}
    for name, (data, spf) in found.items():
        iterations = max(1, args.iterations // (20 if len(data) > 50_000 else 1))
        rounds = asyncio.run(measure(data, spf, resolver, iterations, args.rounds))
        results[name] = {"size": len(data), "cpu_us_median": round(statistics.median(rounds), 1),
                         "cpu_us_rounds": [round(r, 1) for r in rounds]}
    report = {"python": sys.version.split()[0], "cpus": os.cpu_count(),
              "loadavg": [round(x, 2) for x in os.getloadavg()], "shapes": results}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"inbound checks, warm caches (python {report['python']}, load {report['loadavg']})")
    for name, r in results.items():
        print(f"  {name:22} {r['size']:>7} B  {r['cpu_us_median']:>8.1f} us CPU/message "
              f"(rounds {r['cpu_us_rounds']})")


if __name__ == "__main__":
    main()
