"""``bench/smtp_accept --checks``: the cost of the inbound checks on port 25.

Mailyard against itself, rounds alternating: ``off`` (SPF, DKIM verification and DMARC
disabled) and ``on`` (SPF at MAIL FROM, DKIM and ARC verification, DMARC, and the
recording of each DMARC evaluation for the aggregate reports, ``[dmarc] reports``),
with every lookup answered by a DNS server on loopback (``tests/support/dnsserver``)
through the server's caching resolver: the sender domain's SPF record, its DKIM key
and its DMARC record (``p=reject`` with ``rua``), as a real sender's would be.

The load is Postfix's ``smtp-source``, as in ``bench/smtp_accept``: ``--sessions``
sessions, a new connection per message, each message the same 2 KB mail (``-F``, sent
as it is) signed once with RSA-2048 (relaxed/relaxed) by ``mailyard.dkim``, so the
server verifies a valid signature every time.  The client is the same C program on
both sides and uses little CPU, so on a machine where the server is the bound the rate
ratio is close to the ratio of the server's CPU per message, as it would be for mail
from remote senders.

Reported per side (median round): msg/s from the first connect to the last 250, CPU
seconds of the server's process tree and CPU milliseconds per message; then the
on/off ratios.  Target (issue 10): accept with the checks on within 15% of accept
without.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from benchlib import (  # noqa: E402
    BenchError,
    MailyardServer,
    ProcessTreeSampler,
    SideResult,
    combine_rounds,
    host_cpu_share,
    host_cpu_times,
    host_note,
    machine_info,
    ratio,
    run_smtp_source,
    spread_out,
    tree_cpu_seconds,
    write_result,
)
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from mailyard.dkim.keys import dns_record  # noqa: E402
from mailyard.dkim.sign import Signer, sign_message  # noqa: E402
from tests.support.dnsserver import DnsTestServer  # noqa: E402

DOMAIN = "bench.test"
SENDER_DOMAIN = "source.bench.test"
SENDER = f"loadgen@{SENDER_DOMAIN}"
RECIPIENT = f"postmaster@{DOMAIN}"
SELECTOR = "bench"


def signed_message(key: rsa.RSAPrivateKey, size: int) -> bytes:
    header = (f"From: Load Generator <{SENDER}>\r\nTo: {RECIPIENT}\r\n"
              "Subject: accept with checks\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\n"
              f"Message-ID: <bench@{SENDER_DOMAIN}>\r\nMIME-Version: 1.0\r\n\r\n").encode()
    line = b"The figures for the quarter are in the attached table, see below.  \r\n"
    message = header + line * max(1, (size - len(header)) // len(line))
    return sign_message(message, [Signer(SENDER_DOMAIN, SELECTOR, key)], time.time()) + message


def zones(key: rsa.RSAPrivateKey) -> dict[str, dict[str, list[str]]]:
    return {
        SENDER_DOMAIN: {"TXT": ["v=spf1 ip4:127.0.0.0/8 -all"], "A": ["127.0.0.1"]},
        f"{SELECTOR}._domainkey.{SENDER_DOMAIN}": {"TXT": [dns_record(key)]},
        f"_dmarc.{SENDER_DOMAIN}": {"TXT": [
            f"v=DMARC1; p=reject; rua=mailto:dmarc@{SENDER_DOMAIN}"]},
    }


def _load(port: int, messages: int, sessions: int, message_file: Path) -> float:
    """``smtp-source`` sends ``messages``; its wall time."""
    run = run_smtp_source(port, messages=messages, sessions=sessions, size=0,
                          sender=SENDER, recipient=RECIPIENT, timeout=600,
                          message_file=message_file)
    if not run.ok:
        raise BenchError(f"smtp-source failed: {run.failure()}")
    return run.elapsed


def _verified(log: Path) -> int:
    """Transactions the server logged with every check passing."""
    with open(log, "rb") as lines:
        return sum(1 for line in lines
                   if b" spf=pass " in line and b" dkim=pass " in line and b" dmarc=pass " in line)


def settings(checks: bool, dns: DnsTestServer, args: argparse.Namespace) -> dict:  # type: ignore[type-arg]
    base = {
        "local_domains": [DOMAIN],
        "smtpd": {"workers": args.workers,
                  "max_connections_per_ip": max(100, 2 * args.sessions)},
        "delivery": {"defer_all": True, "dns_servers": [dns.server_spec], "dns_timeout": 2.0},
    }
    if checks:
        base.update(spf={"enabled": True, "skip_addresses": []},
                    dkim={"verify": True}, dmarc={"enabled": True, "reports": True})
    else:
        base.update(spf={"enabled": False}, dkim={"verify": False}, dmarc={"enabled": False})
    return base


def bench_side(checks: bool, dns: DnsTestServer, message_file: Path, args: argparse.Namespace,
               workdir: Path) -> SideResult:
    side = SideResult("checks-on" if checks else "checks-off")
    server = MailyardServer(workdir, settings(checks, dns, args))
    try:
        server.start()
        _load(server.port, min(50, args.messages), 5, message_file)  # warm caches
        sampler = ProcessTreeSampler(server.pid).start()
        cpu0 = tree_cpu_seconds(server.pid)
        try:
            elapsed = _load(server.port, args.messages, args.sessions, message_file)
            cpu = tree_cpu_seconds(server.pid) - cpu0
        finally:
            usage = sampler.stop()
        side.figures.update(elapsed_s=round(elapsed, 3),
                            msgs_per_s=round(args.messages / elapsed, 1),
                            cpu_s=round(cpu, 2),
                            cpu_ms_per_msg=round(1000 * cpu / args.messages, 3),
                            memory=usage.as_dict())
        queued = len(server.queue_entries())
        side.figures["queued"] = queued
        expected = args.messages + min(50, args.messages)
        if queued != expected:
            raise BenchError(f"{queued} message(s) queued, {expected} sent")
        if checks:
            verified = _verified(server.log_path)
            if verified != expected:
                raise BenchError(f"{verified} of {expected} message(s) logged with "
                                 "spf=pass dkim=pass dmarc=pass")
        side.ok = True
    except (BenchError, OSError) as exc:
        side.error = str(exc)
        side.figures["log_tail"] = server.log_tail()
    finally:
        server.stop()
    return side


def main(args: argparse.Namespace) -> int:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    content = signed_message(key, args.size)
    result: dict = {"bench": "smtp_accept_checks", "machine": machine_info(),  # type: ignore[type-arg]
                    "params": vars(args), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    runs: dict[str, list[dict]] = {"checks-off": [], "checks-on": []}  # type: ignore[type-arg]
    with DnsTestServer(zones(key)) as dns, \
            tempfile.TemporaryDirectory(prefix="bench-accept-checks-") as tmp:
        result["machine"]["spread_out"] = spread_out(Path(tmp))
        message_file = Path(tmp) / "signed.eml"  # smtp-source -F: LF line ends
        message_file.write_bytes(content.replace(b"\r\n", b"\n"))
        for n in range(args.rounds):
            order = (False, True) if n % 2 == 0 else (True, False)
            for checks in order:
                host = host_cpu_times()
                one = bench_side(checks, dns, message_file, args,
                                 Path(tmp) / f"round{n + 1}-{checks}")
                one.figures["host"] = host_cpu_share(host)
                one.figures["loadavg"] = os.getloadavg()[0]
                runs[one.server].append(one.as_dict())
                status = f"{one.figures.get('msgs_per_s')} msg/s" if one.ok else "failed"
                print(f"  round {n + 1}/{args.rounds} {one.server}: {status} "
                      f"(load average {one.figures['loadavg']:.2f}"
                      f"{host_note(one.figures['host'])})", flush=True)
                if not one.ok:
                    print(one.error, file=sys.stderr)
                    return 1
    off, on = (combine_rounds(s, runs[s]) for s in ("checks-off", "checks-on"))
    result.update({"checks-off": off, "checks-on": on,
                   "rate_on_over_off": ratio(on["msgs_per_s"], off["msgs_per_s"]),
                   "cpu_per_msg_on_over_off": ratio(on["cpu_ms_per_msg"],
                                                    off["cpu_ms_per_msg"])})
    path = write_result("smtp_accept_checks", result)
    print(f"smtp_accept --checks: {args.messages} signed messages x {args.size} B, "
          f"{args.sessions} sessions, new connection per message")
    for side in (off, on):
        print(f"  {side['server']:<10} {side['msgs_per_s']:>8.1f} msg/s "
              f"[{side['msgs_per_s_min']}-{side['msgs_per_s_max']}]  "
              f"cpu {side['cpu_s']:.2f} s ({side['cpu_ms_per_msg']:.3f} ms/msg)")
    print(f"  on/off: rate {result['rate_on_over_off']}, CPU per message "
          f"{result['cpu_per_msg_on_over_off']}")
    print(f"  results: {path}")
    return 0
