"""``mailyard serve`` under an MTA-STS policy (RFC 8461): the policy fetched over
HTTPS from a loopback address on port 443 (test CA), an MX host without STARTTLS
refused in enforce mode and used in testing mode, the cache file, and the TLS-RPT
counts read back with ``mailyard report tls``."""

from __future__ import annotations

import http.server
import json
import os
import random
import ssl
import stat
import threading

import pytest

from tests.support.certs import make_ca
from tests.support.dnsserver import DnsTestServer
from tests.support.fake_mx import FakeMx
from tests.support.mailyard_server import free_port
from tests.support.outbound import outbound_server, submit, wait_deferred, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120),
              pytest.mark.skipif(os.geteuid() != 0, reason="serves HTTPS on port 443")]


class PolicyHost:
    """``https://mta-sts.dest.test/.well-known/mta-sts.txt`` on ``address``:443."""

    def __init__(self, address: str, context: ssl.SSLContext, body: str) -> None:
        self.body = body
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server name)
                data = owner.body.encode()
                self.send_response(200 if self.path == "/.well-known/mta-sts.txt" else 404)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer((address, 443), Handler)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> PolicyHost:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def policy(mode: str) -> str:
    return f"version: STSv1\r\nmode: {mode}\r\nmx: mx1.dest.test\r\nmax_age: 86400\r\n"


def test_enforce_refuses_a_plaintext_mx_and_testing_delivers(tmp_path) -> None:
    prefix = f"127.{random.randint(20, 250)}.{random.randint(1, 250)}"
    https_ip, mx_ip, port = f"{prefix}.1", f"{prefix}.2", free_port()
    ca = make_ca(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*ca.issue(tmp_path, "mta-sts.dest.test"))
    zones = {"dest.test": {"MX": ["10 mx1.dest.test"]},
             "mx1.dest.test": {"A": [mx_ip]},
             "mta-sts.dest.test": {"A": [https_ip]},
             "_mta-sts.dest.test": {"TXT": ["v=STSv1; id=1"]}}
    # A 1 s TTL: the new TXT record (new policy id) is seen at the next attempt.
    with DnsTestServer(zones, ttl=1) as dns, \
            PolicyHost(https_ip, context, policy("enforce")) as host, FakeMx(mx_ip, port) as mx:
        server = outbound_server(tmp_path / "my", dns, port,
                                 sections={"mta_sts": {"ca_file": str(ca.cert_file)}})
        try:
            submit(server, ["r@dest.test"], "under an enforce policy")
            deferred = wait_deferred(server, "r@dest.test")
            assert deferred["reply"]["status"] == "4.7.4", deferred["reply"]
            assert mx.messages == []
            # The domain switches to testing mode: a new policy id, a new policy.
            host.body = policy("testing")
            dns.set("_mta-sts.dest.test", "TXT", ["v=STSv1; id=2"])
            server.cli("queue", "flush")
            mx.wait_messages(1, timeout=20)
            wait_until(lambda: not server.queue(), 20, "an empty queue")
        finally:
            server.stop()
    data = server.data_dir
    assert stat.S_IMODE(os.stat(data / "mta-sts.db").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(data / "tls-rpt.db").st_mode) == 0o600
    (row,) = json.loads(server.cli("report", "tls", "--json").stdout)
    assert row["domain"] == "dest.test" and row["policy"] == "sts"
    assert row["failures"]["starttls-not-supported"] >= 2  # refused once, then testing
