"""Mailboxes on disk: Maildir++ folders (and later their index)."""
