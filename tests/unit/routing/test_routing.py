"""Outbound routing with StaticResolver: transports, relayhost, literals, MX (RFC 5321
5.1), implicit MX, Null MX (RFC 7505), loops, DNS failures."""

from __future__ import annotations

import asyncio
import random

import pytest

from mailyard.config import Config, DeliveryConfig, TransportRoute
from mailyard.delivery.routing import (
    NextHop,
    RouteError,
    Router,
    SmtpAuth,
    find_transport,
    order_mx,
    route,
)
from mailyard.dns import MxRecord, StaticResolver
from mailyard.proto.smtp.replies import (
    REPLY_DNS_TEMP_FAILURE,
    REPLY_DOMAIN_NOT_FOUND,
    REPLY_MAIL_LOOPS,
    REPLY_NEXTHOP_UNRESOLVED,
    REPLY_NO_MX_ADDRESS,
    REPLY_NO_ROUTE,
    REPLY_NO_SECURE_MX,
    REPLY_NULL_MX,
)

ZONES = {
    "example.net": {"MX": ["20 mx2.example.net", "10 mx1.example.net"]},
    "mx1.example.net": {"A": ["192.0.2.1"], "AAAA": ["2001:db8::1"]},
    "mx2.example.net": {"A": ["192.0.2.2"]},
    "implicit.example": {"A": ["192.0.2.30"]},
    "bare.example": {"TXT": ["no mail here"]},
    "nullmx.example": {"MX": ["0 ."]},
    "alias-mx.example": {"MX": ["10 www.alias-mx.example"]},
    "www.alias-mx.example": {"CNAME": ["mx2.example.net"]},
    "iplit.example": {"MX": ["10 192.0.2.77"]},
    "half.example": {"MX": ["10 gone.half.example", "20 mx2.example.net"]},
    "dead.example": {"MX": ["10 gone.dead.example", "20 gone2.dead.example"]},
    "flaky.example": {"MX": ["10 flaky-mx.flaky.example"]},
    "flaky-mx.flaky.example": {"A": ["192.0.2.50"]},
    "self.example": {"MX": ["10 mail.mailyard.test", "20 mx2.example.net"]},
    "backup.example": {"MX": ["10 mx1.example.net", "20 mail.mailyard.test",
                              "30 mx2.example.net"]},
    "relay.mailyard.test": {"A": ["192.0.2.100"]},
    "xn--bcher-kva.example": {"MX": ["10 mx1.example.net"]},
    "outsourced.example": {"MX": ["10 mx1.example.net"]},
}


def cfg(**delivery) -> Config:
    return Config(hostname="mail.mailyard.test", delivery=DeliveryConfig(**delivery))


def hops_of(domain: str, config: Config | None = None, resolver=None, seed: int = 1):
    return asyncio.run(route(domain, config or cfg(), resolver or StaticResolver(ZONES),
                             rng=random.Random(seed)))


def route_error(domain: str, config: Config | None = None, resolver=None) -> RouteError:
    with pytest.raises(RouteError) as info:
        hops_of(domain, config, resolver)
    return info.value


def test_mx_in_preference_order_with_all_addresses():
    """RFC 5321 5.1: MX hosts in ascending preference, each with its addresses."""
    r = hops_of("example.net")
    assert r.via == "mx"
    assert [(h.host, h.ip, h.mx_preference) for h in r.hops] == [
        ("mx1.example.net", "2001:db8::1", 10),
        ("mx1.example.net", "192.0.2.1", 10),
        ("mx2.example.net", "192.0.2.2", 20),
    ]
    assert all(h.port == 25 and h.tls_policy == "may" and h.auth is None for h in r.hops)


def test_port_and_tls_from_config():
    r = hops_of("example.net", cfg(smtp_port=2525, tls="require"))
    assert {(h.port, h.tls_policy) for h in r.hops} == {(2525, "require")}


def test_equal_preferences_are_shuffled():
    """RFC 5321 5.1: equal-preference MX hosts are tried in random order."""
    records = tuple(MxRecord(10, f"mx{i}.example") for i in range(6)) + (MxRecord(5, "first"),)
    orders = {tuple(r.host for r in order_mx(records, random.Random(seed)))
              for seed in range(20)}
    assert len(orders) > 1
    assert all(order[0] == "first" for order in orders)


