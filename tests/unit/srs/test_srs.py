"""mailyard.srs: the SRS0/SRS1 sender rewriting of forwarded mail, and its reversal."""

from __future__ import annotations

import pytest

from mailyard.srs import Srs, SrsInvalid, is_srs

KEY = b"k" * 32
DAY = 86_400.0
NOW = 20_000 * DAY + 3600
srs = Srs(KEY)


def test_forward_and_back() -> None:
    rewritten = srs.forward("bob@sender.example", "alias.example", NOW)
    local, _, domain = rewritten.partition("@")
    assert domain == "alias.example"
    tag, hash_, stamp, orig_domain, orig_local = local.split("=")
    assert (tag, orig_domain, orig_local) == ("SRS0", "sender.example", "bob")
    assert len(hash_) == 6 and len(stamp) == 2
    assert srs.reverse(rewritten, NOW) == "bob@sender.example"


def test_reverse_is_case_insensitive() -> None:
    """Some mailers change the case of the local part: the address still reverses."""
    rewritten = srs.forward("Bob.Smith@Sender.example", "alias.example", NOW)
    assert srs.reverse(rewritten.upper(), NOW) == "BOB.SMITH@SENDER.EXAMPLE"
    assert srs.reverse(rewritten.lower(), NOW) == "bob.smith@sender.example"


def test_local_parts_with_equals_signs_survive() -> None:
    rewritten = srs.forward("a=b=c@sender.example", "alias.example", NOW)
    assert srs.reverse(rewritten, NOW) == "a=b=c@sender.example"


@pytest.mark.parametrize("sender", ["", "alice@alias.example", "ALICE@Alias.Example",
                                    '"quoted local"@sender.example'])
def test_not_rewritten(sender: str) -> None:
    """The null sender, our own domain's senders, quoted local parts."""
    assert srs.forward(sender, "alias.example", NOW) == sender


def test_forged_and_expired_addresses_are_refused() -> None:
    rewritten = srs.forward("bob@sender.example", "alias.example", NOW)
    forged = rewritten.replace("=bob@", "=eve@")
    assert srs.reverse(forged, NOW) == SrsInvalid("SRS0 hash does not match")
    assert isinstance(Srs(b"x" * 32).reverse(rewritten, NOW), SrsInvalid)
    assert srs.reverse(rewritten, NOW + 21 * DAY) == "bob@sender.example"
    assert srs.reverse(rewritten, NOW + 22 * DAY) == SrsInvalid("SRS0 address expired")
    assert srs.reverse("SRS0=abc@alias.example", NOW) == SrsInvalid("malformed SRS0 address")
    assert srs.reverse("SRS0=AAAAAA=!!=d=l@alias.example", NOW) == \
        SrsInvalid("SRS0 hash does not match")


def test_the_timestamp_wraps_at_1024_days() -> None:
    near_wrap = 1023 * DAY + 10
    rewritten = srs.forward("bob@sender.example", "alias.example", near_wrap)
    assert srs.reverse(rewritten, near_wrap + 2 * DAY) == "bob@sender.example"


def test_not_srs() -> None:
    assert srs.reverse("bob@alias.example", NOW) is None
    assert is_srs("srs0=x") and is_srs("SRS1=y") and not is_srs("srs2=z")


def test_srs1_for_another_forwarders_address() -> None:
    """A sender that is another forwarder's SRS0 address becomes SRS1 at our domain and
    reverses to that SRS0 address, which the first forwarder reverses."""
    first = Srs(b"f" * 32)
    srs0 = first.forward("bob@sender.example", "first.example", NOW)
    srs1 = srs.forward(srs0, "alias.example", NOW)
    assert srs1.startswith("SRS1=") and srs1.endswith("=first.example==" +
                                                        srs0.split("=", 1)[1].split("@")[0]
                                                        + "@alias.example")
    back = srs.reverse(srs1, NOW)
    assert back == srs0 and first.reverse(str(back), NOW) == "bob@sender.example"
    # A third hop keeps the first forwarder in SRS1 and re-guards it with its key.
    third = Srs(b"t" * 32)
    again = third.forward(srs1, "third.example", NOW)
    assert again.startswith("SRS1=") and "=first.example==" in again
    assert third.reverse(again, NOW) == srs0
    assert srs.reverse(srs1.replace("first.example", "evil.example"), NOW) == \
        SrsInvalid("SRS1 hash does not match")
