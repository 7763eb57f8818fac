"""The Received trace field (mailyard.message.trace), one builder for every producer."""

from __future__ import annotations

import re

import pytest

from mailyard.message.trace import (
    TraceError,
    local_received,
    protocol_name,
    rfc5322_date,
    smtp_received,
)


def test_smtp_received() -> None:
    """RFC 5321 4.4 Time-stamp-line; RFC 3848 / RFC 6531 'with' keywords."""
    assert protocol_name(False, False, False, False) == "SMTP"
    assert protocol_name(True, True, True, False) == "ESMTPSA"
    assert protocol_name(True, False, False, True) == "UTF8SMTP"
    header = smtp_received(helo="client (evil)\t", ip="2001:db8::1", hostname="mx.test",
                           protocol="ESMTPS", qid="Q1", recipients=("u@mx.test",),
                           tls="TLSv1.3 with cipher TLS_AES_128_GCM_SHA256", now=0).decode()
    lines = header.split("\r\n")
    assert lines[0] == "Received: from client??evil?? ([IPv6:2001:db8::1])"
    assert lines[1] == "\t(using TLSv1.3 with cipher TLS_AES_128_GCM_SHA256)"
    assert lines[2] == "\tby mx.test (Mailyard) with ESMTPS id Q1"
    assert lines[3] == "\tfor <u@mx.test>; Thu, 01 Jan 1970 00:00:00 +0000"
    assert lines[4] == ""
    two = smtp_received(helo="c", ip="192.0.2.1", hostname="mx.test", protocol="ESMTP",
                        qid="Q2", recipients=("a@x", "b@x"), now=0).decode()
    assert "for <" not in two and two.endswith("id Q2;\r\n\tThu, 01 Jan 1970 00:00:00 +0000\r\n")
    assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d \+0000", rfc5322_date())


# --- end-of-content header checks, address literals, <postmaster> ---------------


def test_trace_refuses_line_breaks_in_what_it_cannot_reduce() -> None:
    with pytest.raises(TraceError):
        smtp_received(helo="c", ip="192.0.2.1", hostname="mx.test", protocol="ESMTP",
                      qid="Q", recipients=("a@x\r\nBcc: evil@x",), now=0)
    with pytest.raises(TraceError):
        local_received(hostname="mx.test", user="bob\nX-Evil: 1", now=0)
    crlf = smtp_received(helo="c\r\nX-Evil: 1", ip="192.0.2.1", hostname="mx.test",
                         protocol="ESMTP", qid="Q", recipients=(), now=0)
    assert b"X-Evil" not in crlf.split(b"\r\n")[1] and crlf.count(b"\r\n") == 3


def test_local_received_names_the_user() -> None:
    field = local_received(hostname="mx.test", user="alice", now=0)
    assert field.startswith(b"Received: by mx.test (Mailyard, from user alice);\r\n\t")
    assert field.endswith(b"\r\n") and field.count(b"\r\n") == 2
