"""The IMAP service: asyncio adapter and mailbox engine over the sans-IO core and the mailbox index."""
