"""DMARC evaluation (RFC 7489 6.6) over an in-memory resolver: discovery, alignment
(3.1, appendix B.1), sampling (6.6.4), np (RFC 9091), errors."""

from __future__ import annotations

import asyncio

import pytest

from mailyard.dmarc import (
    Alignment,
    Disposition,
    DkimOutcome,
    DmarcStatus,
    Policy,
    SpfOutcome,
    aligned,
    evaluate_domain,
    evaluate_message,
    load_public_suffixes,
)
from mailyard.dns import StaticResolver

PSL = load_public_suffixes()


def never_sampled() -> int:
    raise AssertionError("pct=100 and pct=0 need no draw")


def run(coro):
    return asyncio.run(coro)


def zone(entries: dict[str, dict]) -> StaticResolver:
    return StaticResolver(entries)


def evaluate(res, author, spf=None, dkim=(), sample=never_sampled):
    return run(evaluate_domain(author, spf, list(dkim), res, PSL, sample))


EXAMPLE = zone({
    "_dmarc.example.com": {"TXT": ["v=DMARC1; p=reject; rua=mailto:d@example.com"]},
    "example.com": {"MX": ["10 mx.example.com"]},
    "news.example.com": {"A": ["192.0.2.1"]},
})


# RFC 7489 appendix B.1.1: SPF identifier alignment
@pytest.mark.parametrize("mail_from, author, relaxed, strict", [
    ("example.com", "example.com", True, True),
    ("child.example.com", "example.com", True, False),
    ("example.com", "child.example.com", True, False),
    ("example.net", "example.com", False, False),
])
def test_appendix_b_1_1_spf_alignment(mail_from, author, relaxed, strict):
    assert aligned(mail_from, author, Alignment.RELAXED, PSL) is relaxed
    assert aligned(mail_from, author, Alignment.STRICT, PSL) is strict


# RFC 7489 appendix B.1.2: DKIM identifier alignment
@pytest.mark.parametrize("d, author, relaxed, strict", [
    ("example.com", "example.com", True, True),
    ("example.com", "news.example.com", True, False),
    ("example.net", "news.example.com", False, False),
])
def test_appendix_b_1_2_dkim_alignment(d, author, relaxed, strict):
    assert aligned(d, author, Alignment.RELAXED, PSL) is relaxed
    assert aligned(d, author, Alignment.STRICT, PSL) is strict


@pytest.mark.parametrize("a, b, relaxed", [
    ("a.example.co.uk", "b.example.co.uk", True),
    ("example.co.uk", "other.co.uk", False),  # siblings under a public suffix
    ("co.uk", "example.co.uk", False),
    ("EXAMPLE.com.", "example.COM", True),
    ("", "example.com", False),
])
def test_3_2_relaxed_alignment_uses_the_public_suffix_list(a, b, relaxed):
    assert aligned(a, b, Alignment.RELAXED, PSL) is relaxed


def test_6_6_2_aligned_spf_pass_passes():
    result = evaluate(EXAMPLE, "example.com", SpfOutcome("pass", "bounce.example.com"))
    assert result.status is DmarcStatus.PASS and result.spf_aligned and not result.dkim_aligned
    assert result.disposition is Disposition.NONE
    assert result.policy is Policy.REJECT and result.policy_domain == "example.com"


def test_6_6_2_aligned_dkim_pass_among_failures_passes():
    sigs = [DkimOutcome("fail", "example.com", "s1"), DkimOutcome("pass", "example.net", "s2"),
            DkimOutcome("pass", "mail.example.com", "s3")]
    result = evaluate(EXAMPLE, "example.com", SpfOutcome("fail", "example.com"), sigs)
    assert result.status is DmarcStatus.PASS and result.dkim_aligned and not result.spf_aligned


@pytest.mark.parametrize("spf", ["softfail", "neutral", "none", "temperror", "permerror"])
def test_only_spf_pass_counts(spf):
    result = evaluate(EXAMPLE, "example.com", SpfOutcome(spf, "example.com"))
    assert result.status is DmarcStatus.FAIL and result.disposition is Disposition.REJECT


def test_unaligned_passes_fail_with_the_policy():
    result = evaluate(EXAMPLE, "example.com", SpfOutcome("pass", "example.net"),
                      [DkimOutcome("pass", "example.org", "s")])
    assert result.status is DmarcStatus.FAIL
    assert result.disposition is Disposition.REJECT and not result.sampled_out