def test_implicit_mx():
    """RFC 5321 5.1: no MX records -> the domain itself, preference 0."""
    r = hops_of("implicit.example")
    assert r.via == "implicit-mx"
    assert r.hops == (NextHop("implicit.example", "192.0.2.30", 25, "may", None, 0),)


def test_no_mx_and_no_address_is_permanent():
    err = route_error("bare.example")
    assert not err.temporary
    assert err.smtp_reply.status == REPLY_NO_ROUTE.status


def test_null_mx_is_permanent_556():
    """RFC 7505 4.1: Null MX -> permanent failure, 556 5.1.10."""
    err = route_error("nullmx.example")
    assert not err.temporary
    assert (err.smtp_reply.code, err.smtp_reply.status) == (REPLY_NULL_MX.code, "5.1.10")
    assert err.reply.startswith("556 5.1.10 ")


def test_nxdomain_is_permanent():
    err = route_error("nowhere.example")
    assert not err.temporary
    assert err.smtp_reply.status == REPLY_DOMAIN_NOT_FOUND.status


def test_mx_servfail_is_temporary():
    resolver = StaticResolver(ZONES)
    resolver.fail("example.net")
    err = route_error("example.net", resolver=resolver)
    assert err.temporary and err.smtp_reply.status == REPLY_DNS_TEMP_FAILURE.status


def test_mx_timeout_is_temporary():
    resolver = StaticResolver(ZONES)
    resolver.fail("example.net", "timeout")
    assert route_error("example.net", resolver=resolver).temporary


def test_mx_host_pointing_at_cname_is_followed():
    """RFC 2181 10.3 forbids it, RFC 5321 5.1 tolerates it: follow the alias."""
    r = hops_of("alias-mx.example")
    assert [(h.host, h.ip) for h in r.hops] == [("www.alias-mx.example", "192.0.2.2")]


def test_mx_ip_literal_is_used_with_warning():
    r = hops_of("iplit.example")
    assert [(h.host, h.ip) for h in r.hops] == [("192.0.2.77", "192.0.2.77")]
    assert any("IP address" in w for w in r.warnings)


def test_unresolvable_mx_host_is_skipped():
    r = hops_of("half.example")
    assert [h.host for h in r.hops] == ["mx2.example.net"]
    assert any("gone.half.example" in w for w in r.warnings)


def test_all_mx_hosts_unresolvable_is_temporary():
    err = route_error("dead.example")
    assert err.temporary and err.smtp_reply.status == REPLY_NO_MX_ADDRESS.status


def test_mx_host_lookup_failure_is_temporary():
    resolver = StaticResolver(ZONES)
    resolver.fail("flaky-mx.flaky.example")
    err = route_error("flaky.example", resolver=resolver)
    assert err.temporary and err.smtp_reply.status == REPLY_DNS_TEMP_FAILURE.status


def test_best_mx_is_myself_loops():
    """RFC 5321 5.1: if we are the best MX, the mail would loop back to us."""
    err = route_error("self.example")
    assert not err.temporary and err.smtp_reply.status == REPLY_MAIL_LOOPS.status


def test_backup_mx_uses_only_better_hosts():
    """RFC 5321 5.1: as an MX ourselves, only hosts with a better preference."""
    r = hops_of("backup.example")
    assert {h.host for h in r.hops} == {"mx1.example.net"}


def test_address_literals():
    """RFC 5321 4.1.3: address literals are used directly, no DNS."""
    v4 = hops_of("[192.0.2.9]", resolver=StaticResolver({}))
    assert v4.via == "literal" and v4.hops[0].ip == "192.0.2.9"
    v6 = hops_of("[IPv6:2001:DB8::9]", resolver=StaticResolver({}))
    assert v6.hops[0].ip == "2001:db8::9"
    assert not route_error("[999.1.1.1]").temporary
    assert not route_error("[ipv6:zz]").temporary


def test_international_domain_routed_by_a_label():
    """RFC 5890/5891: the U-label domain is looked up as its A-label."""
    r = hops_of("bücher.example")
    assert r.domain == "xn--bcher-kva.example"
    assert r.hops[0].host == "mx1.example.net"


