"""Interop: what we sign verifies with dkimpy and with OpenDKIM (``opendkim-testmsg``,
Debian opendkim-tools), and what they sign verifies with ours.

OpenDKIM looks keys up in the DNS through the system resolver, so its checks run in a
fresh network and mount namespace (``unshare``, root): the test DNS server
(``tests/support/dnsserver.py``) listens on 127.0.0.1:53 inside it and a private
resolv.conf is bind-mounted over /etc/resolv.conf for that namespace only.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailyard.dkim.canon import Canon
from mailyard.dkim.keys import dns_record
from mailyard.dkim.result import DkimStatus
from mailyard.dkim.sign import Signer, sign_message
from mailyard.dkim.verify import verify_message
from mailyard.dns.static import StaticResolver

dkim = pytest.importorskip("dkim")

REPO = Path(__file__).resolve().parents[3]
NOW = 1_790_000_000.0
MESSAGE = (b"From: Ada Lovelace <ada@example.com>\r\nTo: bob@example.net,\r\n"
           b"  carol@example.net\r\nSubject: Results  of the\tanalysis\r\n"
           b"Date: Tue, 1 Dec 2026 10:00:00 +0000\r\nMessage-ID: <m1@example.com>\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
           b"Hi  Bob,\r\n\r\nthe numbers:\t 1 2  3 \r\n.\r\n..dots\r\n\r\n\r\n")
CANONS = [(h, b) for h in Canon for b in Canon]
Key = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def dnsfunc(records: dict[str, str]):  # type: ignore[no-untyped-def]
    def lookup(name: bytes, timeout: int = 5) -> bytes:
        return records.get(name.decode().rstrip("."), "").encode()
    return lookup


@pytest.mark.parametrize(("hc", "bc"), CANONS)
def test_dkimpy_verifies_ours(rsa_key: rsa.RSAPrivateKey, ed_key: ed25519.Ed25519PrivateKey,
                              hc: Canon, bc: Canon) -> None:
    signers = [Signer("example.com", "r", rsa_key, header_canon=hc, body_canon=bc),
               Signer("example.com", "e", ed_key, header_canon=hc, body_canon=bc)]
    message = sign_message(MESSAGE, signers, NOW) + MESSAGE
    records = {"r._domainkey.example.com": dns_record(rsa_key),
               "e._domainkey.example.com": dns_record(ed_key)}
    checker = dkim.DKIM(message)
    assert checker.verify(idx=0, dnsfunc=dnsfunc(records))
    assert checker.verify(idx=1, dnsfunc=dnsfunc(records))
    tampered = message.replace(b"numbers", b"Numbers")
    with pytest.raises(dkim.ValidationError, match="body hash mismatch"):
        dkim.DKIM(tampered).verify(idx=0, dnsfunc=dnsfunc(records))


@pytest.mark.parametrize(("hc", "bc"), CANONS)
@pytest.mark.parametrize("length", [False, True])
def test_ours_verifies_dkimpy(rsa_key: rsa.RSAPrivateKey, ed_key: ed25519.Ed25519PrivateKey,
                              hc: Canon, bc: Canon, length: bool) -> None:
    rsa_pem = rsa_key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption())
    seed = base64.b64encode(ed_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
        serialization.NoEncryption()))
    canon = (hc.encode(), bc.encode())
    message = MESSAGE
    message = dkim.sign(message, b"r", b"example.com", rsa_pem, canonicalize=canon,
                        length=length) + message
    message = dkim.sign(message, b"e", b"example.com", seed, canonicalize=canon,
                        signature_algorithm=b"ed25519-sha256", length=length) + message
    resolver = StaticResolver({"r._domainkey.example.com": {"TXT": [dns_record(rsa_key)]},
                               "e._domainkey.example.com": {"TXT": [dns_record(ed_key)]}})
    results = asyncio.run(verify_message(message, resolver))
    assert [(r.status, r.selector) for r in results] == [
        (DkimStatus.PASS, "e"), (DkimStatus.PASS, "r")], results


# --- OpenDKIM ---------------------------------------------------------------------------
def opendkim_usable() -> str:
    if shutil.which("opendkim-testmsg") is None:
        return "opendkim-testmsg not installed (Debian opendkim-tools)"
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs root, unshare and ip for a private DNS namespace"
    return ""


def opendkim_verify(tmp_path: Path, records: dict[str, str],
                    messages: list[bytes]) -> list[tuple[int, str]]:
    """(exit status, stderr) of ``opendkim-testmsg`` verifying each message, with the
    ``records`` served as TXT on 127.0.0.1:53 in a private namespace."""
    (tmp_path / "zone.json").write_text(json.dumps(
        {name: {"TXT": [text]} for name, text in records.items()}))
    (tmp_path / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:2\n")
    for i, message in enumerate(messages):
        (tmp_path / f"m{i}.eml").write_bytes(message)
    script = f"""