def test_strict_alignment_refuses_subdomain_identifiers():
    res = zone({"_dmarc.example.com": {"TXT": "v=DMARC1; p=quarantine; adkim=s; aspf=s"}})
    result = evaluate(res, "example.com", SpfOutcome("pass", "mail.example.com"),
                      [DkimOutcome("pass", "mail.example.com", "s")])
    assert result.status is DmarcStatus.FAIL and result.disposition is Disposition.QUARANTINE


def test_6_6_3_subdomain_falls_back_to_organizational_domain_with_sp():
    res = zone({"_dmarc.example.com": {"TXT": "v=DMARC1; p=reject; sp=quarantine"},
                "news.example.com": {"A": ["192.0.2.1"]}})
    result = evaluate(res, "news.example.com")
    assert result.policy_domain == "example.com"
    assert result.policy is Policy.QUARANTINE and result.disposition is Disposition.QUARANTINE
    assert res.queries[:2] == [("_dmarc.news.example.com", "TXT"), ("_dmarc.example.com", "TXT")]


def test_6_6_3_subdomain_without_sp_gets_p():
    result = evaluate(EXAMPLE, "news.example.com")
    assert result.policy is Policy.REJECT


def test_6_3_record_at_the_subdomain_itself_applies_its_p_not_sp():
    res = zone({"_dmarc.news.example.com": {"TXT": "v=DMARC1; p=none; sp=reject"},
                "_dmarc.example.com": {"TXT": "v=DMARC1; p=reject"}})
    result = evaluate(res, "news.example.com")
    assert result.policy is Policy.NONE and result.disposition is Disposition.NONE
    assert result.status is DmarcStatus.FAIL  # fails, but the owner asks for nothing


def test_rfc9091_np_applies_to_a_nonexistent_subdomain():
    res = zone({"_dmarc.example.com": {"TXT": "v=DMARC1; p=none; sp=quarantine; np=reject"},
                "real.example.com": {"A": ["192.0.2.1"]},
                "nodata.example.com": {"TXT": ["x"]}})
    assert evaluate(res, "ghost.example.com").disposition is Disposition.REJECT  # NXDOMAIN
    assert evaluate(res, "nodata.example.com").disposition is Disposition.REJECT  # NODATA x3
    assert evaluate(res, "real.example.com").disposition is Disposition.QUARANTINE


def test_rfc9091_without_np_a_nonexistent_subdomain_gets_sp():
    res = zone({"_dmarc.example.com": {"TXT": "v=DMARC1; p=none; sp=quarantine"}})
    assert evaluate(res, "ghost.example.com").disposition is Disposition.QUARANTINE
    assert ("ghost.example.com", "A") not in res.queries  # no existence check needed


@pytest.mark.parametrize("draw, disposition, sampled_out", [
    (0, Disposition.REJECT, False), (24, Disposition.REJECT, False),
    (25, Disposition.QUARANTINE, True), (99, Disposition.QUARANTINE, True),
])
def test_6_6_4_pct_sampling_applies_the_next_lower_policy(draw, disposition, sampled_out):
    res = zone({"_dmarc.example.com": {"TXT": "v=DMARC1; p=reject; pct=25"}})
    result = evaluate(res, "example.com", sample=lambda: draw)
    assert result.status is DmarcStatus.FAIL
    assert (result.disposition, result.sampled_out) == (disposition, sampled_out)


def test_6_6_4_quarantine_sampled_out_becomes_none():
    res = zone({"_dmarc.example.com": {"TXT": "v=DMARC1; p=quarantine; pct=50"}})
    assert evaluate(res, "example.com", sample=lambda: 50).disposition is Disposition.NONE


def test_6_6_4_pct_zero_never_applies():
    res = zone({"_dmarc.example.com": {"TXT": "v=DMARC1; p=reject; pct=0"}})
    assert evaluate(res, "example.com").disposition is Disposition.QUARANTINE


def test_no_record_anywhere_is_none():
    res = zone({"example.org": {"A": ["192.0.2.1"]}})
    result = evaluate(res, "mail.example.org")
    assert result.status is DmarcStatus.NONE and result.disposition is Disposition.NONE


