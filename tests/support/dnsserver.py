"""A tiny authoritative DNS server for end-to-end tests and benchmarks.

It serves names from a dict (the shape :class:`mailyard.dns.StaticResolver` takes)
over UDP and TCP on one 127.0.0.1 port, using dnspython for the wire format
(``dns.message.from_wire`` / ``make_response``).  It answers authoritatively (AA):
records of the asked type, CNAME chains followed inside the data (RFC 1034 4.3.2),
NODATA and NXDOMAIN with an SOA in the authority section for negative caching
(RFC 2308 3).  Oversized UDP answers are truncated (TC) so clients retry over TCP.
Faults are injected per name: ``servfail(name)`` answers SERVFAIL, ``drop(name)``
never answers (the client times out).  With ``authenticated = True`` it answers like a
validating resolver over signed zones: the AD bit is set (RFC 4035 3.2.3) on answers
to queries that ask for it (AD or DO set), except for names in ``unsigned``.

In a test::

    server = DnsTestServer({"example.org": {"MX": ["10 mx.example.org"]}})
    server.start()            # server.address == ("127.0.0.1", port)
    ...
    server.stop()

From a shell (for benchmarks)::

    python -m tests.support.dnsserver --zone zones.json --port 5353
"""

from __future__ import annotations

import argparse
import json
import selectors
import signal
import socket
import struct
import threading
from collections.abc import Mapping
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

_MAX_CHAIN = 8
_UDP_DEFAULT_PAYLOAD = 512


def _norm(name: str) -> str:
    return name.strip().lower().rstrip(".")


def _rdata_text(rdtype: str, value: Any) -> str:
    if rdtype == "MX" and isinstance(value, (list, tuple)):
        pref, host = value
        value = f"{pref} {host}"
    if rdtype == "TXT":
        text = str(value)
        chunks = [text[i:i + 255] for i in range(0, len(text), 255)] or [""]
        return " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)
    if rdtype in ("MX", "CNAME", "PTR"):
        # Make targets absolute so dnspython does not append an origin.
        head, _, target = str(value).rpartition(" ")
        target = target if target.endswith(".") else target + "."
        return f"{head} {target}".strip()
    return str(value)


