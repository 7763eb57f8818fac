"""Inbound sender authentication: DKIM, ARC and DMARC (with the SPF result smtpd
found at MAIL FROM) checked on mail received on port 25, turned into one
Authentication-Results field and the DMARC action.

* :mod:`~mailyard.senderauth.checks`: the checks of one message, fed its header
  section and then its body as it streams, and their :class:`Verdict` (pure, over an
  injected resolver);
* :mod:`~mailyard.senderauth.hook`: the ingest hook that runs them on ``INBOUND``
  messages and the header rewrite that removes fields only we may write.
"""