def test_6_6_3_multiple_records_mean_no_dmarc_processing():
    res = zone({"_dmarc.example.com": {"TXT": ["v=DMARC1; p=reject", "v=DMARC1; p=none"]}})
    result = evaluate(res, "example.com")
    assert result.status is DmarcStatus.NONE and "more than one" in result.reason


def test_6_6_3_non_dmarc_txt_records_are_discarded():
    res = zone({"_dmarc.example.com": {"TXT": ["v=spf1 -all", "hello", "v=DMARC1; p=reject"]}})
    assert evaluate(res, "example.com").disposition is Disposition.REJECT


def test_6_6_3_unusable_record_at_from_domain_stops_discovery():
    res = zone({"_dmarc.news.example.com": {"TXT": "v=DMARC1; p=bogus"},
                "_dmarc.example.com": {"TXT": "v=DMARC1; p=reject"}})
    result = evaluate(res, "news.example.com")
    assert result.status is DmarcStatus.NONE
    assert ("_dmarc.example.com", "TXT") not in res.queries


def test_dns_temporary_error_is_temperror():
    res = zone({"_dmarc.example.com": {"TXT": "v=DMARC1; p=reject"}})
    res.fail("_dmarc.example.com", "timeout")
    result = evaluate(res, "example.com")
    assert result.status is DmarcStatus.TEMPERROR and result.disposition is Disposition.NONE


def test_dns_failure_in_the_existence_check_is_temperror():
    res = zone({"_dmarc.example.com": {"TXT": "v=DMARC1; p=none; np=reject"}})
    res.fail("ghost.example.com")
    assert evaluate(res, "ghost.example.com").status is DmarcStatus.TEMPERROR


def test_hostile_huge_txt_record_gives_a_result():
    res = zone({"_dmarc.example.com": {"TXT": "v=DMARC1; p=reject; " + "x=" * 60000}})
    assert evaluate(res, "example.com").disposition is Disposition.REJECT


def test_cname_loop_at_the_policy_name_is_temperror():
    res = zone({"_dmarc.example.com": {"CNAME": "_dmarc.example.net"},
                "_dmarc.example.net": {"CNAME": "_dmarc.example.com"}})
    assert evaluate(res, "example.com").status is DmarcStatus.TEMPERROR


# RFC 7489 6.6.1: the From field
def message(from_values, res=EXAMPLE, spf=None, dkim=(), sample=never_sampled):
    return run(evaluate_message(from_values, spf, list(dkim), res, PSL, sample))


def test_6_6_1_single_from_address():
    result = message(["Jane <jane@Example.COM>"], spf=SpfOutcome("pass", "example.com"))
    assert result.status is DmarcStatus.PASS and result.author_domain == "example.com"


@pytest.mark.parametrize("values, reason", [
    ([], "no From field"),
    (["a@example.com", "b@example.com"], "more than one From field"),
    (["undisclosed-recipients:;"], "From has no address with a valid domain"),
    (["Jane <jane>"], "From has no address with a valid domain"),
    (["jane@[192.0.2.1]"], "From has no address with a valid domain"),
    ([", ".join(f"u@d{i}.example" for i in range(1000))], "From names more than 8 domains"),
])
def test_6_6_1_messages_outside_dmarc_are_permerror(values, reason):
    result = message(values)
    assert result.status is DmarcStatus.PERMERROR and result.reason == reason


def test_6_6_1_multi_valued_from_applies_the_strictest_failing_policy():
    res = zone({"_dmarc.example.com": {"TXT": "v=DMARC1; p=quarantine"},
                "_dmarc.example.org": {"TXT": "v=DMARC1; p=reject"},
                "_dmarc.example.net": {"TXT": "v=DMARC1; p=none"}})
    result = message(["a@example.com, b@example.org,\r\n c@example.net"], res,
                     dkim=[DkimOutcome("pass", "example.com", "s")])
    assert result.status is DmarcStatus.FAIL
    assert result.author_domain == "example.org" and result.disposition is Disposition.REJECT


def test_6_6_1_u_label_from_domain_is_looked_up_as_a_label():
    res = zone({"_dmarc.xn--bcher-kva.example": {"TXT": "v=DMARC1; p=reject"}})
    result = message(["k@bücher.example"], res)
    assert result.author_domain == "xn--bcher-kva.example"
    assert result.disposition is Disposition.REJECT
