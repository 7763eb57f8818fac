"""RFC 8617 Appendix B, the example of a message that passed three intermediaries
(lists.example.org, gmail.example, clochette.example.org).  The RFC publishes no keys
(and its keys are 512 bits, which RFC 8301 forbids), so the example is checked as far
as the DNS: the three sets are found and numbered, their cv= values follow 5.2, and
the newest AMS's body hash matches our relaxed canonicalization of the body; then the
key lookup is what fails."""

from __future__ import annotations

import asyncio

from mailyard.arc.chain import ArcStatus, ArcValidation, validate_message
from mailyard.dns.static import StaticResolver

EXAMPLE = b"\r\n".join([
    b"ARC-Seal: i=3; a=rsa-sha256; cv=pass; d=clochette.example.org; s=",
    b"        clochette; t=12345; b=CU87XzXlNlk5X/yW4l73UvPUcP9ivwYWxyBWcVrRs7",
    b"        +HPx3K05nJhny2fvymbReAmOA9GTH/y+k9kEc59hAKVg==",
    b"ARC-Message-Signature: i=3; a=rsa-sha256; c=relaxed/relaxed; d=",
    b"        clochette.example.org; h=message-id:date:from:to:subject; s=",
    b"        clochette; t=12345; bh=KWSe46TZKCcDbH4klJPo+tjk5LWJnVRlP5pvjXFZY",
    b"        LQ=; b=o71vwyLsK+Wm4cOSlirXoRwzEvi0vqIjd/2/GkYFYlSd/GGfKzkAgPqxf",
    b"        K7ccBMP7Zjb/mpeggswHjEMS8x5NQ==",
    b"ARC-Authentication-Results: i=3; clochette.example.org; spf=fail",
    b"    smtp.from=jqd@d1.example; dkim=fail (512-bit key)",
    b"    header.i=@d1.example; dmarc=fail; arc=pass (as.2.gmail.example=pass,",
    b"    ams.2.gmail.example=pass, as.1.lists.example.org=pass,",
    b"    ams.1.lists.example.org=fail (message has been altered))",
    b"Authentication-Results: clochette.example.org; spf=fail",
    b"    smtp.from=jqd@d1.example; dkim=fail (512-bit key)",
    b"    header.i=@d1.example; dmarc=fail; arc=pass (as.2.gmail.example=pass,",
    b"    ams.2.gmail.example=pass, as.1.lists.example.org=pass,",
    b"    ams.1.lists.example.org=fail (message has been altered))",
    b"ARC-Seal: i=2; a=rsa-sha256; cv=pass; d=gmail.example; s=20120806; t=",
    b"        12345; b=Zpukh/kJL4Q7Kv391FKwTepgS56dgHIcdhhJZjsalhqkFIQQAJ4T9BE",
    b"        8jjLXWpRNuh81yqnT1/jHn086RwezGw==",
    b"ARC-Message-Signature: i=2; a=rsa-sha256; c=relaxed/relaxed; d=",
    b"        gmail.example; h=message-id:date:from:to:subject; s=20120806; t=",
    b"        12345; bh=KWSe46TZKCcDbH4klJPo+tjk5LWJnVRlP5pvjXFZYLQ=; b=CVoG44",
    b"        cVZvoSs2mMig2wwqPaJ4OZS5XGMCegWqQs1wvRZJS894tJM0xO1RJLgCPsBOxdA5",
    b"        9WSqI9s9DfyKDfWg==",
    b"ARC-Authentication-Results: i=2; gmail.example; spf=fail",
    b"    smtp.from=jqd@d1.example; dkim=fail (512-bit key)",
    b"    header.i=@example.org; dmarc=fail; arc=pass",
    b"    (as.1.lists.example.org=pass, ams.1.lists.example.org=pass)",
    b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=lists.example.org; s=dk-lists;",
    b"         t=12345; b=TlCCKzgk3TrAa+G77gYYO8Fxk4q/Ml0biqduZJeOYh6+0zhwQ8u/",
    b"        lHxLi21pxu347isLSuNtvIagIvAQna9a5A==",
    b"ARC-Message-Signature: i=1; a=rsa-sha256; c=relaxed/relaxed; d=",
    b"        lists.example.org; h=message-id:date:from:to:subject; s=",
    b"        dk-lists; t=12345; bh=KWSe46TZKCcDbH4klJPo+tjk5LWJnVRlP5pvjXFZYL",
    b"        Q=; b=DsoD3n3hiwlrN1ma8IZQFgZx8EDO7Wah3hUjIEsYKuShRKYB4LwGUiKD5Y",
    b"        yHgcIwGHhSc/4+ewYqHMWDnuFxiQ==",
    b"ARC-Authentication-Results: i=1; lists.example.org; spf=pass",
    b"    smtp.mfrom=jqd@d1.example; dkim=pass (512-bit key)",
    b"    header.i=@d1.example; dmarc=pass",
    b"Message-ID: <54B84785.1060301@d1.example>",
    b"Date: Thu, 14 Jan 2015 15:00:01 -0800",
    b"From: John Q Doe <jqd@d1.example>",
    b"To: arc@dmarc.example",
    b"Subject: [List 2] Example 1",
    b"",
    b"Hey gang,",
    b"This is a test message.",
    b"--J.",
    b"",
])


def test_rfc8617_appendix_b_chain_reaches_the_key_lookup() -> None:
    result = asyncio.run(validate_message(EXAMPLE, StaticResolver(), now=12_345.0))
    assert result.status is ArcStatus.FAIL
    assert result.instances == 3 and result.domain == "clochette.example.org"
    # structure, cv= values and the i=3 body hash all passed: the key is what is missing
    assert result.reason == ("ARC-Message-Signature i=3: no key at "
                             "clochette._domainkey.clochette.example.org")


def test_rfc8617_appendix_b_altered_body_fails_before_dns() -> None:
    altered = EXAMPLE.replace(b"Hey gang", b"Hey all")
    result = asyncio.run(validate_message(altered, StaticResolver(), now=12_345.0))
    assert result.reason == "ARC-Message-Signature body hash did not verify"


def test_rfc8617_5_2_newest_seal_with_cv_fail_fails() -> None:
    failed = EXAMPLE.replace(b"i=3; a=rsa-sha256; cv=pass", b"i=3; a=rsa-sha256; cv=fail")
    validation = ArcValidation(failed.split(b"\r\n\r\n")[0] + b"\r\n")
    result = asyncio.run(validation.finish(StaticResolver(), now=12_345.0))
    assert result.status is ArcStatus.FAIL and "cv=fail" in result.reason
