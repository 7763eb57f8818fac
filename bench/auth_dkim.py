"""DKIM sign and verify throughput: Mailyard's ``mailyard.dkim`` against dkimpy, side by
side in one process.

For each message size (2 KB and 100 KB by default) and each operation, the two
implementations run in alternating rounds (ours, dkimpy, ours, dkimpy...), each round
for ``--seconds``, so a change in machine load hits both alike.  Both sign with the
same RSA-2048 key, relaxed/relaxed, rsa-sha256; both verify the same signed message
(signed by us) with the key served from memory (no DNS).  Reported per size and
operation: the median rate of the rounds (messages per second), the median CPU
microseconds per message, and the ratio of messages per CPU second (dkimpy's CPU time
over ours; the ratio of wall-clock rates is in the JSON as ``wall_ratio``).  Also
reported: where our signing time goes (body hash vs the RSA operation and header
work) and an Ed25519 signature's cost.

Targets (issue 10): signing at least 10x dkimpy's rate, verifying no slower.

Run: ``python3 bench/auth_dkim.py [--sizes 2048,102400] [--rounds 5] [--seconds 0.5]``
Needs dkimpy (``pip install -e '.[test]'``).  Exit status 0 when both targets are met.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import dkim  # noqa: E402
from benchlib import machine_info, write_result  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa  # noqa: E402

from mailyard.dkim.canon import BodyHasher, Canon  # noqa: E402
from mailyard.dkim.keys import dns_record  # noqa: E402
from mailyard.dkim.sign import Signer, sign_message  # noqa: E402
from mailyard.dkim.verify import verify_message  # noqa: E402
from mailyard.dns.static import StaticResolver  # noqa: E402

DOMAIN, SELECTOR = "example.com", "bench"
HEADER = (b"From: Ada Lovelace <ada@example.com>\r\nTo: Bob <bob@example.net>\r\n"
          b"Subject: Quarterly  report\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\n"
          b"Message-ID: <bench.1@example.com>\r\nMIME-Version: 1.0\r\n"
          b"Content-Type: text/plain; charset=utf-8\r\n\r\n")
LINE = b"The  figures for the quarter are attached;\tsee the table below.  \r\n"


def make_message(size: int) -> bytes:
    body = LINE * ((size - len(HEADER)) // len(LINE) + 1)
    return HEADER + body[:size - len(HEADER) - 2] + b"\r\n"


def timed(fn: Callable[[], object], seconds: float) -> tuple[float, float]:
    """(operations per second, CPU microseconds per operation) over ``seconds``."""
    count = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    deadline = wall0 + seconds
    while True:
        fn()
        count += 1
        if time.perf_counter() >= deadline:
            break
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return count / wall, cpu / count * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2048,102400", help="message sizes in bytes")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.5, help="per side per round")
    args = parser.parse_args()

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM,
                            serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    record = dns_record(key)
    name = f"{SELECTOR}._domainkey.{DOMAIN}"
    resolver = StaticResolver({name: {"TXT": [record]}})
    signer = Signer(DOMAIN, SELECTOR, key)
    loop = asyncio.new_event_loop()

    def dnsfunc(_name: bytes, timeout: int = 5) -> bytes:
        return record.encode()

    report: dict[str, object] = {"machine": machine_info(), "rounds": args.rounds,
                                 "seconds": args.seconds, "sizes": {}}
    ok = True
    for size in (int(s) for s in args.sizes.split(",")):
        message = make_message(size)
        signed = sign_message(message, [signer], time.time()) + message
        assert loop.run_until_complete(verify_message(signed, resolver))[0].status == "pass"
        assert dkim.verify(signed, dnsfunc=dnsfunc)

        def ours_sign(message: bytes = message) -> None:
            sign_message(message, [signer], time.time())

        def dkimpy_sign(message: bytes = message) -> None:
            dkim.sign(message, SELECTOR.encode(), DOMAIN.encode(), pem,
                      canonicalize=(b"relaxed", b"relaxed"))

        def ours_verify(signed: bytes = signed) -> None:
            loop.run_until_complete(verify_message(signed, resolver))

        def dkimpy_verify(signed: bytes = signed) -> None:
            dkim.verify(signed, dnsfunc=dnsfunc)

        figures: dict[str, dict[str, float]] = {}
        for op, pair in (("sign", (ours_sign, dkimpy_sign)),
                         ("verify", (ours_verify, dkimpy_verify))):
            rates: dict[str, list[tuple[float, float]]] = {"mailyard": [], "dkimpy": []}
            for _ in range(args.rounds):
                for side, fn in zip(("mailyard", "dkimpy"), pair, strict=True):
                    rates[side].append(timed(fn, args.seconds))
            row = {}
            for side, values in rates.items():
                row[f"{side}_per_s"] = statistics.median(v[0] for v in values)
                row[f"{side}_cpu_us"] = statistics.median(v[1] for v in values)
            # CPU time per message is what the target is about (messages per CPU
            # second); the wall-clock rates also carry whatever else the machine ran.
            row["ratio"] = row["dkimpy_cpu_us"] / row["mailyard_cpu_us"]
            row["wall_ratio"] = row["mailyard_per_s"] / row["dkimpy_per_s"]
            figures[op] = row
        hasher_cost = timed(lambda m=message: _hash(m), args.seconds)[1]
        figures["parts_us"] = {
            "body_hash": hasher_cost,
            "rsa_sign_and_header": figures["sign"]["mailyard_cpu_us"] - hasher_cost,
        }
        ok &= figures["sign"]["ratio"] >= 10 and figures["verify"]["ratio"] >= 1
        report["sizes"][str(size)] = figures  # type: ignore[index]
        print(f"{size:>7} B  sign   mailyard {figures['sign']['mailyard_per_s']:9.0f}/s "
              f"({figures['sign']['mailyard_cpu_us']:7.0f} us)  dkimpy "
              f"{figures['sign']['dkimpy_per_s']:8.0f}/s "
              f"({figures['sign']['dkimpy_cpu_us']:7.0f} us)  ratio "
              f"{figures['sign']['ratio']:5.1f}x")
        print(f"{size:>7} B  verify mailyard {figures['verify']['mailyard_per_s']:9.0f}/s "
              f"({figures['verify']['mailyard_cpu_us']:7.0f} us)  dkimpy "
              f"{figures['verify']['dkimpy_per_s']:8.0f}/s "
              f"({figures['verify']['dkimpy_cpu_us']:7.0f} us)  ratio "
              f"{figures['verify']['ratio']:5.1f}x")
        print(f"{size:>7} B  our signing: body hash {hasher_cost:.0f} us, RSA and header "
              f"{figures['parts_us']['rsa_sign_and_header']:.0f} us")
    ed = Signer(DOMAIN, SELECTOR, ed25519.Ed25519PrivateKey.generate())
    small = make_message(2048)
    report["ed25519_sign_2k_cpu_us"] = timed(
        lambda: sign_message(small, [ed], time.time()), args.seconds)[1]
    print(f"ed25519 signing, 2 KB: {report['ed25519_sign_2k_cpu_us']:.0f} us CPU")
    print(f"load average {os.getloadavg()[0]:.2f} (at start "
          f"{report['machine']['loadavg_at_start']:.2f}), "  # type: ignore[index]
          f"{os.cpu_count()} CPUs")
    path = write_result("auth_dkim", report)
    print(f"targets (sign >= 10x, verify >= 1x): {'met' if ok else 'NOT met'}; {path}")
    loop.close()
    return 0 if ok else 1


def _hash(message: bytes) -> bytes:
    hasher = BodyHasher(Canon.RELAXED)
    hasher.update(message[message.index(b"\r\n\r\n") + 4:])
    return hasher.digest()


if __name__ == "__main__":
    sys.exit(main())
