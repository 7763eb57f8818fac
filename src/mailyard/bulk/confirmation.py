"""The double opt-in confirmation mail.

Built with the standard ``email`` package (its header folding and encoding; the name
was already checked for control characters, so nothing a subscriber types can add a
header field).  The link leads to a page with a button: following it changes nothing
(mail scanners fetch every link), the button's POST confirms.
"""

from __future__ import annotations

import email.utils
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8


def confirmation_message(*, sender: str, to: str, to_name: str, list_title: str, link: str,
                         hostname: str, valid_hours: int) -> bytes:
    msg = EmailMessage(policy=SMTP)
    local, _, domain = sender.rpartition("@")
    msg["From"] = Address(list_title or "Mailyard", local, domain)
    to_local, _, to_domain = to.rpartition("@")
    msg["To"] = Address(to_name, to_local, to_domain)
    msg["Subject"] = f"Please confirm your subscription to {list_title}"
    msg["Date"] = email.utils.formatdate(localtime=True)
    msg["Message-ID"] = email.utils.make_msgid(domain=hostname)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this
    text = (f"Someone, probably you, asked to subscribe {to} to {list_title}.\n\n"
            f"To confirm, open this link and press the button:\n\n{link}\n\n"
            f"The link is valid for {valid_hours} hours. If you did not ask for this,\n"
            "ignore this message: you will not be subscribed.\n")
    # 7bit keeps the link on one line; base64 (not quoted-printable, which would break
    # it with soft line breaks) when a title or address is not ASCII.
    msg.set_content(text, cte="7bit" if text.isascii() else "base64")
    try:
        return msg.as_bytes()
    except UnicodeEncodeError:
        return msg.as_bytes(policy=SMTPUTF8)
