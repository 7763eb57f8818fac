"""DMARC record syntax: RFC 7489 6.3 (tags), 6.4 (grammar), 6.6.3 (unusable records),
RFC 9091 (np), with the records of RFC 7489 appendix B.2."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailyard.dmarc.record import (
    MAX_REPORT_URIS,
    Alignment,
    DmarcRecord,
    Policy,
    RecordError,
    ReportUri,
    is_dmarc_record,
    parse_record,
)


def parsed(text: str) -> DmarcRecord:
    record = parse_record(text)
    assert isinstance(record, DmarcRecord), record
    return record


def test_appendix_b_2_1_entire_domain_monitoring_only():
    record = parsed("v=DMARC1; p=none; rua=mailto:dmarc-feedback@example.com")
    assert record.policy is Policy.NONE
    assert record.rua == (ReportUri("mailto:dmarc-feedback@example.com"),)
    # 6.3 defaults
    assert (record.pct, record.adkim, record.aspf) == (100, Alignment.RELAXED, Alignment.RELAXED)
    assert (record.fo, record.rf, record.ri) == (("0",), ("afrf",), 86400)
    assert record.subdomain_policy is None and record.ignored == ()


def test_appendix_b_2_2_per_message_failure_reports():
    record = parsed("v=DMARC1; p=none; rua=mailto:dmarc-feedback@example.com; "
                    "ruf=mailto:auth-reports@thirdparty.example.net")
    assert record.ruf == (ReportUri("mailto:auth-reports@thirdparty.example.net"),)


def test_appendix_b_2_4_quarantine_with_sampling_and_size_limit():
    record = parsed("v=DMARC1; p=quarantine; rua=mailto:dmarc-feedback@example.com,"
                    "mailto:tld-test@thirdparty.example.net!10m; pct=25")
    assert record.policy is Policy.QUARANTINE
    assert record.pct == 25
    assert record.rua[1] == ReportUri("mailto:tld-test@thirdparty.example.net", 10 * 1024 * 1024)


def test_6_3_all_tags_case_insensitive_and_whitespace():
    record = parsed(" V = dmarc1 ;P=Reject; SP=quarantine; np=reject ; adkim=s; aspf=S; "
                    "pct=0; fo=0:1:d:s; rf=afrf; ri=3600;")
    assert record.policy is Policy.REJECT
    assert record.subdomain_policy is Policy.QUARANTINE
    assert record.nonexistent_policy is Policy.REJECT  # RFC 9091 3
    assert (record.adkim, record.aspf, record.pct) == (Alignment.STRICT, Alignment.STRICT, 0)
    assert record.fo == ("0", "1", "d", "s") and record.ri == 3600


def test_6_3_unknown_tags_are_ignored():
    record = parsed("v=DMARC1; p=reject; future=1; x=y=z")
    assert record.policy is Policy.REJECT and record.ignored == ()


@pytest.mark.parametrize("tag, field, default", [
    ("pct=101", "pct", 100), ("pct=-1", "pct", 100), ("pct=ten", "pct", 100),
    ("adkim=x", "adkim", Alignment.RELAXED), ("aspf=relaxed", "aspf", Alignment.RELAXED),
    ("fo=2", "fo", ("0",)), ("ri=99999999999", "ri", 86400),
    ("np=drop", "nonexistent_policy", None),
    ("ruf=not a uri", "ruf", ()),
])
def test_6_3_syntax_errors_fall_back_to_defaults(tag, field, default):
    record = parsed(f"v=DMARC1; p=reject; {tag}")
    assert getattr(record, field) == default
    assert record.ignored == (tag.partition("=")[0],)


def test_6_6_3_version_must_come_first():
    assert not is_dmarc_record("p=reject; v=DMARC1")
    assert not is_dmarc_record("v=DMARC10; p=reject")
    assert not is_dmarc_record("v=spf1 -all")
    assert isinstance(parse_record("p=reject; v=DMARC1"), RecordError)


@pytest.mark.parametrize("text", ["v=DMARC1", "v=DMARC1; p=block", "v=DMARC1; p=reject; sp=x"])
def test_6_6_3_invalid_policy_without_rua_is_unusable(text):
    assert isinstance(parse_record(text), RecordError)


@pytest.mark.parametrize("text", ["v=DMARC1; rua=mailto:r@example.com",
                                  "v=DMARC1; p=block; rua=mailto:r@example.com",
                                  "v=DMARC1; p=reject; sp=x; rua=mailto:r@example.com"])
def test_6_6_3_invalid_policy_with_rua_reads_as_p_none(text):
    record = parsed(text)
    assert record.policy is Policy.NONE and record.subdomain_policy is None
    assert record.policy_defaulted


def test_first_of_duplicate_tags_wins():
    assert parsed("v=DMARC1; p=none; p=reject").policy is Policy.NONE


def test_6_2_report_uri_size_units():
    record = parsed("v=DMARC1; p=none; rua=mailto:a@example.com!50k,mailto:b@example.com!1g,"
                    "mailto:c@example.com!7")
    assert [u.max_size for u in record.rua] == [50 * 1024, 1 << 30, 7]


def test_hostile_huge_record_is_bounded():
    uris = ",".join(f"mailto:r{i}@example.com" for i in range(5000))
    junk = ";".join(f"t{i}=v" for i in range(20000))
    record = parsed(f"v=DMARC1; p=reject; rua={uris}; {junk}; pct=" + "9" * 100000)
    assert len(record.rua) == MAX_REPORT_URIS
    assert record.pct == 100 and "pct" in record.ignored


@pytest.mark.parametrize("text", ["", ";", "v=", "v=DMARC1;;;;", "v=DMARC1; p", "v=DMARC1; =;=",
                                  "v=DMARC1; p=\x00", "v=DMARC1; p=réject"])
def test_malformed_records_give_a_value(text):
    assert isinstance(parse_record(text), (DmarcRecord, RecordError))


@settings(max_examples=500)
@given(st.text(max_size=300).map(lambda t: "v=DMARC1;" + t) | st.text(max_size=300))
def test_any_text_gives_a_value(text):
    assert isinstance(parse_record(text), (DmarcRecord, RecordError))
