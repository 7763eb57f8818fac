"""The IMAP service (RFC 9051 IMAP4rev2, RFC 3501 IMAP4rev1): the asyncio adapter
around the sans-IO core :mod:`mailyard.proto.imap` and the engine that answers its
commands from the mail store (:mod:`mailyard.store`).

* :mod:`mailyard.imapd.server` - the imap/imaps listeners and connection caps;
* :mod:`mailyard.imapd.session` - one connection (``asyncio.Protocol``): TLS, login,
  APPEND streaming, IDLE, timers;
* :mod:`mailyard.imapd.engine` - the selected folder's commands;
* :mod:`mailyard.imapd.folders` - LIST, STATUS, CREATE..., APPEND;
* :mod:`mailyard.imapd.view` - sequence numbers and pending updates (pure);
* :mod:`mailyard.imapd.listing` - LIST patterns and attributes, STATUS items (pure);
* :mod:`mailyard.imapd.watch` - changes made by other processes;
* :mod:`mailyard.imapd.accounts` - the open indexes and subscriptions;
* :mod:`mailyard.imapd.fetch` - FETCH data items rendered from the index and the
  message file.
* :mod:`mailyard.imapd.search`, :mod:`~mailyard.imapd.sort`,
  :mod:`~mailyard.imapd.thread` - SEARCH, SORT and THREAD (RFC 5256) evaluated over a
  folder's messages.
* :mod:`mailyard.imapd.quota` - RFC 9208 QUOTA: the usage and limits of a user, and
  the over-quota decision (shared with delivery, from :mod:`mailyard.store.quota`).
"""