def test_relayhost_with_port_auth_and_tls():
    config = cfg(relayhost="relay.mailyard.test:587", relayhost_username="u",
                 relayhost_password="secret", relayhost_tls="secure")
    r = hops_of("example.net", config)
    assert r.via == "relayhost"
    assert r.hops == (NextHop("relay.mailyard.test", "192.0.2.100", 587, "secure",
                              SmtpAuth("u", "secret")),)
    assert "secret" not in repr(r.hops[0])


def test_relayhost_tls_level_defaults_to_verify_with_credentials():
    plain = hops_of("example.net", cfg(relayhost="relay.mailyard.test"))
    assert plain.hops[0].tls_policy == "may"
    config = cfg(relayhost="relay.mailyard.test", relayhost_username="u",
                 relayhost_password="secret")
    (hop,) = hops_of("example.net", config).hops
    assert hop.tls_policy == "verify" and hop.auth == SmtpAuth("u", "secret")
    assert not hop.auth.unverified_ok
    config = cfg(relayhost="relay.mailyard.test", relayhost_username="u",
                 relayhost_password="secret", relayhost_tls="encrypt",
                 relayhost_auth_unverified=True)
    (hop,) = hops_of("example.net", config).hops
    assert hop.tls_policy == "encrypt" and hop.auth.unverified_ok


def test_relayhost_and_transport_carry_ca_file_and_pins():
    pin = "sha256:" + "ab" * 32
    config = cfg(relayhost="relay.mailyard.test", relayhost_tls_fingerprints=(pin,))
    (hop,) = hops_of("example.net", config).hops
    assert (hop.tls_policy, hop.tls_fingerprints, hop.tls_ca_file) == ("verify", (pin,), "")
    config = cfg(transports=(TransportRoute(domain="example.net", nexthop="192.0.2.60",
                                            tls="secure", tls_ca_file="/etc/ca.pem"),))
    (hop,) = hops_of("example.net", config).hops
    assert (hop.tls_policy, hop.tls_ca_file) == ("secure", "/etc/ca.pem")


def test_secure_mx_keeps_only_mx_hosts_inside_the_domain():
    """TLS level secure on MX routing: an MX host outside the destination domain could
    come from a forged DNS answer, so it is not used (the certificate is checked
    against the MX host name)."""
    r = hops_of("example.net", cfg(tls="secure"))
    assert {h.host for h in r.hops} == {"mx1.example.net", "mx2.example.net"}
    assert {h.host for h in hops_of("half.example", cfg(tls="verify")).hops} == {
        "mx2.example.net"}
    err = route_error("half.example", cfg(tls="secure"))  # gone.half.example has no address
    assert err.temporary
    assert hops_of("alias-mx.example", cfg(tls="secure")).hops[0].host == "www.alias-mx.example"
    err = route_error("outsourced.example", cfg(tls="secure"))
    assert err.smtp_reply.status == REPLY_NO_SECURE_MX.status and err.temporary


def test_relayhost_by_ip_without_port_uses_smtp_port():
    r = hops_of("example.net", cfg(relayhost="[192.0.2.200]", smtp_port=2525))
    assert (r.hops[0].ip, r.hops[0].port, r.hops[0].auth) == ("192.0.2.200", 2525, None)


def test_unresolvable_relayhost_defers():
    err = route_error("example.net", cfg(relayhost="nothere.mailyard.test"))
    assert err.temporary and err.smtp_reply.status == REPLY_NEXTHOP_UNRESOLVED.status


def test_transport_overrides_relayhost_and_mx():
    config = cfg(relayhost="relay.mailyard.test",
                 transports=(TransportRoute(domain="example.net", nexthop="192.0.2.60:2526",
                                            tls="none", mode="end-to-end"),))
    r = hops_of("example.net", config)
    assert r.via == "transport" and r.end_to_end
    assert r.hops == (NextHop("192.0.2.60", "192.0.2.60", 2526, "none"),)
    assert Router(config, StaticResolver(ZONES)).end_to_end("Example.NET")