set -e
ip link set lo up
mount --bind {tmp_path}/resolv.conf /etc/resolv.conf
{sys.executable} -m tests.support.dnsserver --zone {tmp_path}/zone.json --port 53 \
    > {tmp_path}/dns.log 2>&1 &
dns=$!
for i in $(seq 100); do grep -q serving {tmp_path}/dns.log && break; sleep 0.05; done
set +e
for i in $(seq 0 {len(messages) - 1}); do
    opendkim-testmsg < {tmp_path}/m$i.eml 2> {tmp_path}/err$i
    echo $? > {tmp_path}/rc$i
done
kill $dns || true
"""
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'src'}:{REPO}")
    subprocess.run(["unshare", "--mount", "--net", "sh", "-c", script], cwd=REPO, env=env,
                   check=True, timeout=60)
    return [(int((tmp_path / f"rc{i}").read_text()), (tmp_path / f"err{i}").read_text())
            for i in range(len(messages))]


@pytest.mark.skipif(bool(opendkim_usable()), reason=opendkim_usable() or "usable")
def test_opendkim_verifies_ours(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    records = {"r._domainkey.example.com": dns_record(rsa_key)}
    good = []
    for hc, bc in CANONS:
        signer = Signer("example.com", "r", rsa_key, header_canon=hc, body_canon=bc)
        good.append(sign_message(MESSAGE, [signer], NOW) + MESSAGE)
    tampered = good[-1].replace(b"numbers", b"Numbers")
    outcomes = opendkim_verify(tmp_path, records, [*good, tampered])
    assert outcomes[:-1] == [(0, "")] * len(good), outcomes
    assert outcomes[-1][0] != 0 and "Bad signature" in outcomes[-1][1]


@pytest.mark.skipif(bool(opendkim_usable()), reason=opendkim_usable() or "usable")
def test_opendkim_rsa_sha1_signature_is_refused(tmp_path: Path,
                                                rsa_key: rsa.RSAPrivateKey) -> None:
    """opendkim-testmsg signs with rsa-sha1, which RFC 8301 3.1 says verifiers must not
    accept: the signature parses, and we report it as a fail naming the RFC."""
    keyfile = tmp_path / "r.pem"
    keyfile.write_bytes(rsa_key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.TraditionalOpenSSL,
                                              serialization.NoEncryption()))
    signed = subprocess.run(
        ["opendkim-testmsg", "-C", "-d", "example.com", "-s", "r", "-k", str(keyfile)],
        input=MESSAGE, capture_output=True, check=True, timeout=30).stdout
    assert signed.startswith(b"DKIM-Signature:")
    resolver = StaticResolver({"r._domainkey.example.com": {"TXT": [dns_record(rsa_key)]}})
    results = asyncio.run(verify_message(signed, resolver))
    assert [(r.status, r.algorithm) for r in results] == [(DkimStatus.FAIL, "rsa-sha1")]
    assert "RFC 8301" in results[0].reason


def test_own_signatures_problem_names_what_differs(rsa_key: rsa.RSAPrivateKey,
                                                   ed_key: ed25519.Ed25519PrivateKey) -> None:
    """RFC 6376 3.5 / 3.7: the checks ingest makes on a signature made with our keys
    elsewhere (a campaign render process) before storing it unchanged."""
    from mailyard.dkim.canon import BodyHasher
    from mailyard.dkim.sign import own_signatures_problem

    signers = [Signer("example.com", "r", rsa_key), Signer("example.com", "e", ed_key)]
    end = MESSAGE.find(b"\r\n\r\n")
    header, body = MESSAGE[:end + 2], MESSAGE[end + 4:]
    hasher = BodyHasher(Canon.RELAXED)
    hasher.update(body)
    digest = hasher.digest()
    fields = sign_message(MESSAGE, signers, NOW)
    first = fields[:fields.index(b"DKIM-Signature", 1)]
    assert own_signatures_problem(fields, header, digest, signers) == ""
    assert "2 signature fields for 1" in own_signatures_problem(fields, header, digest,
                                                                signers[:1])
    assert "1 signature fields for 2" in own_signatures_problem(first, header, digest, signers)
    assert own_signatures_problem(fields, header, b"x" * 32, signers) == \
        "body hash does not match the stored body"
    assert own_signatures_problem(fields, header.replace(b"Results", b"Result"), digest,
                                  signers) == "signature does not verify over the stored header"
    # Without the public-key check, a changed header goes unseen; the rest is checked.
    assert own_signatures_problem(fields, header.replace(b"Results", b"Result"), digest,
                                  signers, verify=False) == ""
    assert own_signatures_problem(fields, header, b"x" * 32, signers, verify=False) == \
        "body hash does not match the stored body"
    other = [Signer("example.com", "r", rsa_key), Signer("example.com", "x", ed_key)]
    assert own_signatures_problem(fields, header, digest, other, verify=False) == \
        "not the signature of d=example.com s=x a=ed25519-sha256"
    swapped = [signers[1], signers[0]]
    assert "not the signature of d=example.com s=e" in own_signatures_problem(
        fields, header, digest, swapped)
    simple = [Signer("example.com", "r", rsa_key, body_canon=Canon.SIMPLE)]
    assert own_signatures_problem(sign_message(MESSAGE, simple, NOW), header, digest,
                                  simple) == "body not signed relaxed"
    assert own_signatures_problem(b"X-Other: 1\r\n", header, digest, signers[:1]).startswith(
        "not the signature of")


def test_one_signer_over_several_header_layouts(ed_key: ed25519.Ed25519PrivateKey) -> None:
    """A signer remembers each header layout's h= list and the fields it hashes (RFC
    6376 5.4.2: the last unused instance of each name); messages of several layouts,
    signed in turn by the same signer, each verify with dkimpy."""
    signer = Signer("example.com", "e", ed_key)
    records = {"e._domainkey.example.com": dns_record(ed_key)}
    second_to = MESSAGE.replace(b"Subject:", b"To: dave@example.net\r\nCc: eve@example.net\r\n"
                                b"Subject:", 1)
    other_values = MESSAGE.replace(b"Results", b"Totals").replace(b"m1@", b"m2@")
    for message in (MESSAGE, second_to, other_values, second_to.replace(b"dave", b"fred")):
        signature = sign_message(message, [signer], NOW)
        assert dkim.DKIM(signature + message).verify(dnsfunc=dnsfunc(records))
        tampered = message.replace(b"carol@", b"mallory@")  # the first To field
        assert not dkim.DKIM(signature + tampered).verify(dnsfunc=dnsfunc(records))
    assert b"h=From:From:Subject:Date:To:To:Cc:Message-ID:MIME-Version:" in b"".join(
        sign_message(second_to, [signer], NOW).split(b"\r\n\t"))
