"""The receiver's action on a DMARC result (RFC 7489 6.7 local policy) under [dmarc]."""

from __future__ import annotations

import pytest

from mailyard.authres import AuthResults, format_value
from mailyard.config import ConfigError, DmarcConfig, parse_config
from mailyard.dmarc import Disposition, DmarcResult, DmarcStatus, Policy
from mailyard.dmarc.action import ActionKind, authres_entry, dmarc_action
from mailyard.proto.smtp.replies import REPLY_DMARC_REJECT


def failed(disposition: Disposition, policy: Policy) -> DmarcResult:
    return DmarcResult(DmarcStatus.FAIL, disposition, "example.com", "example.com", policy)


def test_reject_disposition_refuses_with_550_5_7_1():
    action = dmarc_action(failed(Disposition.REJECT, Policy.REJECT), DmarcConfig())
    assert action.kind is ActionKind.REJECT
    assert action.reply == REPLY_DMARC_REJECT.fill(domain="example.com")
    assert (action.reply.code, action.reply.status) == (550, "5.7.1")


def test_reject_can_be_demoted_to_quarantine():
    action = dmarc_action(failed(Disposition.REJECT, Policy.REJECT), DmarcConfig(reject=False))
    assert action.kind is ActionKind.QUARANTINE
    assert action.field == b"X-Mailyard-Quarantine: dmarc domain=example.com policy=reject\r\n"


def test_quarantine_disposition_marks_the_message():
    action = dmarc_action(failed(Disposition.QUARANTINE, Policy.REJECT), DmarcConfig())
    assert action.kind is ActionKind.QUARANTINE and action.reply is None
    assert action.field.startswith(b"X-Mailyard-Quarantine: dmarc domain=example.com")


@pytest.mark.parametrize("result", [
    DmarcResult(DmarcStatus.PASS, author_domain="example.com"),
    DmarcResult(DmarcStatus.NONE),
    DmarcResult(DmarcStatus.TEMPERROR),
    DmarcResult(DmarcStatus.PERMERROR, reason="more than one From field"),
    failed(Disposition.NONE, Policy.NONE),
])
def test_everything_else_is_accepted(result):
    assert dmarc_action(result, DmarcConfig()).kind is ActionKind.ACCEPT


def test_disabled_accepts_everything():
    result = failed(Disposition.REJECT, Policy.REJECT)
    assert dmarc_action(result, DmarcConfig(enabled=False)).kind is ActionKind.ACCEPT


def test_config_sections_load_and_authserv_id_defaults_to_hostname():
    cfg = parse_config('hostname = "mx.example.org"\n[dmarc]\nreject = false\n'
                       'public_suffix_list = "/usr/share/publicsuffix/public_suffix_list.dat"\n')
    assert cfg.dmarc.reject is False and cfg.dmarc.enabled is True
    assert cfg.auth_results.authserv_id == "mx.example.org"
    cfg = parse_config('hostname = "mx.example.org"\n[auth_results]\nauthserv_id = "example.org"\n')
    assert cfg.auth_results.authserv_id == "example.org"


@pytest.mark.parametrize("text, key", [
    ('[dmarc]\nquarantine = "spam"\n', "dmarc.quarantine"),
    ('[dmarc]\npublic_suffix_list = "relative.dat"\n', "dmarc.public_suffix_list"),
    ('[auth_results]\nauthserv_id = "mx example"\n', "auth_results.authserv_id"),
    ('[auth_results]\nauthserv_id = "mx;example"\n', "auth_results.authserv_id"),
])
def test_config_errors_name_the_key(text, key):
    with pytest.raises(ConfigError) as info:
        parse_config('hostname = "mx.example.org"\n' + text)
    assert info.value.key == key


def test_rfc7489_11_2_authentication_results_entry():
    result = DmarcResult(DmarcStatus.FAIL, Disposition.QUARANTINE, "example.com",
                         "example.com", Policy.REJECT, sampled_out=True)
    value = format_value(AuthResults("mx.example.org", (authres_entry(result),)))
    assert value == (" mx.example.org;\r\n"
                     "\tdmarc=fail (p=reject dis=quarantine) header.from=example.com")
    none = authres_entry(DmarcResult(DmarcStatus.NONE, author_domain="example.net"))
    assert (none.result, none.comment, none.prop("header", "from")) == ("none", "",
                                                                         "example.net")
    bad_from = authres_entry(DmarcResult(DmarcStatus.PERMERROR, reason="no From field"))
    assert bad_from.properties == ()