def test_transport_without_nexthop_routes_by_mx_with_its_tls():
    config = cfg(relayhost="relay.mailyard.test",
                 transports=(TransportRoute(domain=".example.net", tls="require"),))
    assert hops_of("example.net", config).via == "relayhost"  # ".x" matches subdomains only
    config = cfg(relayhost="relay.mailyard.test",
                 transports=(TransportRoute(domain="example.net", tls="require"),))
    r = hops_of("example.net", config)
    assert r.via == "mx" and {h.tls_policy for h in r.hops} == {"require"}
    assert not r.end_to_end


def test_find_transport_precedence():
    ts = (TransportRoute(domain="*", nexthop="a:1"),
          TransportRoute(domain=".example.org", nexthop="b:1"),
          TransportRoute(domain="sub.example.org", nexthop="c:1"))
    assert find_transport("sub.example.org", ts).nexthop == "c:1"
    assert find_transport("x.sub.example.org", ts).nexthop == "b:1"
    assert find_transport("example.org", ts).nexthop == "a:1"
    assert find_transport("example.org", ts[1:]) is None


def test_router_returns_hop_list():
    router = Router(cfg(), StaticResolver(ZONES), random.Random(3))
    hops = asyncio.run(router.route("example.net"))
    assert isinstance(hops, list) and hops[0].host == "mx1.example.net"
    assert not router.end_to_end("example.net")


# --- over real DNS: DnsPythonResolver against the test server on 127.0.0.1 -------------

@pytest.fixture(scope="module")
def dns_server():
    from tests.support.dnsserver import DnsTestServer

    server = DnsTestServer(ZONES).start()
    yield server
    server.stop()


def routed_over_dns(dns_server, domain: str):
    from mailyard.dns import make_resolver

    config = cfg(dns_servers=(dns_server.server_spec,), dns_timeout=0.5)
    return asyncio.run(Router(config, make_resolver(config.delivery), random.Random(1))
                       .plan(domain))


@pytest.mark.timeout(30)
def test_over_dns_mx_and_implicit_mx(dns_server):
    dns_server.heal()
    assert [h.ip for h in routed_over_dns(dns_server, "example.net").hops] == [
        "2001:db8::1", "192.0.2.1", "192.0.2.2"]
    assert routed_over_dns(dns_server, "implicit.example").via == "implicit-mx"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("domain,fault,temporary,status", [
    ("nullmx.example", None, False, "5.1.10"),  # RFC 7505 4.1
    ("nowhere.example", None, False, "5.1.2"),  # NXDOMAIN
    ("example.net", "servfail", True, "4.4.3"),
    ("example.net", "drop", True, "4.4.3"),  # timeout
])
def test_over_dns_failures(dns_server, domain, fault, temporary, status):
    """DNS SERVFAIL and timeouts defer; NXDOMAIN and Null MX bounce."""
    dns_server.heal()
    if fault == "servfail":
        dns_server.servfail(domain)
    elif fault == "drop":
        dns_server.drop(domain)
    with pytest.raises(RouteError) as info:
        routed_over_dns(dns_server, domain)
    assert info.value.temporary is temporary
    assert info.value.smtp_reply.status == status
    dns_server.heal()


def test_duplicate_mx_hosts_and_addresses_are_tried_once():
    zones = {"dup.example": {"MX": ["10 a.dup.example", "20 a.dup.example", "30 b.dup.example"]},
             "a.dup.example": {"A": ["192.0.2.5"]},
             "b.dup.example": {"A": ["192.0.2.5", "192.0.2.6"]}}
    r = hops_of("dup.example", resolver=StaticResolver(zones))
    assert [(h.host, h.ip, h.mx_preference) for h in r.hops] == [
        ("a.dup.example", "192.0.2.5", 10), ("b.dup.example", "192.0.2.6", 30)]


def test_router_remembers_routes_that_need_no_dns():
    """A transport to an IP address is worked out once per domain; MX routes are not
    kept (the resolver's cache honours the TTLs)."""
    config = cfg(transports=(TransportRoute(domain="relay.example", nexthop="192.0.2.9:2525"),))
    router = Router(config, StaticResolver(ZONES), random.Random(3))
    first = asyncio.run(router.plan("relay.example"))
    assert asyncio.run(router.plan("relay.example")) is first
    assert [(h.ip, h.port) for h in first.hops] == [("192.0.2.9", 2525)]
    mx = asyncio.run(router.plan("example.net"))
    assert asyncio.run(router.plan("example.net")) is not mx
