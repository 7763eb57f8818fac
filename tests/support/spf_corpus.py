"""A generated corpus of SPF policies for interoperability tests and benchmarks.

:func:`build_corpus` makes, from a seed, a DNS zone (the dict shape
:class:`tests.support.dnsserver.DnsTestServer` and :class:`mailyard.dns.StaticResolver`
take) in which every ``dN.example`` publishes a random SPF record built from every
mechanism and modifier (with CIDR lengths, macros, includes, redirects, exp, unknown
modifiers, the occasional syntax error, void names and include loops), plus the
checks to run against it: client address, MAIL FROM and HELO.  A few names answer
SERVFAIL (``Corpus.servfail``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

Zones = dict[str, dict[str, list[Any]]]


@dataclass
class Check:
    ip: str
    mail_from: str
    helo: str


@dataclass
class Corpus:
    zones: Zones
    checks: list[Check]
    servfail: list[str] = field(default_factory=list)


V4_NET = "192.0.2."
V6_NET = "2001:db8::"
CLIENTS_V4 = [f"{V4_NET}{n}" for n in (1, 2, 9, 17, 33, 65, 130, 200)] + ["198.51.100.7"]
CLIENTS_V6 = [f"{V6_NET}{n:x}" for n in (1, 2, 0x11, 0x41)] + ["2001:db8:1::5"]
CLIENTS = CLIENTS_V4 + CLIENTS_V6 + ["::ffff:192.0.2.9"]


def _hosts(zones: Zones, count: int) -> list[str]:
    names = []
    for i in range(count):
        name = f"h{i}.hosts.example"
        names.append(name)
        zones[name] = {"A": [f"{V4_NET}{1 + i * 8}"]}
        if i % 2 == 0:
            zones[name]["AAAA"] = [f"{V6_NET}{1 + i * 8:x}"]
    # reverse names for some clients, one of them not validating
    for i, ip in enumerate((f"{V4_NET}1", f"{V4_NET}9", f"{V4_NET}17", f"{V4_NET}65")):
        rev = ".".join(reversed(ip.split("."))) + ".in-addr.arpa"
        zones[rev] = {"PTR": [names[i * 2 % len(names)]]}
    zones["1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"] = {
        "PTR": [names[0]]}
    return names


def _term(rng: random.Random, index: int, domains: int, hosts: list[str]) -> str:
    qualifier = rng.choice(["", "", "+", "-", "~", "?"])
    host = rng.choice(hosts + ["nx.hosts.example"])
    other = f"d{rng.randrange(domains)}.example"
    # weights: mostly ordinary terms; errors and void names now and then
    choice = rng.choices(range(11), weights=[12, 8, 12, 10, 6, 8, 8, 6, 2, 1, 10])[0]
    if choice == 0:
        mech = f"ip4:{V4_NET}{rng.randrange(256)}/{rng.choice([24, 25, 27, 28, 29, 30, 32])}"
    elif choice == 1:
        mech = f"ip6:{V6_NET}{rng.randrange(256):x}/{rng.choice([64, 120, 124, 126, 128])}"
    elif choice == 2:
        mech = rng.choice([f"a:{host}", "a", f"a:{host}/29", f"a:{host}//124",
                           f"a:{host}/28//120", "a/24"])
    elif choice == 3:
        mech = rng.choice(["mx", f"mx:{other}", "mx/29", f"mx:{other}/30//120"])
    elif choice == 4:
        mech = rng.choice(["ptr", "ptr:hosts.example", f"ptr:{host}", "ptr:other.example"])
    elif choice == 5:
        mech = rng.choice(["exists:%{ir}.bl.example", "exists:%{l}.users.example",
                           "exists:%{l1r+}.%{d}", "exists:%{ir}.%{v}.%{d2}",
                           "exists:%{L}.users.example", "exists:%{o}.senders.example"])
    elif choice in (6, 7):
        target = f"d{rng.randrange(index + 1, domains)}.example" if index + 1 < domains \
            else other
        mech = f"include:{target}" if rng.random() < 0.9 else f"include:{other}"
    elif choice == 8:
        mech = rng.choice(["include:nx.example", f"a:nx{rng.randrange(5)}.example",
                           f"exists:nx{rng.randrange(5)}.example", "mx:nx.example"])
    elif choice == 9:
        mech = rng.choice(["moo", "ip4:192.0.2.300", "a/33", "ip4:192.0.2.1//64",
                           "exists", "ip6:2001:db8::/129", "a:localhost", "%{z}"])
    else:
        return qualifier + rng.choice([f"ip4:{V4_NET}{rng.randrange(256)}",
                                       f"ip6:{V6_NET}{rng.randrange(256):x}"])
    return qualifier + mech


def _record(rng: random.Random, index: int, domains: int, hosts: list[str]) -> str:
    terms = [_term(rng, index, domains, hosts) for _ in range(rng.randrange(1, 5))]
    end = rng.random()
    if end < 0.5:
        terms.append(rng.choice(["-all", "~all", "?all", "+all", "all"]))
    elif end < 0.75 and index + 1 < domains:
        terms.append(f"redirect=d{rng.randrange(index + 1, domains)}.example")
    elif end < 0.8:
        terms.append("redirect=nx.example")
    if rng.random() < 0.3:
        terms.append("exp=exp.%{d}")
    if rng.random() < 0.1:
        terms.append("moo=bar%{d}")
    if rng.random() < 0.03:
        terms.insert(0, f"include:d{index}.example")  # a loop
    return "v=spf1 " + " ".join(terms)


def build_corpus(seed: int = 7208, domains: int = 40) -> Corpus:
    rng = random.Random(seed)
    zones: Zones = {}
    hosts = _hosts(zones, 12)
    for i in range(domains):
        name = f"d{i}.example"
        entry: dict[str, list[Any]] = {"TXT": [_record(rng, i, domains, hosts)]}
        if rng.random() < 0.5:
            entry["MX"] = [f"{10 * (k + 1)} {h}" for k, h in enumerate(rng.sample(hosts, 2))]
        if rng.random() < 0.4:
            entry["A"] = [f"{V4_NET}{rng.randrange(256)}"]
        if rng.random() < 0.03:
            entry["TXT"].append("v=spf1 -all")  # two records: permerror
        if rng.random() < 0.1:
            entry["TXT"].append("google-site-verification=abc")
        zones[name] = entry
        zones[f"exp.{name}"] = {"TXT": ["%{d} refuses %{c} for %{l}"]}
    for user in ("alice", "bob"):
        zones[f"{user}.users.example"] = {"A": ["127.0.0.2"]}
    for ip in CLIENTS_V4[:4]:
        rev = ".".join(reversed(ip.split(".")))
        zones[f"{rev}.bl.example"] = {"A": ["127.0.0.2"]}
    zones["d3.senders.example"] = {"A": ["127.0.0.2"]}
    zones["bad-helo.example"] = {"TXT": ["v=spf1 a:%{h} -all"]}
    checks = []
    for i in range(domains):
        for ip in rng.sample(CLIENTS, 6):
            user = rng.choice(["alice", "bob", "carol", "alice+tag", ""])
            mail_from = f"{user}@d{i}.example" if user else ""
            helo = f"d{i}.example" if not user else rng.choice(hosts)
            checks.append(Check(ip, mail_from, helo))
    zones["nospf.example"] = {"A": [f"{V4_NET}1"], "TXT": ["some other text"]}
    for ip in CLIENTS[::3]:
        checks.append(Check(ip, "alice@nospf.example", "nospf.example"))
        checks.append(Check(ip, "bob@nowhere.example", "h1.hosts.example"))
    servfail = ["h11.hosts.example", "d39.example"]
    return Corpus(zones, checks, servfail)
