"""SMTP listeners: the asyncio adapter around :mod:`mailyard.proto.smtp` plus policy."""
