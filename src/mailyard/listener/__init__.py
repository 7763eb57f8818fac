"""What the IMAP and POP3 adapters share: the connection half of a session
(:class:`~mailyard.listener.session.StreamSession`: reading, writing, back-pressure,
timers, STARTTLS and implicit TLS) and the listener half of a server
(:class:`~mailyard.listener.server.ListenerServer`: connection caps, shutdown drain).

One copy, so a fix to TLS start-up or to the shutdown drain reaches both protocols.
SMTP keeps its own adapter: its accept path is benchmarked and tuned on its own.
"""
