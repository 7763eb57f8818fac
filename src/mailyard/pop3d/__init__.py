"""The POP3 server (RFC 1939, ports 110 with STLS and 995 with implicit TLS): a thin
asyncio adapter around the sans-IO core :mod:`mailyard.proto.pop3`, over the mail
store (:mod:`mailyard.store`), the directory and the SMTP AUTH guard.

* :mod:`mailyard.pop3d.server` - the listeners, connection caps, shutdown;
* :mod:`mailyard.pop3d.session` - one connection (``asyncio.Protocol``);
* :mod:`mailyard.pop3d.maildrop` - the locked INBOX snapshot a session works on;
* :mod:`mailyard.pop3d.sasl` - the protocol-neutral SASL mechanisms as the core's
  exchanges.
"""
