"""SASL (RFC 4422) mechanisms as protocol-neutral, sans-IO exchanges.

SMTP AUTH (RFC 4954), IMAP AUTHENTICATE (RFC 9051 6.2.2) and POP3 AUTH (RFC 5034)
differ only in how they frame the exchange on the wire (334 replies, ``+``
continuations) and how they answer its outcome.  This package does the part they
share: a mechanism is fed the client's *decoded* responses and answers with one
:data:`~mailyard.sasl.steps.Step` (a challenge, credentials to verify, a request for
stored SCRAM credentials, success, or a :class:`~mailyard.sasl.steps.Failure` with a
:class:`~mailyard.sasl.steps.FailureReason`).  Base64, cancellation and the replies are
the protocol core's business.

* :mod:`mailyard.sasl.steps` - what a mechanism answers;
* :mod:`mailyard.sasl.mechanisms` - PLAIN (RFC 4616), LOGIN, and the registry;
* :mod:`mailyard.sasl.scram` - SCRAM-SHA-256 (RFC 5802, RFC 7677), its stored
  credentials (:class:`~mailyard.sasl.scram.ScramCredentials`, which the directory
  stores) and SASLprep (RFC 4013).
"""