class DnsTestServer:
    def __init__(self, zones: Mapping[str, Mapping[str, Any]] | None = None, *,
                 host: str = "127.0.0.1", port: int = 0, ttl: int = 300,
                 negative_ttl: int = 60, authenticated: bool = False) -> None:
        self.host = host
        self.authenticated = authenticated
        self.unsigned: set[str] = set()
        self.requested_port = port
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self._lock = threading.Lock()
        self._names: dict[str, dict[str, list[Any]]] = {}
        self._faults: dict[str, str] = {}
        self.queries: list[tuple[str, str, str]] = []  # (name, type, "udp"|"tcp")
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop_r, self._stop_w = socket.socketpair()
        for name, types in (zones or {}).items():
            for rdtype, values in types.items():
                self.set(name, rdtype, values if isinstance(values, (list, tuple)) else [values])

    # --- data and faults ---------------------------------------------------------
    def set(self, name: str, rdtype: str, values: list[Any]) -> None:
        with self._lock:
            self._names.setdefault(_norm(name), {})[rdtype.upper()] = list(values)

    def servfail(self, name: str) -> None:
        with self._lock:
            self._faults[_norm(name)] = "servfail"

    def drop(self, name: str) -> None:
        with self._lock:
            self._faults[_norm(name)] = "drop"

    def heal(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def address(self) -> tuple[str, int]:
        if self._udp is None:
            raise RuntimeError("server not started")
        return self._udp.getsockname()[:2]

    @property
    def server_spec(self) -> str:
        """``ip:port`` as ``delivery.dns_servers`` takes it."""
        host, port = self.address
        return f"{host}:{port}"

    # --- lifecycle ---------------------------------------------------------------
    def start(self) -> DnsTestServer:
        self._udp, self._tcp = self._bind()
        self._thread = threading.Thread(target=self._serve, name="dns-test-server", daemon=True)
        self._thread.start()
        return self

    def _bind(self) -> tuple[socket.socket, socket.socket]:
        # UDP and TCP must share a port number; with port 0 retry until both bind.
        for _ in range(20):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind((self.host, self.requested_port))
            port = udp.getsockname()[1]
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind((self.host, port))
            except OSError:
                udp.close()
                tcp.close()
                if self.requested_port:
                    raise
                continue
            tcp.listen(16)
            return udp, tcp
        raise OSError("could not bind UDP and TCP on one port")

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop_w.send(b"x")
        self._thread.join(timeout=5)
        self._thread = None
        for sock in (self._udp, self._tcp):
            if sock is not None:
                sock.close()

    def __enter__(self) -> DnsTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- serving -----------------------------------------------------------------
    def _serve(self) -> None:
        assert self._udp is not None and self._tcp is not None
        sel = selectors.DefaultSelector()
        sel.register(self._udp, selectors.EVENT_READ, "udp")
        sel.register(self._tcp, selectors.EVENT_READ, "tcp")
        sel.register(self._stop_r, selectors.EVENT_READ, "stop")
        try:
            while True:
                for key, _ in sel.select():
                    if key.data == "stop":
                        return
                    if key.data == "udp":
                        self._serve_udp()
                    else:
                        conn, _ = self._tcp.accept()
                        threading.Thread(target=self._serve_tcp, args=(conn,), daemon=True).start()
        finally:
            sel.close()

    def _serve_udp(self) -> None:
        assert self._udp is not None
        wire, peer = self._udp.recvfrom(65535)
        reply = self.handle(wire, "udp")
        if reply is not None:
            self._udp.sendto(reply, peer)

    def _serve_tcp(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        with conn:
            try:
                while True:
                    head = self._recv_exact(conn, 2)
                    if head is None:
                        return
                    wire = self._recv_exact(conn, struct.unpack("!H", head)[0])
                    if wire is None:
                        return
                    reply = self.handle(wire, "tcp")
                    if reply is None:
                        return
                    conn.sendall(struct.pack("!H", len(reply)) + reply)
            except OSError:
                return

    @staticmethod
    def _recv_exact(conn: socket.socket, size: int) -> bytes | None:
        data = b""
        while len(data) < size:
            chunk = conn.recv(size - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def handle(self, wire: bytes, transport: str) -> bytes | None:
        """The reply to one query in wire format; None to stay silent."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        if len(query.question) != 1:
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        question = query.question[0]
        qname = _norm(question.name.to_text())
        rdtype = dns.rdatatype.to_text(question.rdtype)
        with self._lock:
            self.queries.append((qname, rdtype, transport))
            fault = self._faults.get(qname)
        if fault == "drop":
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if fault == "servfail":
            response.flags &= ~dns.flags.AA
            response.set_rcode(dns.rcode.SERVFAIL)
        else:
            self._answer(response, qname, rdtype)
            asked = query.flags & dns.flags.AD or query.ednsflags & dns.flags.DO
            if self.authenticated and asked and qname not in self.unsigned:
                response.flags |= dns.flags.AD
        limit = _UDP_DEFAULT_PAYLOAD if transport == "udp" else 65535
        if transport == "udp" and query.edns >= 0:
            limit = max(query.payload, _UDP_DEFAULT_PAYLOAD)
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            truncated = dns.message.make_response(query)
            truncated.flags |= dns.flags.AA | dns.flags.TC
            return truncated.to_wire()

    def _answer(self, response: dns.message.Message, qname: str, rdtype: str) -> None:
        with self._lock:
            names = {n: dict(t) for n, t in self._names.items()}
        current = qname
        for _ in range(_MAX_CHAIN):
            types = names.get(current, {})
            if types.get(rdtype):
                response.answer.append(self._rrset(current, rdtype, types[rdtype]))
                return
            if not types.get("CNAME") or rdtype == "CNAME":
                break
            response.answer.append(self._rrset(current, "CNAME", types["CNAME"][:1]))
            current = _norm(_rdata_text("CNAME", types["CNAME"][0]))
        if current not in names and not any(n.endswith("." + current) for n in names):
            response.set_rcode(dns.rcode.NXDOMAIN)  # with any CNAMEs seen (RFC 6604 3)
        response.authority.append(self._soa(current))

    def _rrset(self, name: str, rdtype: str, values: list[Any]) -> dns.rrset.RRset:
        rdatas = [dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype),
                                      _rdata_text(rdtype, v)) for v in values]
        return dns.rrset.from_rdata_list(dns.name.from_text(name), self.ttl, rdatas)

    def _soa(self, name: str) -> dns.rrset.RRset:
        labels = name.split(".")
        apex = ".".join(labels[-2:]) if len(labels) >= 2 else name
        text = f"ns.{apex}. hostmaster.{apex}. 1 3600 600 86400 {self.negative_ttl}"
        rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.SOA, text)
        return dns.rrset.from_rdata_list(dns.name.from_text(apex), self.negative_ttl, [rdata])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve DNS test zones from a JSON file.")
    parser.add_argument("--zone", required=True, help="JSON: {name: {type: [values]}}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--servfail", action="append", default=[], metavar="NAME")
    parser.add_argument("--drop", action="append", default=[], metavar="NAME")
    args = parser.parse_args(argv)
    with open(args.zone, encoding="utf-8") as f:
        zones = json.load(f)
    server = DnsTestServer(zones, host=args.host, port=args.port)
    for name in args.servfail:
        server.servfail(name)
    for name in args.drop:
        server.drop(name)
    server.start()
    print(f"serving DNS on {server.server_spec}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
